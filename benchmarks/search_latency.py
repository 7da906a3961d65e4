"""Search latency per store at 10k and 100k documents, through DeepRecall's adapters.

    .venv/bin/python benchmarks/search_latency.py [--sizes 10000,100000] [--stores ...] [--queries 50]

Vectors are random unit vectors of 384 dimensions (MiniLM's size), loaded in
batches through each adapter's write path; the query embedding is random too,
so the figures are the store's search plus DeepRecall's adapter, not a model.
Each store is timed unfiltered and with a 10%-selective metadata filter
(``{"tenant": "t3"}``), and with a string-range filter that most stores run in
Python after an over-fetch (``{"tenant": {"$gte": "t8"}}``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._stores import STORES, drop, open_store
from deeprecall.embeddings.base import ChromaCompatible

DIM = 384
LOAD_BATCH = 1000


class RandomEmbedding(ChromaCompatible):
    dim = DIM

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        v = self.rng.standard_normal((len(input), DIM)).astype("float32")
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()


def load(store: Any, n: int, start: int, embed: RandomEmbedding) -> None:
    for lo in range(start, n, LOAD_BATCH):
        hi = min(n, lo + LOAD_BATCH)
        ids = [f"d{i}" for i in range(lo, hi)]
        texts = [f"document {i}" for i in range(lo, hi)]
        metas = [{"tenant": f"t{i % 10}", "n": i} for i in range(lo, hi)]
        store._upsert(ids, texts, metas, embed(texts))


def latency(store: Any, queries: int, filters: dict[str, Any] | None) -> tuple[float, float]:
    times = []
    for i in range(queries):
        t = time.perf_counter()
        hits = store.search(f"query {i}", top_k=10, filters=filters)
        times.append((time.perf_counter() - t) * 1000)
        assert len(hits) == 10, (store.kind, filters, len(hits))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"search latency, top_k=10, dim={DIM}, {args.queries} queries; ms p50/p95")
    print(f"{'store':<10} {'docs':>7} {'load s':>7} {'no filter':>12} {'eq filter':>12} {'py filter':>12}")
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            embed = RandomEmbedding()
            try:
                store = open_store(kind, Path(tmp), embed)
            except Exception as e:
                print(f"{kind:<10} skipped: {e}")
                continue
            loaded = 0
            for n in sizes:
                t = time.perf_counter()
                load(store, n, loaded, embed)
                loaded, took = n, time.perf_counter() - t
                cells = [latency(store, args.queries, f) for f in (None, {"tenant": "t3"}, {"tenant": {"$gte": "t8"}})]
                row = " ".join(f"{p50:>6.1f}/{p95:<5.1f}" for p50, p95 in cells)
                print(f"{kind:<10} {n:>7} {took:>7.1f} {row}", flush=True)
            drop(store)


if __name__ == "__main__":
    main()
