"""GET /metrics' text, fed by the one event stream: parsed with prometheus_client's own parser, the numbers
are the queries' (outcome, error cause, latency, tokens and cost by model) and the sandbox pool's."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from deeprecall import DeepRecall
from deeprecall.server.metrics import QueryMetrics
from deeprecall.testing.function_model import FunctionChatModel
from tests.conftest import make_store


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}; the parser raises on malformed exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_queries_errors_latency_tokens_and_cost_by_model_from_events() -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"].startswith("Answer the question from"):
            return "Lyon"  # the evidence call after the loop ran out of turns
        if any("stuck" in m["content"] for m in messages):
            return "```repl\nx = 1\n```"
        return "FINAL(Lyon)"

    model = FunctionChatModel(reply, model_name='fn "root"', price=(1e-6, 2e-6))
    with DeepRecall(make_store(), chat_model=model, max_iterations=1, environment_kwargs={"pool_size": 1}) as engine:
        metrics = QueryMetrics(pool_stats=engine.sandbox_pool)
        engine.subscribe(metrics)
        ok = engine.query("Where is the new factory?")
        stuck = engine.query("stuck question")
        engine.warm(1)
        got = samples(metrics.render())
    assert ok.error is None and stuck.error == "max_iterations"
    assert got[("deeprecall_queries_total", (("outcome", "ok"),))] == 1
    assert got[("deeprecall_queries_total", (("outcome", "max_iterations"),))] == 1
    assert got[("deeprecall_query_errors_total", (("cause", "max_iterations"),))] == 1
    assert got[("deeprecall_queries_in_flight", ())] == 0
    assert got[("deeprecall_query_seconds_count", ())] == 2
    assert got[("deeprecall_query_seconds_sum", ())] == pytest_approx(ok.seconds + stuck.seconds)
    assert got[("deeprecall_query_seconds_bucket", (("le", "+Inf"),))] == 2
    name = 'fn "root"'  # a label value with quotes is escaped, and parses back
    tokens_in = sum(u.input_tokens for r in (ok, stuck) for u in r.usage.root.values())
    assert got[("deeprecall_tokens_total", (("direction", "input"), ("model", name), ("role", "root")))] == tokens_in
    cost = sum(r.usage.total_cost_usd or 0.0 for r in (ok, stuck))
    assert got[("deeprecall_cost_usd_total", (("model", name), ("role", "root")))] == pytest_approx(cost)
    assert got[("deeprecall_model_call_seconds_count", (("model", name), ("role", "root")))] == 3  # a turn each + the evidence call
    assert got[("deeprecall_search_seconds_count", ())] >= 2  # each query's first search
    assert got[("deeprecall_sandbox_workers", (("state", "idle"),))] >= 1
    assert ("deeprecall_sandbox_workers", (("state", "target"),)) in got


def pytest_approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=1e-9, abs=1e-12)


def test_get_metrics_on_the_server_counts_queries_and_refusals_by_status(llm: Any) -> None:
    import httpx

    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT
    from tests.server.harness import ACME_KEY, Served

    server = llm({ROOT: by_turn("FINAL(Lyon)")})
    with Served(server) as served:
        chat = f"{served.url}/v1/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "Where is the factory?"}]}
        assert httpx.post(chat, headers={"Authorization": f"Bearer {ACME_KEY}"}, json=body, timeout=30).status_code == 200
        assert httpx.post(chat, headers={"Authorization": "Bearer wrong"}, json=body, timeout=30).status_code == 401
        assert httpx.get(f"{served.url}/no/such/path", timeout=10).status_code == 404
        reply = httpx.get(f"{served.url}/metrics", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(reply.text)
    chat_route = "/v1/chat/completions"
    assert got[("deeprecall_http_responses_total", (("route", chat_route), ("status", "200")))] == 1
    assert got[("deeprecall_http_responses_total", (("route", chat_route), ("status", "401")))] == 1
    assert got[("deeprecall_http_responses_total", (("route", "other"), ("status", "404")))] == 1
    assert got[("deeprecall_queries_total", (("outcome", "ok"),))] == 1
    assert got[("deeprecall_tokens_total", (("direction", "output"), ("model", ROOT), ("role", "root")))] > 0
    assert ("deeprecall_sandbox_workers", (("state", "idle"),)) in got


def test_a_child_query_is_not_counted_twice() -> None:
    """rlm_query at max_depth 2 runs a child query whose usage is inside its parent's: one query, its tokens
    once, but every model call (the child's too) in the call histogram."""
    def reply(messages: list[dict[str, Any]]) -> str:
        text = " ".join(str(m["content"]) for m in messages)
        if "top question" not in text:
            return "FINAL(child answer)"
        if any(m["role"] == "assistant" for m in messages):
            return "FINAL(done)"
        return "```repl\nprint(rlm_query('child question'))\n```"

    model = FunctionChatModel(reply, model_name="fn-root")
    with DeepRecall(make_store(), chat_model=model, max_depth=2, environment_kwargs={"pool_size": 2}) as engine:
        metrics = QueryMetrics()
        engine.subscribe(metrics)
        events: list[Any] = []
        result = engine.query("top question", on_event=events.append)
        got = samples(metrics.render())
    assert result.answer == "done" and any(getattr(e, "parent_query_id", None) for e in events)
    assert got[("deeprecall_queries_total", (("outcome", "ok"),))] == 1
    assert got[("deeprecall_queries_in_flight", ())] == 0
    tokens = sum(u.input_tokens for u in result.usage.root.values())
    assert got[("deeprecall_tokens_total", (("direction", "input"), ("model", "fn-root"), ("role", "root")))] == tokens
    assert got[("deeprecall_model_call_seconds_count", (("model", "fn-root"), ("role", "root")))] == 3  # 2 top + 1 child
