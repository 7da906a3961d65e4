"""Chroma's default embedding (all-MiniLM-L6-v2 on ONNX), which chromadb downloads on first use.

With no internet the download fails deep inside chromadb with an httpx error;
this wrapper turns that into a ``ConfigError`` that names the offline route.
``cache_present()`` says whether the download would be skipped, so the default
embedding (``MiniLMEmbedding``) can prefer a copy already on disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from deeprecall.embeddings.base import OFFLINE_ROUTE, ChromaCompatible
from deeprecall.errors import ConfigError, MissingDependencyError

# What chromadb itself checks before it skips the download (ONNXMiniLM_L6_V2._download_model_if_not_exists).
_CACHE_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json",
                "vocab.txt")


def _onnx_class() -> Any:
    try:
        from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2
    except ImportError as e:
        raise MissingDependencyError("chromadb", "chroma", "ChromaDefaultEmbedding") from e
    return ONNXMiniLM_L6_V2


def cache_present() -> bool:
    """True when chromadb's ONNX model is already on disk, so using it downloads nothing."""
    try:
        cls = _onnx_class()
    except MissingDependencyError:
        return False
    folder = os.path.join(cls.DOWNLOAD_PATH, cls.EXTRACTED_FOLDER_NAME)
    return all(os.path.exists(os.path.join(folder, f)) for f in _CACHE_FILES)


class ChromaDefaultEmbedding(ChromaCompatible):
    """``ChromaDefaultEmbedding()``: 384 dimensions, the vectors of a default Chroma collection."""

    dim = 384

    def __init__(self) -> None:
        self._fn: Any = _onnx_class()()

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
        # Shared with MiniLMEmbedding on purpose: same model, same vectors (docs/vectorstores.md).
        return "deeprecall-chroma-default"
