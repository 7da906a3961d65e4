"""engine.stream(), astream() and aquery(): the same run as query(), its events as they happen."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from deeprecall.errors import ConfigError
from deeprecall.events import AnswerEvent
from deeprecall.testing.scripted_server import ChatRequest, Reply, by_turn
from tests.conftest import ROOT, SUB, make_store
from tests.engine.test_query import repl

SEARCH = repl('hits = search_db("Acme revenue")\nprint([h["id"] for h in hits])\nprint(llm_query("sum up"))')


def answer_for(request: ChatRequest) -> str:
    """Turn 2 answers with the question's own tag, so crossed streams would show."""
    tag = request.text.split("tag-", 1)[1].split()[0].strip("?") if "tag-" in request.text else "?"
    return repl(f'answer["content"] = "answer tag-{tag}"\nanswer["ready"] = True')


def test_stream_yields_the_same_events_as_on_event(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH, answer_for), SUB: lambda r: "summed"})
    engine = make_engine(server)
    called: list[Any] = []
    result = engine.query("What about tag-1?", on_event=called.append)
    stream = engine.stream("What about tag-1?")
    streamed = list(stream)
    assert [e.type for e in streamed] == [e.type for e in called]
    assert isinstance(streamed[-1], AnswerEvent) and streamed[-1].result is stream.result
    assert stream.result is not None and stream.result.answer == result.answer == "answer tag-1"
    assert stream.query_id == stream.result.query_id != result.query_id


def test_stream_checks_its_arguments_before_the_query_starts(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH)})
    engine = make_engine(server)
    with pytest.raises(ConfigError):
        engine.stream("   ")
    with pytest.raises(ConfigError):
        engine.stream("q", top_k=10_000)
    assert server.requests == []


def test_events_arrive_while_the_query_runs(llm, make_engine):
    """The first event comes before the model has replied: the stream is live, not replayed at the end."""
    server = llm({ROOT: by_turn(Reply(text=repl('answer["content"] = "x"\nanswer["ready"] = True'), delay=1.0))})
    engine = make_engine(server)
    engine.warm()
    started = time.monotonic()
    stream = engine.stream("q")
    first = next(stream)
    assert first.type == "query_started" and time.monotonic() - started < 0.5
    rest = list(stream)
    assert rest[-1].type == "answer" and rest[-1].t >= 1.0


def test_a_stream_whose_query_raises_ends_with_the_answer_event_then_raises(llm, make_engine):
    store = make_store()
    engine = make_engine(llm({ROOT: by_turn(SEARCH)}), vectorstore=store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store down")

    store.search = broken  # type: ignore[method-assign]
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="store down"):
        for event in engine.stream("q"):
            seen.append(event.type)
    assert seen == ["query_started", "search", "answer"]


def test_sync_and_async_consumers_side_by_side_do_not_mix(llm, make_engine):
    """One event loop runs three astream consumers and two aquery calls while a thread iterates a
    sync stream and another calls query(), all on one engine, at 0.2 s model latency."""
    server = llm({ROOT: by_turn(SEARCH, answer_for), SUB: lambda r: "summed"}, latency=0.2)
    engine = make_engine(server, environment_kwargs={"pool_size": 7})
    engine.warm(7)
    sync_results: dict[str, Any] = {}

    def sync_stream() -> None:
        events = list(engine.stream("What about tag-s1?"))
        sync_results["stream"] = (events[-1].answer, {e.query_id for e in events})

    def sync_query() -> None:
        sync_results["query"] = engine.query("What about tag-s2?").answer

    async def astream(tag: str) -> tuple[str, set[str], bool]:
        loop_thread = threading.get_ident()
        ids, answer, on_loop = set(), "", True
        async for event in engine.astream(f"What about tag-{tag}?"):
            ids.add(event.query_id)
            on_loop = on_loop and threading.get_ident() == loop_thread
            if event.type == "answer":
                answer = event.answer
        return answer, ids, on_loop

    async def main() -> list[Any]:
        seen: list[Any] = []
        return await asyncio.gather(astream("a1"), astream("a2"), astream("a3"),
                                    engine.aquery("What about tag-q1?"),
                                    engine.aquery("What about tag-q2?", on_event=seen.append)), seen

    threads = [threading.Thread(target=sync_stream), threading.Thread(target=sync_query)]
    for t in threads:
        t.start()
    (a1, a2, a3, q1, q2), seen = asyncio.run(main())
    for t in threads:
        t.join(30)
    for tag, (answer, ids, on_loop) in zip(["a1", "a2", "a3"], [a1, a2, a3], strict=True):
        assert answer == f"answer tag-{tag}" and len(ids) == 1 and on_loop
    assert q1.answer == "answer tag-q1" and q2.answer == "answer tag-q2"
    assert {e.query_id for e in seen} == {q2.query_id} and seen[-1].type == "answer"
    assert sync_results["stream"][0] == "answer tag-s1" and len(sync_results["stream"][1]) == 1
    assert sync_results["query"] == "answer tag-s2"
    assert len({a1[1].pop(), a2[1].pop(), a3[1].pop(), q1.query_id, q2.query_id}) == 5


def test_aquery_on_event_that_raises_is_dropped_and_the_query_goes_on(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH, answer_for), SUB: lambda r: "summed"})
    engine = make_engine(server)
    seen: list[str] = []

    def broken(event: Any) -> None:
        seen.append(event.type)
        raise KeyError("boom")

    result = asyncio.run(engine.aquery("What about tag-7?", on_event=broken))
    assert result.answer == "answer tag-7" and seen == ["query_started"]


def test_async_errors_reach_the_awaiting_task(llm, make_engine):
    store = make_store()
    engine = make_engine(llm({ROOT: by_turn(SEARCH)}), vectorstore=store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store down")

    store.search = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="store down"):
        asyncio.run(engine.aquery("q"))

    async def consume() -> list[str]:
        return [e.type async for e in engine.astream("q")]

    with pytest.raises(RuntimeError, match="store down"):
        asyncio.run(consume())


def test_astream_without_deltas_calls_the_model_plainly(llm, make_engine):
    """``deltas=False`` (the server shows steps, not tokens): no model_delta events, no streamed model call;
    the default streams the root model's replies."""
    server = llm({ROOT: by_turn(SEARCH, answer_for), SUB: lambda r: "summed"})
    engine = make_engine(server)

    async def types(deltas: bool) -> list[str]:
        return [e.type async for e in engine.astream("What about tag-5?", deltas=deltas)]

    plain = asyncio.run(types(False))
    assert "model_delta" not in plain and plain[-1] == "answer" and not any(r.stream for r in server.requests)
    streamed = asyncio.run(types(True))
    assert "model_delta" in streamed and [t for t in streamed if t != "model_delta"] == plain
    assert any(r.stream for r in server.calls_for(ROOT))
