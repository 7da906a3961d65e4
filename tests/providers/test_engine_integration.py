"""The provider layer inside a real query: a pool as the root, an Anthropic-protocol sub-model, cost metered."""

from __future__ import annotations

import pytest

from deeprecall.testing.scripted_server import Reply, by_turn
from tests.conftest import engine_config
from tests.engine.test_query import SEARCH_AND_SUMMARISE, SUBMIT

SUB_CALL = SEARCH_AND_SUMMARISE.replace('llm_query("Summarise: " + hits[0]["content"])',
                                        'llm_query("Summarise: " + hits[0]["content"], model="claude-sonnet-4-6")')


def test_pool_root_with_failover_and_an_anthropic_sub_model(llm, store):
    from deeprecall import DeepRecall

    broken = llm(lambda r: Reply(status=500, text="down"))
    root = llm({"gpt-4o-mini": by_turn(SUB_CALL, SUBMIT)})
    claude = llm(lambda r: Reply(text="Revenue up 12%.", usage=(100, 10)))
    pool = {"model_name": "root-pool", "strategy": "ordered", "members": [
        {"backend": "vllm", "model_name": "gpt-4o-mini", "base_url": broken.base_url,
         "pricing": {"input_per_mtok": 1, "output_per_mtok": 1}},
        {"backend": "openai", "model_name": "gpt-4o-mini", "base_url": root.base_url, "api_key": "proxy-key"},
    ]}
    config = engine_config(root, backend="pool", backend_kwargs=pool, other_backends=["anthropic"],
                           other_backend_kwargs=[{"model_name": "claude-sonnet-4-6", "api_key": "sk-ant-test",
                                                  "base_url": claude.root_url, "max_retries": 0}],
                           max_cost_usd=1.0)
    with DeepRecall(vectorstore=store, config=config) as engine:
        result = engine.query("How much did Acme's revenue grow in 2023?")
    assert result.error is None and result.answer == "Acme revenue grew 12% in 2023."
    assert len(broken.requests) == 1, "the broken member failed once, then cooled down"
    assert claude.requests and claude.requests[0].protocol == "anthropic"
    usage = result.usage
    # Priced at list prices written out here, not read from the table under test: the root calls by the
    # member that served them (gpt-4o-mini, $0.15/$0.60 per Mtok; the broken member's own pricing never
    # applies), the sub-call by Claude Sonnet 4.6 ($3/$15 per Mtok; 100 in, 10 out).
    root, sub = usage.root["gpt-4o-mini"], usage.sub["claude-sonnet-4-6"]  # metered by the member that served
    assert root.calls == 2 and sub.calls == 1 and (sub.input_tokens, sub.output_tokens) == (100, 10)
    assert root.cost_usd == pytest.approx((root.input_tokens * 0.15 + root.output_tokens * 0.60) / 1e6)
    assert sub.cost_usd == pytest.approx((100 * 3.00 + 10 * 15.00) / 1e6)
    assert usage.total_cost_usd == pytest.approx(root.cost_usd + sub.cost_usd)
