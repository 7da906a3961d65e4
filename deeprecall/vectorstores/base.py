"""The one Protocol every vector store adapter implements, and the Hit it returns.

The engine only ever calls ``search``, ``count`` and ``describe``. ``add_documents``
exists for the stores DeepRecall creates itself (and for ingestion); adapters
attached read-only to a user's store raise ``VectorStoreError`` from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Filter = dict[str, Any]
Metadata = dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is a similarity: higher means closer."""

    id: str
    content: str
    metadata: Metadata = field(default_factory=dict)
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "content": self.content, "metadata": dict(self.metadata), "score": self.score}


@runtime_checkable
class VectorStore(Protocol):
    """What the engine needs from a store.

    ``filters`` is in DeepRecall's filter language (see ``filters.py``); each
    adapter translates it to the store's native form. It arrives already
    validated and already combined with the host-enforced filters.
    """

    def search(self, query: str, top_k: int = 5, filters: Filter | None = None) -> list[Hit]: ...

    def count(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        """A short, model-safe description: kind, collection name, size, metadata keys."""
        ...

    def add_documents(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]: ...
