"""Concurrent searches that can share one store call, share it.

Why: an embedded Chroma pays a fixed cost per ``query()`` (~0.5 ms of CPU: its SQLite worker thread
and Rust runtime, whatever is asked) and serves calls one at a time, while a query with 16 vectors
costs little more than a query with one. Under concurrent queries, searches therefore queue behind
each other anyway; here those that queue behind a call in flight with the same shape (``key``: the
same ``top_k`` and filters) go to the store together, as one call, when it returns.

Nothing waits on purpose: a search with no call of its key in flight goes at once, alone, so a
single query's searches are sent exactly as before. Each search gets only its own row of the
answer; if the shared call fails, each of its searches raises that error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Row = TypeVar("Row")


class _Batch(Generic[Item, Row]):
    __slots__ = ("done", "error", "go", "items", "rows")

    def __init__(self, first: Item) -> None:
        self.items: list[Item] = [first]
        self.rows: Sequence[Row] = ()
        self.error: BaseException | None = None
        self.go = threading.Event()  # set when the call before this batch has returned: this batch may go
        self.done = threading.Event()  # set when this batch's call has returned (rows or error)


Call = Callable[[list[Item]], Sequence[Row]]


class Coalescer(Generic[Item, Row]):
    """``Coalescer().run(key, item, call)``: ``call(items)`` returns one row per item, in order. Searches
    with the same key must be answerable by one another's ``call`` (the batch's sender makes it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: set[Hashable] = set()
        self._waiting: dict[Hashable, _Batch[Item, Row]] = {}  # per key: the next batch, still open to joiners

    def run(self, key: Hashable, item: Item, call: Call[Item, Row]) -> Row:
        with self._lock:
            if key not in self._in_flight:
                self._in_flight.add(key)
                batch, index, lead = _Batch[Item, Row](item), 0, True
                batch.go.set()
            elif key in self._waiting:
                batch, lead = self._waiting[key], False
                index = len(batch.items)
                batch.items.append(item)
            else:  # the first to queue behind the call in flight sends the next batch when that call returns
                batch = self._waiting[key] = _Batch[Item, Row](item)
                index, lead = 0, True
        if lead:
            batch.go.wait()
            self._send(key, batch, call)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.rows[index]

    def _send(self, key: Hashable, batch: _Batch[Item, Row], call: Call[Item, Row]) -> None:
        """Make the batch's call, then let the batch queued behind it go (or mark the key idle)."""
        try:
            rows = call(batch.items)
            if len(rows) != len(batch.items):
                raise RuntimeError(f"a batched store call returned {len(rows)} rows for {len(batch.items)} searches")
            batch.rows = rows
        except BaseException as e:  # every search of the batch raises it, the sender's included
            batch.error = e
        finally:
            with self._lock:
                following = self._waiting.pop(key, None)  # closed to joiners from here on
                if following is None:
                    self._in_flight.discard(key)
            if following is not None:
                following.go.set()
            batch.done.set()


def shape_key(*parts: Any) -> Hashable:
    """A grouping key for searches whose parts (filters included) may be unhashable dicts."""
    return repr(parts)
