"""Pinecone: a serverless or pod index, one namespace of it.

``pinecone`` is imported here only (``pip install 'deeprecall[pinecone]'``), and
only to build a client when you pass no ``index``. The adapter calls five
methods of the SDK's ``Index``: ``query``, ``upsert``, ``fetch``, ``list`` and
``describe_index_stats``, all with keyword arguments, as the SDK requires.

Schema mapping: Pinecone keeps no text, so the text lives in a metadata key
(``text_field``, ``"text"`` as LangChain writes it); the rest of the metadata
is the document's metadata. Pinecone's filter language is DeepRecall's, except
that ranges take numbers only, so string ranges run in Python after an
over-fetch. Counts come from ``describe_index_stats``, which Pinecone updates
a few seconds after a write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from deeprecall.errors import ConfigError, MissingDependencyError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._adapter import StoreAdapter
from deeprecall.vectorstores._support import EmbeddingFn, check_dimension, vendor_errors
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.write_batches import JSON_FLOAT_BYTES, WriteLimits

# Pinecone refuses an upsert over 2 MB or 1,000 vectors (docs.pinecone.io "Upsert limits"); the REST client
# sends JSON. The estimate counts 24 bytes a float (a JSON float takes at most 21), so 2 MB less a margin holds.
PINECONE_LIMITS = WriteLimits(max_count=1_000, max_bytes=1_900_000, bytes_per_float=JSON_FLOAT_BYTES)


def to_pinecone_filter(conjunct: Filter) -> dict[str, Any]:
    """One conjunct in Pinecone's form, always with explicit operators."""
    ((key, value),) = conjunct.items()
    if key == "$or":
        return {"$or": [_all(fl.conjuncts(child)) for child in value]}
    ops = fl.operators(value)
    for op, operand in ops.items():
        if op in ("$gt", "$gte", "$lt", "$lte") and not fl.is_number(operand):
            raise fl.Untranslatable(conjunct)
    return {key: ops}


def _all(parts: list[Filter]) -> dict[str, Any]:
    native = [to_pinecone_filter(p) for p in parts]
    return native[0] if len(native) == 1 else {"$and": native}


class PineconeStore(StoreAdapter):
    """``PineconeStore("docs", embedding_fn=fn)`` with ``PINECONE_API_KEY`` set, or ``index=`` an SDK Index.

    Read-only unless ``writable=True``: DeepRecall never creates Pinecone indexes.
    """

    kind = "pinecone"
    WRITE_LIMITS = PINECONE_LIMITS

    def __init__(
        self,
        index_name: str = "",
        *,
        embedding_fn: EmbeddingFn | None,
        host: str = "",
        api_key: str | None = None,
        index: Any = None,
        namespace: str = "",
        writable: bool = False,
        text_field: str = "text",
    ) -> None:
        super().__init__(index_name or host or "index", embedding_fn, writable)
        self.namespace, self.text_field = namespace, text_field
        self.index = index if index is not None else _connect(index_name, host, api_key)
        with vendor_errors(repr(self), "describe_index_stats"):
            stats = self.index.describe_index_stats()
        check_dimension(stats.dimension, embedding_fn, repr(self))

    def _translate(self, conjunct: Filter) -> dict[str, Any]:
        return to_pinecone_filter(conjunct)

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        flt = None if not native else native[0] if len(native) == 1 else {"$and": native}
        with vendor_errors(repr(self), "query"):
            res = self.index.query(
                vector=vector, top_k=k, namespace=self.namespace, filter=flt, include_metadata=True
            )
        return [self._hit(m.id, m.metadata, float(m.score)) for m in res.matches]

    def _hit(self, doc_id: str, metadata: Metadata | None, score: float) -> Hit:
        meta = dict(metadata or {})
        text = meta.pop(self.text_field, "")
        return Hit(id=str(doc_id), content=str(text), metadata=meta, score=score)

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        records: list[dict[str, Any]] = []
        for i, t, m, v in zip(ids, texts, metas, vectors, strict=True):
            meta = _clean(m)
            meta[self.text_field] = t
            records.append({"id": i, "values": v, "metadata": meta})
        with vendor_errors(repr(self), "upsert"):  # one request: add_documents already split to PINECONE_LIMITS
            # No batch_size: with one, the SDK reports a failed request in the response instead of raising.
            self.index.upsert(vectors=records, namespace=self.namespace)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with vendor_errors(repr(self), "fetch"):
            return set(self.index.fetch(ids=list(ids), namespace=self.namespace).vectors)

    def scan(self, batch_size: int = 100) -> Iterator[Hit]:
        with vendor_errors(repr(self), "list"):
            pages = iter(self.index.list(namespace=self.namespace, limit=min(batch_size, 100)))
        while True:
            with vendor_errors(repr(self), "list"):
                page = next(pages, None)
            if page is None:
                return
            with vendor_errors(repr(self), "fetch"):
                fetched = self.index.fetch(ids=[item.id for item in page.vectors], namespace=self.namespace)
            for doc_id, vec in fetched.vectors.items():
                yield self._hit(doc_id, vec.metadata, 0.0)

    def count(self) -> int:
        with vendor_errors(repr(self), "describe_index_stats"):
            stats = self.index.describe_index_stats()
        summary = stats.namespaces.get(self.namespace)
        return int(summary.vector_count) if summary is not None else 0


def _clean(meta: Metadata) -> Metadata:
    """Pinecone metadata takes strings, numbers, booleans and lists of strings; other values become strings."""
    out: Metadata = {}
    for k, v in meta.items():
        if v is None:
            continue
        ok = isinstance(v, (str, int, float, bool)) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        out[k] = v if ok else str(v)
    return out


def _connect(index_name: str, host: str, api_key: str | None) -> Any:
    try:
        from pinecone import Pinecone
    except ImportError as e:
        raise MissingDependencyError("pinecone", "pinecone", "PineconeStore") from e
    key = api_key or os.environ.get("PINECONE_API_KEY")
    if not key:
        raise ConfigError("PineconeStore needs an API key: set PINECONE_API_KEY or pass api_key=")
    if not (index_name or host):
        raise ConfigError("PineconeStore needs index_name= or host=")
    with vendor_errors("PineconeStore", "connecting"):
        return Pinecone(api_key=key).Index(name=index_name, host=host)
