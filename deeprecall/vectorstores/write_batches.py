"""Splitting one ``add_documents`` call into writes each store accepts.

Why: stores cap a single write (Chroma's ``max_batch_size``, PostgreSQL's 65,535
bind parameters per statement, Pinecone's 2 MB / 1,000 vectors per upsert, the
request size of Qdrant's and Milvus's servers), and a caller should not have to
know those numbers: ``store.add_documents(texts)`` with 20,000 texts must work.
Every adapter declares its ``WriteLimits``; ``StoreAdapter.add_documents`` cuts
the documents with ``write_slices`` here, the one splitter all adapters share.

Sizes are estimates of what goes on the wire: the id, text and JSON metadata
as UTF-8, plus the vector at ``bytes_per_float`` (4 for binary protocols, 24
for JSON where a float is written as text) and a fixed overhead per document. The byte caps in each adapter
keep a margin below the store's real limit for that reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from deeprecall.errors import VectorStoreError
from deeprecall.vectorstores.base import Metadata

JSON_FLOAT_BYTES = 24  # "-0.012345678901234567," (a float32 widened to a double) is 22 bytes as JSON
DOCUMENT_OVERHEAD = 64  # field names, quotes and brackets around one document in a JSON request
BINARY_FLOAT_BYTES = 4


@dataclass(frozen=True)
class WriteLimits:
    """What one write to a store may carry: at most ``max_count`` documents and,
    when ``max_bytes`` is set, at most that many estimated bytes."""

    max_count: int
    max_bytes: int | None = None
    bytes_per_float: int = BINARY_FLOAT_BYTES

    def __post_init__(self) -> None:
        if self.max_count < 1:
            raise ValueError(f"WriteLimits.max_count must be at least 1, got {self.max_count}")


def document_bytes(doc_id: str, text: str, meta: Metadata, dim: int, bytes_per_float: int) -> int:
    """Estimated wire size of one document with a ``dim``-dimensional vector."""
    meta_bytes = len(json.dumps(meta, default=str).encode()) if meta else 0
    return DOCUMENT_OVERHEAD + len(doc_id.encode()) + len(text.encode()) + meta_bytes + dim * bytes_per_float


def write_slices(
    ids: Sequence[str],
    texts: Sequence[str],
    metas: Sequence[Metadata],
    dim: int,
    limits: WriteLimits,
    store: str,
) -> Iterator[slice]:
    """Consecutive slices covering every document, each within ``limits``; order is kept.

    A single document bigger than ``max_bytes`` can never be written, so that is
    checked for every document before any slice is handed out: the caller writes
    all or, for this reason, nothing.
    """
    if limits.max_bytes is None:
        yield from (slice(i, i + limits.max_count) for i in range(0, len(ids), limits.max_count))
        return
    sizes = [document_bytes(i, t, m, dim, limits.bytes_per_float) for i, t, m in zip(ids, texts, metas, strict=True)]
    for doc_id, size in zip(ids, sizes, strict=True):
        if size > limits.max_bytes:
            raise VectorStoreError(
                f"{store}: document {doc_id!r} is about {size:,} bytes with its vector and metadata, more than the "
                f"{limits.max_bytes:,} bytes one write to this store may carry. Split it into smaller chunks "
                f"(ingestion's chunk size) or move large metadata out of the document."
            )
    start, total = 0, 0
    for end, size in enumerate(sizes):
        if end > start and (end - start >= limits.max_count or total + size > limits.max_bytes):
            yield slice(start, end)
            start, total = end, 0
        total += size
    if start < len(sizes):
        yield slice(start, len(sizes))
