"""The search and write flow every adapter shares, so each store file only holds
what is specific to its store: connecting, translating filters, one query, one upsert.

A subclass implements ``_translate`` (one conjunct to native form, or raise
``Untranslatable``), ``_search`` (vector query with native filters), ``_upsert``,
``count`` and ``scan``. This class adds validation, the over-fetch fallback for
conditions the store cannot express, the read-only guard and a lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._support import EmbeddingFn, dedupe, embed, prepare_batch, require_writable
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.write_batches import WriteLimits, write_slices

OVERFETCH = 4  # first over-fetch factor when part of a filter runs in Python; it grows 4x per round


class StoreAdapter:
    """Base class of the adapters. Not part of the Protocol: any object with the
    four methods works with the engine."""

    kind = "store"
    # Whether the vendor client serves concurrent searches safely. When it does,
    # searches from concurrent queries run in parallel; otherwise they take turns.
    concurrent_search = False
    # What one write may carry; ``add_documents`` splits larger calls (write_batches.py). Stores whose
    # limit depends on the instance (Chroma's client, pgvector's column count) override ``write_limits``.
    WRITE_LIMITS = WriteLimits(max_count=10_000)

    def __init__(self, name: str, embedding_fn: EmbeddingFn | None, writable: bool) -> None:
        self.name = name
        self.embedding_fn = embedding_fn
        self.writable = writable
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- what the engine calls -------------------------------------------------
    def search(self, query: str, top_k: int = 5, filters: Filter | None = None) -> list[Hit]:
        filters = fl.validate(filters)
        if top_k <= 0:
            return []
        native, residual = fl.partition(filters, self._translate)
        vector = self._query_vector(query)
        with contextlib.nullcontext() if self.concurrent_search else self._lock:
            if residual is None:
                return self._search(query, vector, top_k, native)
            return self._postfiltered(query, vector, top_k, native, residual)

    def _postfiltered(
        self, query: str, vector: list[float] | None, top_k: int, native: list[Any], residual: Filter
    ) -> list[Hit]:
        """Over-fetch and filter in Python, growing the fetch until enough hits pass or the store is exhausted."""
        total = self.count()
        if total == 0:
            return []
        k = min(max(top_k * OVERFETCH, 20), total)
        while True:
            hits = self._search(query, vector, k, native)
            kept = [h for h in hits if fl.matches(residual, h.metadata)]
            if len(kept) >= top_k or k >= total or len(hits) < k:
                return kept[:top_k]
            k = min(k * OVERFETCH, total)

    def count(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "collection": self.name,
            "documents": self.count(),
            "metadata_keys": self.metadata_keys(),
        }

    def add_documents(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        require_writable(self.writable, repr(self))
        texts, metas, doc_ids = prepare_batch(texts, metadatas, ids)
        texts, metas, unique_ids = dedupe(texts, metas, doc_ids)
        if texts:
            self._write(unique_ids, texts, metas, embed(self.embedding_fn, texts, repr(self)))
        return doc_ids

    def _write(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        """Upsert in writes within ``write_limits()``, in order. Each write is as atomic as the store makes one
        upsert (see docs/vectorstores.md); if one fails, the earlier ones stay written and the call raises.
        Re-running the same call is safe: every write is an upsert by id. ``vectors`` may be empty (Chroma
        embedding with the collection's own function)."""
        dim = len(vectors[0]) if vectors else 0
        for part in write_slices(ids, texts, metas, dim, self.write_limits(), repr(self)):
            with self._lock:
                self._upsert(ids[part], texts[part], metas[part], vectors[part])

    def write_limits(self) -> WriteLimits:
        """What one write to this store may carry."""
        return self.WRITE_LIMITS

    # -- optional extras: ingestion and hybrid search use them when present ------
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already stored, so re-ingesting skips their embedding."""
        return set()

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        """Every document once, in no particular order (for BM25 in HybridStore)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its documents")

    def fingerprint(self) -> str | None:
        """A cheap marker that changes whenever the store's contents change (the server's answer cache
        keys on it), or None when the store has none: then nothing is cached. Chroma has one."""
        return None

    def metadata_keys(self) -> list[str]:
        """Metadata field names, from a small sample; the model sees them in describe()."""
        keys: set[str] = set()
        try:
            for i, hit in enumerate(self.scan(batch_size=20)):
                keys.update(hit.metadata)
                if i >= 19:
                    break
        except Exception:
            return []
        return sorted(keys)

    # -- what a store file implements -----------------------------------------
    def _query_vector(self, query: str) -> list[float] | None:
        return embed(self.embedding_fn, [query], repr(self))[0]

    def _translate(self, conjunct: Filter) -> Any:
        raise fl.Untranslatable(conjunct)

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        raise NotImplementedError

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        raise NotImplementedError
