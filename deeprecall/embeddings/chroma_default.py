"""Chroma's default embedding (all-MiniLM-L6-v2 on ONNX), which chromadb downloads on first use.

With no internet the download fails deep inside chromadb with an httpx error;
this wrapper turns that into a ``ConfigError`` that names the offline route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deeprecall.embeddings.base import OFFLINE_ROUTE, ChromaCompatible
from deeprecall.errors import ConfigError, MissingDependencyError


class ChromaDefaultEmbedding(ChromaCompatible):
    """``ChromaDefaultEmbedding()``: 384 dimensions, the vectors of a default Chroma collection."""

    dim = 384

    def __init__(self) -> None:
        try:
            from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2
        except ImportError as e:
            raise MissingDependencyError("chromadb", "chroma", "ChromaDefaultEmbedding") from e
        self._fn: Any = ONNXMiniLM_L6_V2()

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        try:
            vectors = self._fn(list(input))
        except Exception as e:
            where = getattr(self._fn, "DOWNLOAD_PATH", "chromadb's cache")
            raise ConfigError(
                f"Chroma's default embedding model is not in {where} and could not be downloaded "
                f"({type(e).__name__}: {e}). {OFFLINE_ROUTE}"
            ) from e
        return [v.tolist() if hasattr(v, "tolist") else list(v) for v in vectors]

    @staticmethod
    def name() -> str:
        return "deeprecall-chroma-default"
