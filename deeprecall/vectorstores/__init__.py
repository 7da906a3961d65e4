"""Vector store adapters. Each vendor SDK is imported only inside its own file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deeprecall.vectorstores.base import Hit, VectorStore

if TYPE_CHECKING:
    from deeprecall.vectorstores.chroma import ChromaStore

_LAZY = {"ChromaStore": "deeprecall.vectorstores.chroma"}

__all__ = ["ChromaStore", "Hit", "VectorStore"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deeprecall.vectorstores' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
