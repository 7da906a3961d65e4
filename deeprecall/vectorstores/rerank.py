"""Reranking: fetch more candidates than asked for, score each (query, text) pair, keep the best.

A cross-encoder reads the query and the passage together, so it ranks better
than the vector distance that found the candidates, at the cost of one model
call per candidate. ``RerankedStore`` takes any scorer
``(query, texts) -> scores``; ``CrossEncoderReranker`` is the one backed by
sentence-transformers (``pip install 'deeprecall[sentence-transformers]'``)
and loads any local model path, so it works offline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from deeprecall.errors import ConfigError, MissingDependencyError, VectorStoreError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores.base import Filter, Hit, Metadata

Scorer = Callable[[str, list[str]], Sequence[float]]


class CrossEncoderReranker:
    """``CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")`` or a local path to such a model."""

    def __init__(self, model_name_or_path: str, *, device: str = "cpu", batch_size: int = 32) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as e:
            raise MissingDependencyError("sentence-transformers", "sentence-transformers", "CrossEncoderReranker") from e
        try:
            self.model = CrossEncoder(model_name_or_path, device=device)
        except Exception as e:
            raise ConfigError(
                f"could not load cross-encoder {model_name_or_path!r}: {e}. Offline, pass the path of a model "
                f"already on disk."
            ) from e
        self.batch_size = batch_size

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        scores = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False)
        return [float(s) for s in scores]


class RerankedStore:
    """``RerankedStore(store, reranker)``: the same Protocol; hits are reordered by the reranker's scores."""

    def __init__(self, store: Any, reranker: Scorer, *, candidates: int = 20) -> None:
        self.store, self.reranker, self.candidates = store, reranker, candidates
        self.kind = f"{getattr(store, 'kind', 'store')}+rerank"

    def __repr__(self) -> str:
        return f"RerankedStore({self.store!r})"

    def search(self, query: str, top_k: int = 5, filters: Filter | None = None) -> list[Hit]:
        if top_k <= 0:
            return []
        hits = self.store.search(query, top_k=max(top_k, self.candidates), filters=fl.validate(filters))
        try:
            scores = list(self.reranker(query, [h.content for h in hits]))
        except Exception as e:
            raise VectorStoreError(f"the reranker failed: {type(e).__name__}: {e}") from e
        if len(scores) != len(hits):
            raise VectorStoreError(f"the reranker returned {len(scores)} scores for {len(hits)} hits")
        ranked = sorted(zip(scores, range(len(hits)), hits, strict=True), key=lambda t: (-t[0], t[1]))
        return [Hit(h.id, h.content, h.metadata, float(s)) for s, _, h in ranked[:top_k]]

    def count(self) -> int:
        return int(self.store.count())

    def describe(self) -> dict[str, Any]:
        return {**self.store.describe(), "kind": self.kind}

    def add_documents(
        self, texts: Sequence[str], metadatas: Sequence[Metadata] | None = None, ids: Sequence[str] | None = None
    ) -> list[str]:
        return list(self.store.add_documents(texts, metadatas, ids))

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return set(self.store.existing_ids(ids)) if hasattr(self.store, "existing_ids") else set()

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        return iter(self.store.scan(batch_size))
