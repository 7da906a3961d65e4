"""cost_usd and has_price: litellm's table, provider-reported cost, user pricing, local models."""

from __future__ import annotations

import pytest

from deeprecall.errors import ConfigError
from deeprecall.providers import build_chat_model
from deeprecall.providers.pricing import Price, parse_pricing, table_price
from deeprecall.testing.scripted_server import Reply
from tests.providers.conftest import MSGS

# List prices per token, written out here rather than read from table_price() (the code under test):
# a lookup that found the wrong model, or mixed up input and output, would otherwise agree with itself.
GPT_4O_MINI = Price(0.15e-6, 0.60e-6)
GPT_4O = Price(2.50e-6, 10.00e-6)
CLAUDE_SONNET_4_6 = Price(3.00e-6, 15.00e-6)
GEMINI_2_5_FLASH = Price(0.30e-6, 2.50e-6)


def test_the_table_knows_common_models():
    assert table_price("gpt-4o-mini") == Price(0.15e-6, 0.60e-6, "litellm")
    assert table_price("gpt-4o", ("azure",)) == Price(2.50e-6, 10.00e-6, "litellm")
    assert table_price("claude-sonnet-4-6", ("anthropic",)) == Price(3.00e-6, 15.00e-6, "litellm")
    assert table_price("gemini-2.5-flash", ("gemini",)) == Price(0.30e-6, 2.50e-6, "litellm")
    assert table_price("openai/gpt-4o-mini", ("vercel_ai_gateway",), gateway=True) is not None
    assert table_price("no-such-model-xyz") is None


def test_table_price_fills_cost_usd(llm):
    s = llm(lambda r: Reply(text="x", usage=(1000, 500)))
    m = build_chat_model("openai", {"model_name": "gpt-4o-mini", "api_key": "k", "base_url": s.base_url})
    c = m.complete(MSGS)
    assert m.has_price and c.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.60e-6)  # $0.00045


def test_provider_reported_cost_is_preferred_to_the_table(llm):
    s = llm(lambda r: Reply(text="x", usage=(1000, 500), cost=0.0123))
    m = build_chat_model("openrouter", {"model_name": "openai/gpt-4o-mini", "api_key": "sk-or-x", "base_url": s.base_url})
    assert m.has_price and m.complete(MSGS).cost_usd == pytest.approx(0.0123)
    assert s.requests[-1].body["usage"] == {"include": True}, "OpenRouter is asked to report the cost"


def test_user_pricing_overrides_everything(llm):
    s = llm(lambda r: Reply(text="x", usage=(2_000_000, 1_000_000), cost=99.0))
    m = build_chat_model("openrouter", {"model_name": "openai/gpt-4o-mini", "api_key": "sk-or-x", "base_url": s.base_url,
                                        "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}})
    assert m.complete(MSGS).cost_usd == pytest.approx(2.0 + 4.0)


def test_local_models_have_no_price_unless_told(llm):
    s = llm(lambda r: "x")
    unpriced = build_chat_model("vllm", {"model_name": "gpt-4o-mini", "base_url": s.base_url})
    assert not unpriced.has_price and unpriced.complete(MSGS).cost_usd is None
    free = build_chat_model("ollama", {"model_name": "llama3.2:3b", "base_url": s.root_url,
                                       "pricing": {"input_per_mtok": 0, "output_per_mtok": 0}})
    assert free.has_price and free.complete(MSGS).cost_usd == 0.0


def test_unknown_models_have_no_price(llm):
    s = llm(lambda r: "x")
    assert not build_chat_model("openai", {"model_name": "my-finetune", "api_key": "k", "base_url": s.base_url}).has_price


def test_azure_deployments_are_priced_by_their_base_model(llm):
    s = llm(lambda r: Reply(text="x", usage=(100, 10)))
    m = build_chat_model("azure_openai", {"model_name": "prod-4o", "api_key": "k", "base_url": s.root_url,
                                          "price_model": "gpt-4o"})
    assert m.has_price and m.complete(MSGS).cost_usd == pytest.approx(100 * 2.50e-6 + 10 * 10.00e-6)  # gpt-4o's


@pytest.mark.parametrize("backend", ["anthropic", "gemini"])
def test_anthropic_and_gemini_are_priced(llm, backend):
    s = llm(lambda r: Reply(text="x", usage=(1000, 100)))
    model = {"anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}[backend]
    key = {"anthropic": "sk-ant-x", "gemini": "AIza-x"}[backend]
    m = build_chat_model(backend, {"model_name": model, "api_key": key, "base_url": s.root_url})
    price = {"anthropic": CLAUDE_SONNET_4_6, "gemini": GEMINI_2_5_FLASH}[backend]
    assert m.has_price and m.complete(MSGS).cost_usd == pytest.approx(1000 * price.input_per_token + 100 * price.output_per_token)


@pytest.mark.parametrize(("value", "expected"), [
    ({"input_per_mtok": 3, "output_per_mtok": 15}, Price(3e-6, 15e-6)),
    ({"input_per_token": 1e-6, "output_per_token": 2e-6}, Price(1e-6, 2e-6)),
    ({"input": 1e-6, "output": 2e-6}, Price(1e-6, 2e-6)),
    ((1e-6, 2e-6), Price(1e-6, 2e-6)),
])
def test_pricing_spellings(value, expected):
    assert parse_pricing(value) == expected


@pytest.mark.parametrize("value", ["cheap", {"in": 1}, (1,), {"input_per_mtok": "lots"}])
def test_bad_pricing_is_a_config_error(value):
    with pytest.raises(ConfigError, match="input_per_mtok"):
        parse_pricing(value)
