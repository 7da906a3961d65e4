"""Searches queued behind a store call in flight share the next call, and each gets its own answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from deeprecall.errors import VectorStoreError
from deeprecall.vectorstores.coalesce import Coalescer
from tests.conftest import make_store


class GatedCall:
    """A store call whose first call waits for ``release``; it records the items of each call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail = fail

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        elif self.fail:
            raise ValueError("store went away")
        return [i * 10 for i in items]


def queued(coalescer: Coalescer[int, int], call: GatedCall, key: str, items: list[int]) -> list[Any]:
    """Run ``items`` while ``call``'s first call (item 0) is held in flight, then release it."""
    with ThreadPoolExecutor(max_workers=len(items) + 1) as pool:
        first = pool.submit(coalescer.run, key, 0, call)
        assert call.entered.wait(10)
        later = [pool.submit(_outcome, coalescer.run, key, i, call) for i in items]
        time.sleep(0.2)  # every later search is queued behind the call in flight
        call.release.set()
        return [first.result(), *(f.result() for f in later)]


def _outcome(fn: Callable[..., int], *args: Any) -> Any:
    try:
        return fn(*args)
    except ValueError as e:
        return e


def test_searches_queued_behind_a_call_go_together_and_get_their_own_rows():
    call = GatedCall()
    results = queued(Coalescer(), call, "k=5", [1, 2, 3, 4, 5])
    assert results == [0, 10, 20, 30, 40, 50]
    assert call.calls[0] == [0]
    assert sorted(call.calls[1]) == [1, 2, 3, 4, 5] and len(call.calls) == 2


def test_a_search_of_another_shape_does_not_wait_for_the_call_in_flight():
    call, other = GatedCall(), GatedCall()
    other.calls.append([])  # its calls are never held
    coalescer: Coalescer[int, int] = Coalescer()
    with ThreadPoolExecutor(max_workers=2) as pool:
        held = pool.submit(coalescer.run, "k=5", 0, call)
        assert call.entered.wait(10)
        assert coalescer.run("k=3", 7, other) == 70  # answered while the k=5 call is still in flight
        call.release.set()
        assert held.result() == 0


def test_a_failed_shared_call_fails_each_of_its_searches():
    call, coalescer = GatedCall(fail=True), Coalescer[int, int]()
    results = queued(coalescer, call, "k=5", [1, 2, 3])
    assert results[0] == 0
    assert all(isinstance(r, ValueError) and str(r) == "store went away" for r in results[1:])
    again = GatedCall()
    again.release.set()
    assert coalescer.run("k=5", 4, again) == 40  # the key is idle again: the next search goes at once


class HeldCollection:
    """A real Chroma collection whose first query waits for ``release`` (so later searches queue)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.vectors_per_call: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def query(self, **kwargs: Any) -> Any:
        self.vectors_per_call.append(len(kwargs.get("query_embeddings", kwargs.get("query_texts", []))))
        if len(self.vectors_per_call) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return self._collection.query(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


@pytest.mark.parametrize("filters", [None, {"tenant": "acme"}])
def test_chroma_searches_sharing_one_query_return_what_they_return_alone(filters):
    store = make_store("coalesce")
    questions = ["revenue", "factory Lyon", "CEO hired", "widget aluminium", "acme", "globex results"]
    alone = [[(h.id, round(h.score, 6), h.content, h.metadata) for h in store.search(q, 3, filters)] for q in questions]
    held = store._collection = HeldCollection(store.collection)
    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        first = pool.submit(store.search, questions[0], 3, filters)
        assert held.entered.wait(10)
        later = [pool.submit(store.search, q, 3, filters) for q in questions[1:]]
        time.sleep(0.2)
        held.release.set()
        together = [first.result(), *(f.result() for f in later)]
    assert [[(h.id, round(h.score, 6), h.content, h.metadata) for h in hits] for hits in together] == alone
    assert held.vectors_per_call == [1, len(questions) - 1]  # the five queued searches: one Chroma query


def test_chroma_query_error_in_a_shared_query_names_the_store_for_each_search():
    store = make_store("coalesce-error")
    held = store._collection = HeldCollection(store.collection)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(store.search, "revenue", 3)
        assert held.entered.wait(10)
        held._collection = None  # the store is gone: the shared query fails
        later = [pool.submit(store.search, q, 3) for q in ("acme", "globex", "Lyon")]
        time.sleep(0.2)
        held.release.set()
        for future in [first, *later]:
            with pytest.raises(VectorStoreError, match=r"ChromaStore\('coalesce-error-.*'\): query failed"):
                future.result()
