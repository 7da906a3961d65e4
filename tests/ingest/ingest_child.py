"""Run by test_kill.py as a separate process: ingest a folder into a store, slowly.

    python -m tests.ingest.ingest_child KIND STORE_PATH DOCS_PATH

It prints "embedded N" after each embedding call, so the parent knows when
to SIGKILL it mid-ingest.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from deeprecall.embeddings import HashingEmbedding
from deeprecall.ingest import ingest_path

DIM = 64
BATCH = 8


class SlowEmbedding(HashingEmbedding):
    """Hashing vectors, a little slowly, announcing each batch."""

    calls = 0

    def __call__(self, input: Any) -> list[list[float]]:
        time.sleep(0.03)
        out = super().__call__(input)
        SlowEmbedding.calls += 1
        print(f"embedded {SlowEmbedding.calls}", flush=True)
        return out


def open_store(kind: str, path: str, embedding_fn: Any) -> Any:
    if kind == "chroma":
        from deeprecall.vectorstores.chroma import ChromaStore

        return ChromaStore("ingested", persist_directory=path, embedding_fn=embedding_fn)
    if kind == "faiss":
        from deeprecall.vectorstores.faiss import FaissStore

        return FaissStore(embedding_fn=embedding_fn, path=path)
    if kind == "lancedb":
        from deeprecall.vectorstores.lancedb import LanceDBStore

        return LanceDBStore("ingested", uri=path, embedding_fn=embedding_fn, create=True, writable=True)
    if kind == "qdrant":
        from deeprecall.vectorstores.qdrant import QdrantStore

        return QdrantStore("ingested", path=path, embedding_fn=embedding_fn, create=True, writable=True)
    raise SystemExit(f"unknown store kind {kind}")


def main() -> None:
    kind, store_path, docs_path = sys.argv[1:4]
    store = open_store(kind, store_path, SlowEmbedding(DIM))
    report = ingest_path(store, docs_path, chunk_size=300, overlap=60, batch_size=BATCH, progress=False)
    print(f"done {report.added} {report.already_present}", flush=True)


if __name__ == "__main__":
    main()
