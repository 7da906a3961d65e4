"""A query on its own thread, and its events handed to one consumer: sync or asyncio.

Why async sits at the edge: everything under a query blocks (HTTP to the model,
the worker's pipe, the store's client), and it already serves many concurrent
queries from threads. ``astream`` runs the same threaded query and moves its
events onto the consumer's event loop with ``call_soon_threadsafe``, so one loop
serves hundreds of queries (measured in ``benchmarks/async_streams.py``;
``docs/events.md`` has the figures and the reasoning).

Events are queued without bound and never dropped: the query never waits for its
consumer (a slow terminal must not hold a worker and a model connection open
longer), and a query's events are bounded by the query itself.

The thread holds only a ``QueryThread``, never the stream object, so a consumer
that drops its stream (breaks out of a ``for`` loop, loses the reference) lets
the stream be collected, and collecting it cancels the query.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from deeprecall.engine.run import QueryRun
from deeprecall.results import QueryResult

log = logging.getLogger("deeprecall")
_DONE = object()


class QueryThread:
    """Runs ``execute(run)`` on a new daemon thread; ``done`` is called with itself when it ends."""

    def __init__(self, run: QueryRun, execute: Callable[[QueryRun], QueryResult],
                 done: Callable[[QueryThread], None]) -> None:
        self.run = run
        self.result: QueryResult | None = None
        self.error: BaseException | None = None
        self._execute = execute
        self._done = done
        self.thread = threading.Thread(target=self._work, name=f"deeprecall-query-{run.query_id[:8]}", daemon=True)

    def start(self) -> QueryThread:
        self.thread.start()
        return self

    def _work(self) -> None:
        try:
            self.result = self._execute(self.run)
        except BaseException as e:  # handed to the consumer, which raises it
            self.error = e
        finally:
            self._done(self)

    def cancel(self) -> None:
        self.run.cancel()


class WithoutDeltas:
    """A sink that needs no ``model_delta`` events (``wants_deltas = False``), passing every event it gets on."""

    wants_deltas = False

    def __init__(self, sink: Callable[[Any], None]) -> None:
        self.sink = sink

    def __call__(self, event: Any) -> None:
        self.sink(event)


class EventStream(Iterator[Any]):
    """What ``engine.stream()`` returns: iterate it for the query's events, in order, the
    ``AnswerEvent`` last. ``close()`` (or leaving a ``with`` block, or dropping it) before the end
    cancels the query. ``result`` is the ``QueryResult`` once the stream is exhausted. If the query
    raised (a bug, a store that failed on the first search), iterating raises it after its
    ``AnswerEvent``, as ``query()`` would."""

    def __init__(self, start: Callable[[Callable[[Any], None], Callable[[QueryThread], None]], QueryThread]) -> None:
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._events = events
        self._query = start(events.put, lambda q: events.put(_DONE))  # raises on bad arguments
        self._finished = False
        self.query_id = self._query.run.query_id

    @property
    def result(self) -> QueryResult | None:
        return self._query.result

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        item = self._events.get()
        if item is _DONE:
            self._finished = True
            if self._query.error is not None:
                raise self._query.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the query if it is still running: no LLM call or search starts after this, and its
        worker is killed now. A model call already on the wire finishes in the background, unread."""
        if not self._finished:
            self._finished = True
            self._query.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            self._query.cancel()


class AsyncEventStream(AsyncIterator[Any]):
    """What ``engine.astream()`` returns: ``async for event in stream``. Cancelling the consuming
    task, ``aclose()``, leaving ``async with``, or dropping the stream cancels the query."""

    def __init__(self, start: Callable[[Callable[[Any], None], Callable[[QueryThread], None]], QueryThread]) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def deliver(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the consumer's loop is closed: nobody is left to read
                pass

        self._events = events
        self._query = start(deliver, lambda q: deliver(_DONE))  # raises on bad arguments
        self._finished = False
        self.query_id = self._query.run.query_id

    @property
    def result(self) -> QueryResult | None:
        return self._query.result

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._events.get()
        except asyncio.CancelledError:
            self._stop()
            raise
        if item is _DONE:
            self._finished = True
            if self._query.error is not None:
                raise self._query.error
            raise StopAsyncIteration
        return item

    def _stop(self) -> None:
        if not self._finished:
            self._finished = True
            self._query.cancel()

    async def aclose(self) -> None:
        self._stop()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop()

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            self._query.cancel()


async def wait_for_result(start: Callable[[Callable[[QueryThread], None]], QueryThread]) -> QueryResult:
    """``aquery``'s core: run the query on its thread, await its result; cancelling the awaiting
    task cancels the query."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[QueryThread] = loop.create_future()

    def settle(query: QueryThread) -> None:
        if not future.done():
            future.set_result(query)

    def done(query: QueryThread) -> None:
        try:
            loop.call_soon_threadsafe(settle, query)
        except RuntimeError:  # the loop is closed: nobody awaits the result
            pass

    query = start(done)
    try:
        finished = await future
    except asyncio.CancelledError:
        query.cancel()
        raise
    if finished.error is not None:
        raise finished.error
    if finished.result is None:  # cannot happen: a query that did not raise has a result
        raise RuntimeError("the query ended without a result")
    return finished.result
