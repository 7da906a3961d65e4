"""Vector store adapters. Each vendor SDK is imported only inside its own file,
so ``from deeprecall.vectorstores import QdrantStore`` costs nothing until used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deeprecall.vectorstores.base import Hit, VectorStore

if TYPE_CHECKING:
    from deeprecall.vectorstores.chroma import ChromaStore
    from deeprecall.vectorstores.faiss import FaissStore
    from deeprecall.vectorstores.hybrid import HybridStore
    from deeprecall.vectorstores.lancedb import LanceDBStore
    from deeprecall.vectorstores.milvus import MilvusStore
    from deeprecall.vectorstores.pgvector import PgVectorStore
    from deeprecall.vectorstores.pinecone import PineconeStore
    from deeprecall.vectorstores.qdrant import QdrantStore
    from deeprecall.vectorstores.rerank import CrossEncoderReranker, RerankedStore

_LAZY = {
    "ChromaStore": "deeprecall.vectorstores.chroma",
    "QdrantStore": "deeprecall.vectorstores.qdrant",
    "PgVectorStore": "deeprecall.vectorstores.pgvector",
    "FaissStore": "deeprecall.vectorstores.faiss",
    "MilvusStore": "deeprecall.vectorstores.milvus",
    "LanceDBStore": "deeprecall.vectorstores.lancedb",
    "PineconeStore": "deeprecall.vectorstores.pinecone",
    "HybridStore": "deeprecall.vectorstores.hybrid",
    "RerankedStore": "deeprecall.vectorstores.rerank",
    "CrossEncoderReranker": "deeprecall.vectorstores.rerank",
}

__all__ = [
    "ChromaStore",
    "CrossEncoderReranker",
    "FaissStore",
    "Hit",
    "HybridStore",
    "LanceDBStore",
    "MilvusStore",
    "PgVectorStore",
    "PineconeStore",
    "QdrantStore",
    "RerankedStore",
    "VectorStore",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deeprecall.vectorstores' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
