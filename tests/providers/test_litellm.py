"""The litellm backend against a scripted OpenAI-compatible server."""

from __future__ import annotations

import pytest

from deeprecall.errors import ProviderError
from deeprecall.providers import build_chat_model
from deeprecall.testing.scripted_server import Reply
from tests.providers.conftest import MSGS


def test_litellm_completes_and_prices(llm):
    s = llm(lambda r: Reply(text=f"via litellm {r.model}", usage=(1000, 100)))
    m = build_chat_model("litellm", {"model_name": "openai/gpt-4o-mini", "base_url": s.base_url, "api_key": "sk-x"})
    c = m.complete(MSGS)
    assert c.text == "via litellm gpt-4o-mini" and (c.input_tokens, c.output_tokens) == (1000, 100)
    assert m.has_price and c.cost_usd == pytest.approx(1000 * 0.15e-6 + 100 * 0.60e-6)  # gpt-4o-mini's list price


def test_litellm_errors_are_mapped_and_redacted(llm):
    s = llm(lambda r: Reply(status=429, text="rate limited for sk-secret-abcdef123456"))
    m = build_chat_model("litellm", {"model_name": "openai/gpt-4o-mini", "base_url": s.base_url,
                                     "api_key": "sk-secret-abcdef123456", "max_retries": 0})
    with pytest.raises(ProviderError) as err:
        m.complete(MSGS)
    assert err.value.retryable and err.value.status == 429 and "sk-secret" not in str(err.value)


def test_unknown_litellm_models_have_no_price_unless_given():
    assert not build_chat_model("litellm", {"model_name": "openai/my-finetune"}).has_price
    assert build_chat_model("litellm", {"model_name": "openai/my-finetune", "pricing": (1e-6, 1e-6)}).has_price
