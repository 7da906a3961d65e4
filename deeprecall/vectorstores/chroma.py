"""Chroma: the zero-config default, embedded or attached to a collection you have.

``chromadb`` is imported here only, lazily (``pip install 'deeprecall[chroma]'``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

from deeprecall.errors import ConfigError, MissingDependencyError, VectorStoreError
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.filters import conjuncts


def to_chroma_where(filters: Filter | None) -> dict[str, Any] | None:
    """Chroma's ``where`` wants exactly one key per dict; split implicit ANDs."""
    if not filters:
        return None
    parts = [_node(c) for c in conjuncts(filters)]
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _node(cond: Filter) -> dict[str, Any]:
    (key, value), = cond.items()
    if key == "$or":
        children = [to_chroma_where(c) for c in value]
        return children[0] if len(children) == 1 else {"$or": children}  # type: ignore[return-value]
    if isinstance(value, dict) and len(value) > 1:
        return {"$and": [{key: {op: operand}} for op, operand in value.items()]}
    return {key: value}


def content_id(text: str, metadata: Metadata | None = None) -> str:
    """An id derived from content, so adding the same chunk twice adds it once."""
    h = hashlib.sha256(text.encode())
    if metadata and "source" in metadata:
        h.update(b"\0" + str(metadata["source"]).encode())
    return h.hexdigest()[:32]


class ChromaStore:
    """A Chroma collection.

    ``ChromaStore(collection_name="docs", persist_directory="./.deeprecall")``
    creates or reopens an embedded store; ``ChromaStore(collection=c)`` attaches
    to a collection you already have and uses its embedding function unless you
    pass ``embedding_fn``.
    """

    kind = "chroma"

    def __init__(
        self,
        collection_name: str = "deeprecall",
        persist_directory: str | None = "./.deeprecall",
        *,
        collection: Any = None,
        embedding_fn: Any = None,
        client: Any = None,
    ) -> None:
        self._lock = threading.Lock()
        if collection is not None:
            self._collection = collection
            self._embed = embedding_fn
            return
        if len(collection_name) < 3:
            raise ConfigError(f"Chroma collection names need at least 3 characters; got {collection_name!r}")
        try:
            import chromadb
        except ImportError as e:
            raise MissingDependencyError("chromadb", "chroma", "ChromaStore") from e
        if client is None:
            client = chromadb.PersistentClient(path=persist_directory) if persist_directory else chromadb.EphemeralClient()
        kwargs: dict[str, Any] = {"name": collection_name, "metadata": {"hnsw:space": "cosine"}}
        if embedding_fn is not None:
            kwargs["embedding_function"] = embedding_fn
        self._collection = client.get_or_create_collection(**kwargs)
        self._embed = None  # the collection embeds with the function it was created with

    @property
    def collection(self) -> Any:
        return self._collection

    def __repr__(self) -> str:
        return f"ChromaStore(collection={self._collection.name!r})"

    def add_documents(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ConfigError(f"add_documents got {len(texts)} texts but {len(metadatas)} metadatas")
        if ids is not None and len(ids) != len(texts):
            raise ConfigError(f"add_documents got {len(texts)} texts but {len(ids)} ids")
        metas = [dict(m) if m else None for m in (metadatas or [None] * len(texts))]
        doc_ids = [str(i) for i in ids] if ids is not None else [content_id(t, m) for t, m in zip(texts, metas)]
        if not texts:
            return []
        kwargs: dict[str, Any] = {"ids": doc_ids, "documents": texts}
        if any(metas):
            kwargs["metadatas"] = [m or {"_": ""} for m in metas]
        if self._embed is not None:
            kwargs["embeddings"] = self._embed(texts)
        try:
            with self._lock:
                self._collection.upsert(**kwargs)
        except Exception as e:
            raise VectorStoreError(f"Chroma upsert failed: {e}") from e
        return doc_ids

    def search(self, query: str, top_k: int = 5, filters: Filter | None = None) -> list[Hit]:
        n = self.count()
        if n == 0:
            return []
        kwargs: dict[str, Any] = {"n_results": min(top_k, n), "include": ["documents", "metadatas", "distances"]}
        if self._embed is not None:
            kwargs["query_embeddings"] = self._embed([query])
        else:
            kwargs["query_texts"] = [query]
        where = to_chroma_where(filters)
        if where:
            kwargs["where"] = where
        try:
            res = self._collection.query(**kwargs)
        except Exception as e:
            raise VectorStoreError(f"Chroma query failed: {e}") from e
        return [
            Hit(id=i, content=doc or "", metadata={k: v for k, v in (meta or {}).items() if k != "_"}, score=1.0 - float(dist))
            for i, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0])
        ]

    def count(self) -> int:
        return int(self._collection.count())

    def describe(self) -> dict[str, Any]:
        keys: set[str] = set()
        try:
            sample = self._collection.peek(limit=20)
            for meta in sample.get("metadatas") or []:
                keys.update(k for k in (meta or {}) if k != "_")
        except Exception:
            pass
        return {"kind": self.kind, "collection": self._collection.name, "documents": self.count(), "metadata_keys": sorted(keys)}
