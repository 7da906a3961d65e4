"""A provider that errs, talks garbage or goes silent mid-query, through the whole engine: the query fails over
within the pool's timeout and completes, or ends with ``llm_error`` and its trace. Real parts: the scripted
server is the LLM, LiteLLM's Router the pool, the namespace sandbox runs the cells."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest

from deeprecall.events import AnswerEvent
from deeprecall.observability.trace_file import read_trace
from deeprecall.providers import build_chat_model
from deeprecall.testing.scripted_server import Reply, ScriptedLLMServer, by_turn
from tests.conftest import ROOT

DONE = 'Done.\n```repl\nanswer["content"] = "answered by the healthy member"\nanswer["ready"] = True\n```'
POOL_TIMEOUT = 1.0


def pool_kwargs(*servers: ScriptedLLMServer) -> dict[str, Any]:
    members = [{"backend": "vllm", "model_name": ROOT, "base_url": s.base_url} for s in servers]
    return {"strategy": "ordered", "fallback": True, "timeout": POOL_TIMEOUT, "members": members,
            "cooldown_seconds": 60}


@functools.cache
def litellm_warmed() -> bool:
    """LiteLLM's first call in a process costs seconds (lazy imports, its price table): paid before a clock starts."""
    with ScriptedLLMServer(lambda r: "warm") as server:
        pool = build_chat_model("pool", pool_kwargs(server))
        pool.complete([{"role": "user", "content": "hi"}])
        pool.close()
    return True


def run(engine: Any, streamed: bool) -> Any:
    """A plain ``query()`` makes plain calls; a stream of events makes streamed ones (``on_delta``)."""
    if not streamed:
        return engine.query("q")
    events = list(engine.stream("q"))
    assert isinstance(events[-1], AnswerEvent)
    return events[-1].result


SILENT = {
    "accepts and never answers": Reply(hang=True),
    "sends headers then stalls": Reply(text="never finished", stall_after=0),
}
BROKEN = {
    "429": Reply(status=429, text="slow down"),
    "500": Reply(status=500, text="boom"),
    "200 with a non-JSON body": Reply(raw=b"<html>oops</html>"),
    "truncated JSON": Reply(raw=b'{"id": "x", "choices": [{"message": {"content": "ha'),
    "an SSE stream of junk": Reply(raw_stream=b"data: {not json at all\n\nevent: ???\ndata: <<<>>>\n\n"),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("fault", list(SILENT), ids=list(SILENT))
def test_a_silent_member_costs_its_timeout_then_the_pool_fails_over(llm, make_engine, fault, streamed):
    silent = llm(lambda r: SILENT[fault])
    good = llm({ROOT: by_turn(DONE)})
    engine = make_engine(good, backend="pool", backend_kwargs=pool_kwargs(silent, good), subs=(), max_seconds=60)
    assert litellm_warmed()
    start = time.monotonic()
    result = run(engine, streamed)
    took = time.monotonic() - start
    assert result.error is None and result.answer == "answered by the healthy member"
    assert len(silent.requests) == 1, "the silent member was tried once, then cooled down"
    assert took < POOL_TIMEOUT + 4, f"the silent member cost {took:.1f}s, more than its timeout"


OPENED = {"200 with a non-JSON body", "truncated JSON"}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("fault", list(BROKEN), ids=list(BROKEN))
def test_a_broken_member_is_failed_over(llm, make_engine, fault, streamed):
    broken = llm(lambda r: BROKEN[fault])
    good = llm({ROOT: by_turn(DONE)})
    engine = make_engine(good, backend="pool", backend_kwargs=pool_kwargs(broken, good), subs=(), max_seconds=60)
    result = run(engine, streamed)
    assert broken.requests, "the broken member was tried first"
    if streamed and fault in OPENED:
        # The Router fails over while it opens a stream; a 200 whose body is no event stream opens fine and
        # reads as nothing, so it is the query's provider error (not an empty answer passed off as one).
        assert result.error == "llm_error" and "not an event stream" in (result.error_message or "")
        return
    assert result.error is None and result.answer == "answered by the healthy member"


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_a_pool_with_only_silent_members_ends_with_llm_error_in_its_timeouts_not_the_budget(llm, make_engine,
                                                                                          streamed, tmp_path):
    silent1 = llm(lambda r: Reply(hang=True))
    silent2 = llm(lambda r: Reply(text="x", stall_after=0))
    kwargs = {**pool_kwargs(silent1, silent2), "retries": 1}
    engine = make_engine(silent1, backend="pool", backend_kwargs=kwargs, subs=(), max_seconds=60, trace_dir=tmp_path)
    assert litellm_warmed()
    start = time.monotonic()
    result = run(engine, streamed)
    # The last word is the Router's (every member cooling down after its timeout); the query's error is llm_error.
    assert result.error == "llm_error" and "pool:" in (result.error_message or "")
    assert time.monotonic() - start < 10, "the query ended on its members' timeouts, not on max_seconds"
    [trace_path] = tmp_path.iterdir()
    trace = read_trace(trace_path)
    assert trace.result is not None and trace.result["error"] == "llm_error", "the trace records how the query ended"
    assert "pool:" in trace.result["error_message"]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("fault", list(SILENT), ids=list(SILENT))
def test_a_lone_silent_provider_ends_the_query_with_llm_error_after_its_timeout(llm, make_engine, fault, streamed):
    """No pool: DeepRecall's own client, one retry; the query ends on the backend's timeout, not on max_seconds."""
    silent = llm(lambda r: SILENT[fault])
    kwargs = {"model_name": ROOT, "base_url": silent.base_url, "timeout": POOL_TIMEOUT, "max_retries": 1}
    engine = make_engine(silent, backend_kwargs=kwargs, subs=(), max_seconds=60)
    start = time.monotonic()
    result = run(engine, streamed)
    assert result.error == "llm_error" and "timed out" in (result.error_message or "").lower()
    assert time.monotonic() - start < 2 * POOL_TIMEOUT + 4
    # A stream whose headers came is open: not retried (as the pool, and the docs of streaming, say).
    opened = streamed and SILENT[fault].stall_after is not None
    assert len(silent.requests) == (1 if opened else 2), "a call that timed out before it opened was retried once"
