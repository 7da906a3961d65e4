"""Store openers shared by the store benchmarks: each returns a fresh, empty, writable store."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

STORES = ["chroma", "qdrant", "faiss", "lancedb", "milvus", "pgvector"]


def open_store(kind: str, folder: Path, embedding_fn: Any) -> Any:
    name = "b_" + uuid.uuid4().hex[:8]
    if kind == "chroma":
        from deeprecall.vectorstores.chroma import ChromaStore

        return ChromaStore(name, persist_directory=str(folder / "chroma"), embedding_fn=embedding_fn)
    if kind == "qdrant":
        from deeprecall.vectorstores.qdrant import QdrantStore

        return QdrantStore(name, path=str(folder / name), embedding_fn=embedding_fn, create=True)
    if kind == "faiss":
        from deeprecall.vectorstores.faiss import FaissStore

        return FaissStore(embedding_fn=embedding_fn)  # in memory, saved at the end, as the raw side does
    if kind == "lancedb":
        from deeprecall.vectorstores.lancedb import LanceDBStore

        return LanceDBStore(name, uri=str(folder / "lance"), embedding_fn=embedding_fn, create=True)
    if kind == "milvus":
        from deeprecall.vectorstores.milvus import MilvusStore

        return MilvusStore(name, uri=str(folder / f"{name}.db"), embedding_fn=embedding_fn, create=True)
    if kind == "pgvector":
        from deeprecall.vectorstores.pgvector import PgVectorStore

        dsn = os.environ.get("DEEPRECALL_TEST_PG_DSN")
        if not dsn:
            raise RuntimeError("set DEEPRECALL_TEST_PG_DSN (scripts/services.sh postgres)")
        return PgVectorStore(name, dsn=dsn, embedding_fn=embedding_fn, create=True)
    raise ValueError(kind)


def drop(store: Any) -> None:
    """Leave nothing behind in shared services."""
    if getattr(store, "kind", "") == "pgvector":
        store._exec(f"DROP TABLE IF EXISTS {store.name}")
    if hasattr(store, "close"):
        store.close()
