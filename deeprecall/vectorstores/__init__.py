"""Vector store adapters. Each vendor SDK is imported only inside its own file,
so ``from deeprecall.vectorstores import QdrantStore`` costs nothing until used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deeprecall._lazy import lazy_exports
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


__getattr__ = lazy_exports(__name__, _LAZY)
