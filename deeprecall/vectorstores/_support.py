"""Helpers every adapter shares: ids, embedding calls, dimension checks, write guards.

They live here, not in ``base.py``, so that the Protocol file stays the one
thing a reader needs to implement a store.
"""

from __future__ import annotations

import errno
import hashlib
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from deeprecall.errors import ConfigError, DeepRecallError, ReadOnlyStoreError, StoreFullError, VectorStoreError
from deeprecall.vectorstores.base import Metadata

EmbeddingFn = Callable[[Sequence[str]], Any]
MARKER = "deeprecall"  # written into the store's own collection metadata where it has any


def content_id(text: str, metadata: Metadata | None = None) -> str:
    """An id derived from content, so adding the same chunk twice adds it once.

    The source (when given) is part of the id: the same paragraph in two files
    is two documents, each citable by its own source.
    """
    h = hashlib.sha256(text.encode())
    if metadata and "source" in metadata:
        h.update(b"\0" + str(metadata["source"]).encode())
    return h.hexdigest()[:32]


def id_to_uuid(doc_id: str) -> str:
    """Map any string id to a stable UUID, for stores (Qdrant) that only take UUIDs or ints."""
    try:
        return str(uuid.UUID(hex=doc_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "deeprecall:" + doc_id))


def id_to_int64(doc_id: str) -> int:
    """Map a string id to a positive int64, for FAISS whose ids are integers."""
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def prepare_batch(
    texts: Sequence[str], metadatas: Sequence[Metadata] | None, ids: Sequence[str] | None
) -> tuple[list[str], list[Metadata], list[str]]:
    """Check lengths and fill in content ids; every adapter's ``add_documents`` starts here."""
    texts = list(texts)
    if metadatas is not None and len(metadatas) != len(texts):
        raise ConfigError(f"add_documents got {len(texts)} texts but {len(metadatas)} metadatas")
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"add_documents got {len(texts)} texts but {len(ids)} ids")
    metas = [dict(m) if m else {} for m in (metadatas or [{}] * len(texts))]
    doc_ids = [str(i) for i in ids] if ids is not None else [content_id(t, m) for t, m in zip(texts, metas, strict=True)]
    return texts, metas, doc_ids


def dedupe(texts: list[str], metas: list[Metadata], ids: list[str]) -> tuple[list[str], list[Metadata], list[str]]:
    """Drop repeated ids inside one batch (a file that repeats a paragraph); the first wins."""
    seen: set[str] = set()
    keep = [i for i, d in enumerate(ids) if not (d in seen or seen.add(d))]  # type: ignore[func-returns-value]
    return [texts[i] for i in keep], [metas[i] for i in keep], [ids[i] for i in keep]


def embed(fn: EmbeddingFn | None, texts: Sequence[str], store: str) -> list[list[float]]:
    """Call the embedding function and return plain float lists (numpy arrays included)."""
    if fn is None:
        raise ConfigError(f"{store} needs embedding_fn: the function that made the vectors already in the store")
    try:
        vectors = fn(list(texts))
    except VectorStoreError:
        raise
    except Exception as e:
        raise VectorStoreError(f"{store}: the embedding function failed: {type(e).__name__}: {e}") from e
    out = _as_lists(vectors)
    if len(out) != len(texts):
        raise VectorStoreError(f"{store}: the embedding function returned {len(out)} vectors for {len(texts)} texts")
    return out


def _as_lists(vectors: Any) -> list[list[float]]:
    """Plain lists without a Python loop per number: numpy's tolist, or a list copy."""
    if hasattr(vectors, "tolist"):
        return list(vectors.tolist())
    return [v.tolist() if hasattr(v, "tolist") else list(v) for v in vectors]


def embedding_dim(fn: EmbeddingFn | None, store: str) -> int:
    """The dimension an embedding function produces: its ``dim`` attribute, else one probe call."""
    dim = getattr(fn, "dim", None)
    if isinstance(dim, int) and dim > 0:
        return dim
    return len(embed(fn, ["dimension probe"], store)[0])


def check_dimension(store_dim: int | None, fn: EmbeddingFn | None, store: str) -> None:
    """Fail at attach time, not with wrong answers later, when the vectors do not fit."""
    if store_dim is None or fn is None:
        return
    got = embedding_dim(fn, store)
    if got != store_dim:
        raise VectorStoreError(
            f"{store} holds {store_dim}-dimensional vectors but the embedding function makes {got}-dimensional "
            f"ones. Pass the embedding function the store was built with (same model, same dimension)."
        )


def require_writable(writable: bool, store: str) -> None:
    """Attached stores are read-only unless the caller says otherwise."""
    if not writable:
        raise ReadOnlyStoreError(store)


def normalise(vector: Sequence[float]) -> list[float]:
    """Unit length, so inner product is cosine similarity."""
    n = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / n for x in vector]


def split_metadata(record: dict[str, Any], exclude: Iterable[str], keep: Sequence[str] | None) -> Metadata:
    """Metadata from a flat record: the ``keep`` fields if given, else every field not excluded."""
    if keep is not None:
        return {k: record[k] for k in keep if k in record and record[k] is not None}
    skip = set(exclude)
    return {k: v for k, v in record.items() if k not in skip and v is not None}


@contextmanager
def vendor_errors(store: str, action: str) -> Iterator[None]:
    """Map whatever a vendor SDK raises into ``VectorStoreError`` at the adapter's edge."""
    try:
        yield
    except DeepRecallError:
        raise
    except Exception as e:
        if disk_full(e):
            raise StoreFullError(store, action, f"{type(e).__name__}: {e}"[:300]) from e
        raise VectorStoreError(f"{store}: {action} failed: {type(e).__name__}: {e}") from e


def disk_full(error: BaseException) -> bool:
    """ENOSPC anywhere in the error's chain, or a store's own words for it (SQLite's "database or disk is full",
    Rust's "No space left on device"), which the vendor SDKs pass on as text in their own error types."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        text = str(seen).lower()
        if "disk is full" in text or "no space left on device" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
