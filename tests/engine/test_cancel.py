"""Cancelling a query at every stage stops it: no LLM request reaches the server afterwards, the
sandbox worker (its whole process group) is killed at once, and the query's threads end.

Real parts throughout: the scripted LLM server over HTTP, the namespace/process sandbox, Chroma.
Each stage is cancelled by a sync consumer closing ``stream()`` and by an asyncio task being
cancelled while it iterates ``astream()``."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from deeprecall import DeepRecall
from deeprecall.testing.scripted_server import ChatRequest, Reply, ScriptedLLMServer, by_turn
from tests.conftest import ROOT, SUB, engine_config, make_store
from tests.engine.test_query import repl

SLEEPY_CELL = repl('print("cell started", flush=True)\nimport time\ntime.sleep(30)')
BATCH = repl('r = llm_query_batched(["p%d" % i for i in range(8)])\nprint(r)')
DONE = repl('answer["content"] = "done"\nanswer["ready"] = True')


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def query_threads() -> list[str]:
    """Threads a query owns while it runs: its own, the worker's call servers, a batch's pool."""
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("deeprecall-query", "deeprecall-call", "ThreadPoolExecutor"))]


def group_alive(pgid: int) -> bool:
    """Whether any process of the worker's process group is still alive (zombies count as dead)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Stage:
    """One stage to cancel at: the scripts that hold the query there, the event after which it gets
    there, and when it is there (read from the server: no event marks a call in flight)."""

    def __init__(self, name: str, scripts: dict[str, Any], trigger: str,
                 ready: Callable[[ScriptedLLMServer, float], bool],
                 slow_first_search: bool = False) -> None:
        self.name, self.scripts, self.trigger, self.ready = name, scripts, trigger, ready
        self.slow_first_search = slow_first_search


def _calls(server: ScriptedLLMServer, model: str) -> int:
    return len(server.calls_for(model))


STAGES = [
    # The engine's own first search is slow: cancelled there, the model is never called and no worker is bound.
    Stage("before the first model reply", {ROOT: by_turn(DONE)}, "query_started", lambda s, since: True,
          slow_first_search=True),
    Stage("during a model call", {ROOT: lambda r: Reply(text=DONE, delay=1.5)}, "query_started",
          lambda s, since: _calls(s, ROOT) == 1),
    Stage("during a cell", {ROOT: by_turn(SLEEPY_CELL, DONE)}, "cell_started",
          lambda s, since: time.monotonic() - since > 0.3),
    # Two prompts of eight in flight (sub_concurrency=2), each for 1 s: the rest wait for a free slot.
    Stage("during a sub-call batch", {ROOT: by_turn(BATCH, DONE), SUB: lambda r: Reply(text="ok", delay=1.0)},
          "cell_started", lambda s, since: _calls(s, SUB) == 2),
]


def _wait_ready(stage: Stage, server: ScriptedLLMServer, since: float) -> None:
    wait_until(lambda: stage.ready(server, since), 5.0, f"the query {stage.name}")


def _sync_consumer(engine: DeepRecall, stage: Stage, server: ScriptedLLMServer) -> float:
    stream = engine.stream("How much did Acme grow?")
    for event in stream:
        if event.type == stage.trigger:
            break
    _wait_ready(stage, server, time.monotonic())
    cancelled_at = time.monotonic()
    stream.close()
    return cancelled_at


def _async_consumer(engine: DeepRecall, stage: Stage, server: ScriptedLLMServer) -> float:
    triggered = asyncio.Event()

    async def consume() -> None:
        async for event in engine.astream("How much did Acme grow?"):
            if event.type == stage.trigger:
                triggered.set()

    async def main() -> float:
        task = asyncio.create_task(consume())
        await triggered.wait()
        since = time.monotonic()
        while not stage.ready(server, since):
            assert not task.done(), "the query ended before reaching the stage"
            await asyncio.sleep(0.01)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled_at

    return asyncio.run(main())


@pytest.mark.parametrize("consumer", [_sync_consumer, _async_consumer], ids=["sync-close", "async-task-cancel"])
@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_cancelling_stops_the_query(llm, consumer, stage):
    server = llm(stage.scripts)
    store = make_store()
    if stage.slow_first_search:
        original = store.search

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.5)
            return original(*args, **kwargs)

        store.search = slow  # type: ignore[method-assign]
    answers: list[Any] = []
    engine = DeepRecall(store, engine_config(server, sub_concurrency=2), subscribers=[
        lambda e: answers.append(e) if e.type == "answer" else None])
    try:
        engine.warm()
        worker = engine._pool._idle[0]._channel.pid
        assert query_threads() == []
        cancelled_at = consumer(engine, stage, server)

        if stage.slow_first_search:  # no worker was bound yet: the warm one stays in the pool, unused
            assert [s._channel.pid for s in engine._pool._idle] == [worker] and group_alive(worker)
        else:  # the worker's whole process group is gone at once, not when the in-flight call returns
            wait_until(lambda: not group_alive(worker), 1.0, "the worker killed")
        # The query's threads end: at once, or when a call already on the wire returns (<= its 1.5 s delay).
        wait_until(lambda: query_threads() == [], 5.0, f"query threads ended: {query_threads()}")
        # The engine-wide subscriber got the closing event, and it says cancelled.
        wait_until(lambda: len(answers) == 1, 2.0, "an AnswerEvent")
        assert answers[0].error == "cancelled" and answers[0].result.error == "cancelled"
        time.sleep(0.3)  # anything the query would still send would have arrived by now
        late = [r for r in server.requests if r.received_at > cancelled_at]
        assert late == [], f"requests after the cancel: {[(r.model, r.last_user[:40]) for r in late]}"
        if stage.slow_first_search:
            assert server.requests == []
        if stage.name == "during a sub-call batch":
            assert _calls(server, SUB) == 2 and _calls(server, ROOT) == 1  # 6 prompts of 8 never sent
        # The engine is still fine: the next query gets a fresh worker and answers.
        server.scripts = {ROOT: by_turn(DONE), SUB: lambda r: "ok"}  # type: ignore[misc]
        assert engine.query("again").answer == "done"
    finally:
        engine.close()


def test_breaking_out_of_astream_cancels_the_query(llm, make_engine):
    server = llm({ROOT: by_turn(SLEEPY_CELL, DONE)})
    engine = make_engine(server)
    engine.warm()
    worker = engine._pool._idle[0]._channel.pid

    async def main() -> None:
        async for event in engine.astream("q"):
            if event.type == "cell_started":
                break
        gc.collect()  # CPython drops the stream at once; other runtimes at their next collection

    asyncio.run(main())
    wait_until(lambda: not group_alive(worker), 2.0, "the worker killed")
    wait_until(lambda: query_threads() == [], 3.0, "query threads ended")
    assert len(server.requests) == 1


def test_a_sync_consumer_dropping_the_stream_cancels_the_query(llm, make_engine):
    server = llm({ROOT: by_turn(SLEEPY_CELL, DONE)})
    engine = make_engine(server)
    engine.warm()
    worker = engine._pool._idle[0]._channel.pid
    for event in engine.stream("q"):
        if event.type == "cell_started":
            break  # the stream is dropped here: nobody holds it any more
    gc.collect()
    wait_until(lambda: not group_alive(worker), 2.0, "the worker killed")
    wait_until(lambda: query_threads() == [], 3.0, "query threads ended")
    assert len(server.requests) == 1


def test_cancelling_aquery_stops_the_query(llm, make_engine):
    def root(request: ChatRequest) -> Reply | str:
        return Reply(text=SLEEPY_CELL) if request.turn == 0 else DONE

    server = llm({ROOT: root})
    engine = make_engine(server)
    engine.warm()
    worker = engine._pool._idle[0]._channel.pid

    async def main() -> None:
        task = asyncio.create_task(engine.aquery("q"))
        await asyncio.sleep(1.0)  # the cell is sleeping by now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_until(lambda: not group_alive(worker), 1.0, "the worker killed")
    wait_until(lambda: query_threads() == [], 3.0, "query threads ended")
    assert len(server.requests) == 1


def test_closing_the_engine_cancels_its_running_queries(llm, make_engine):
    server = llm({ROOT: by_turn(SLEEPY_CELL, DONE)})
    engine = make_engine(server)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(engine.query("q")))
    thread.start()
    wait_until(lambda: len(server.requests) == 1, 5.0, "the first turn")
    time.sleep(0.3)
    engine.close()
    thread.join(5.0)
    assert not thread.is_alive() and results[0].error == "cancelled"


def test_cancelling_during_a_streamed_reply_stops_reading_it(llm, make_engine):
    """The model streams its reply in 20 pieces 0.2 s apart (4 s). Cancelled after the first pieces, the
    query stops reading at the next piece: its thread is gone long before the server would finish."""
    text = " ".join(f"word{i}" for i in range(20))
    server = llm({ROOT: lambda r: Reply(text=text, chunk_delay=0.2)})
    engine = make_engine(server)
    engine.warm()
    stream = engine.stream("q")
    deltas = 0
    for event in stream:
        deltas += event.type == "model_delta"
        if deltas == 2:
            break
    cancelled_at = time.monotonic()
    stream.close()
    wait_until(lambda: query_threads() == [], 1.5, "the query thread ended")
    assert time.monotonic() - cancelled_at < 1.5 and len(server.requests) == 1
    assert server.requests[0].body.get("stream") is True  # a streamed call: deltas were requested
