"""ChromaStore serves concurrent searches without a lock (concurrent_search=True): they must stay correct."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import make_store


def test_concurrent_searches_return_what_sequential_ones_do():
    store = make_store("concurrent")
    cases = [(q, f) for q in ("revenue", "factory Lyon", "CEO hired", "widget aluminium")
             for f in (None, {"tenant": "acme"}, {"tenant": "globex"}, {"year": {"$gte": 2022}})]
    expected = [[h.id for h in store.search(q, 3, f)] for q, f in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            got = list(pool.map(lambda case: [h.id for h in store.search(case[0], 3, case[1])], cases))
            assert got == expected
