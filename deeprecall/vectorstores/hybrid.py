"""Hybrid search around any store: vector hits and BM25 keyword hits, fused by reciprocal rank.

Why a wrapper rather than each store's native hybrid mode: Qdrant, Milvus,
LanceDB and Pinecone can do keyword or sparse search only when the user's
collection was built with sparse vectors or a full-text index, which an
attached store usually was not. The wrapper needs nothing from the store but
``search`` and ``scan``: it builds a BM25 index in memory from ``scan()`` on
first use and rebuilds it when ``count()`` changes. Exact names, codes and
rare words that embeddings blur are what BM25 adds.

Filters apply to both sides: the store filters the vector side natively; the
keyword side checks ``filters.matches`` on each candidate's metadata.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores.base import Filter, Hit, Metadata

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over an in-memory inverted index; small enough to read in one sitting."""

    def __init__(self, docs: Iterable[Hit], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs: list[Hit] = []
        self.lengths: list[int] = []
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for hit in docs:
            self.add(hit)

    def add(self, hit: Hit) -> None:
        idx = len(self.docs)
        terms = Counter(tokenize(hit.content))
        self.docs.append(hit)
        self.lengths.append(sum(terms.values()))
        for term, tf in terms.items():
            self.postings[term].append((idx, tf))

    def search(self, query: str, k: int, filters: Filter | None = None) -> list[tuple[Hit, float]]:
        n = len(self.docs)
        if n == 0:
            return []
        avg = sum(self.lengths) / n or 1.0
        scores: dict[int, float] = defaultdict(float)
        for term in set(tokenize(query)):
            posting = self.postings.get(term, [])
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for idx, tf in posting:
                norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[idx] / avg)
                scores[idx] += idf * tf * (self.k1 + 1) / norm
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        out: list[tuple[Hit, float]] = []
        for idx, score in ranked:
            if fl.matches(filters, self.docs[idx].metadata):
                out.append((self.docs[idx], score))
                if len(out) >= k:
                    break
        return out


def rrf(rankings: Sequence[Sequence[Hit]], k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: each list adds 1/(k + rank); the fused score is that sum."""
    scores: dict[str, float] = defaultdict(float)
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] += 1.0 / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: -scores[i])
    return [Hit(id=i, content=first[i].content, metadata=first[i].metadata, score=scores[i]) for i in order]


class HybridStore:
    """``HybridStore(store)``: the same Protocol, searching by vector and BM25 at once.

    ``candidates`` is how many hits each side contributes before fusion (at
    least ``top_k``); ``rrf_k`` is the usual RRF constant.
    """

    def __init__(self, store: Any, *, candidates: int = 30, rrf_k: int = 60) -> None:
        self.store = store
        self.candidates, self.rrf_k = candidates, rrf_k
        self.kind = f"{getattr(store, 'kind', 'store')}+bm25"
        self._bm25: BM25 | None = None
        self._indexed = -1
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HybridStore({self.store!r})"

    def _index(self) -> BM25:
        """Build (or rebuild, when the store changed size) the keyword index from ``scan()``."""
        n = self.store.count()
        with self._lock:
            if self._bm25 is None or n != self._indexed:
                self._bm25 = BM25(self.store.scan())
                self._indexed = n
            return self._bm25

    def search(self, query: str, top_k: int = 5, filters: Filter | None = None) -> list[Hit]:
        filters = fl.validate(filters)
        if top_k <= 0:
            return []
        k = max(top_k, self.candidates)
        vector_hits = self.store.search(query, top_k=k, filters=filters)
        keyword_hits = [h for h, _ in self._index().search(query, k, filters)]
        return rrf([vector_hits, keyword_hits], self.rrf_k)[:top_k]

    def keyword_search(self, query: str, top_k: int = 5, filters: Filter | None = None) -> list[Hit]:
        """BM25 alone, with BM25 scores (useful to see what the keyword side contributes)."""
        return [Hit(h.id, h.content, h.metadata, s) for h, s in self._index().search(query, top_k, fl.validate(filters))]

    def count(self) -> int:
        return int(self.store.count())

    def describe(self) -> dict[str, Any]:
        return {**self.store.describe(), "kind": self.kind, "search": "hybrid: vector + BM25, reciprocal rank fusion"}

    def add_documents(
        self, texts: Sequence[str], metadatas: Sequence[Metadata] | None = None, ids: Sequence[str] | None = None
    ) -> list[str]:
        out: list[str] = self.store.add_documents(texts, metadatas, ids)
        with self._lock:
            self._bm25 = None  # rebuilt on the next search
        return out

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return set(self.store.existing_ids(ids)) if hasattr(self.store, "existing_ids") else set()

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        return iter(self.store.scan(batch_size))
