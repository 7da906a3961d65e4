"""Chroma: the zero-config default, embedded or attached to a collection you have.

``chromadb`` is imported here only, lazily (``pip install 'deeprecall[chroma]'``).

Chroma's ``where`` speaks almost DeepRecall's filter language already; it wants
one key per dict and numbers (not strings) for ``$gt``-style operators, so
string ranges run in Python after an over-fetch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from deeprecall.embeddings.base import ChromaCompatible
from deeprecall.errors import ConfigError, DeepRecallError, MissingDependencyError, StoreFullError, VectorStoreError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._adapter import StoreAdapter
from deeprecall.vectorstores._support import (
    MARKER,
    EmbeddingFn,
    check_dimension,
    content_id,
    dedupe,
    disk_full,
    embed,
    prepare_batch,
    vendor_errors,
)
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.coalesce import Coalescer, shape_key
from deeprecall.vectorstores.write_batches import WriteLimits

__all__ = ["ChromaStore", "content_id", "to_chroma_where"]

_EMPTY_META = {"_": ""}  # Chroma rejects empty metadata dicts in a batch that has some
_Row = tuple[list[str], list[str | None], list[Metadata | None], list[float]]  # one search's answer from query()
REVISION_KEY = "deeprecall_revision"  # collection metadata: a new token after each write (see fingerprint())
log = logging.getLogger("deeprecall")


def to_chroma_where(filters: Filter | None) -> dict[str, Any] | None:
    """The whole filter in Chroma's form; raises ``Untranslatable`` if any part cannot be."""
    if not filters:
        return None
    parts = [_node(c) for c in fl.conjuncts(filters)]
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _node(cond: Filter) -> dict[str, Any]:
    ((key, value),) = cond.items()
    if key == "$or":
        children = [to_chroma_where(c) for c in value]
        return children[0] if len(children) == 1 else {"$or": children}  # type: ignore[return-value]
    ops = fl.operators(value)
    for op, operand in ops.items():
        if op in ("$gt", "$gte", "$lt", "$lte") and not fl.is_number(operand):
            raise fl.Untranslatable(cond)
    if len(ops) > 1:
        return {"$and": [{key: {op: operand}} for op, operand in ops.items()]}
    return {key: value}


def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError as e:
        raise MissingDependencyError("chromadb", "chroma", "ChromaStore") from e
    return chromadb


class ChromaStore(StoreAdapter):
    """A Chroma collection.

    ``ChromaStore("docs", persist_directory="./.deeprecall")`` creates or reopens
    an embedded store and may write to collections DeepRecall created.
    ``ChromaStore.attach("their_docs", path=...)`` or ``ChromaStore(collection=c)``
    attaches to a collection you already have, read-only unless ``writable=True``,
    and queries with the collection's own embedding function unless you pass
    ``embedding_fn``. ``text_key`` names a metadata key holding the text, for
    collections that keep it there instead of in ``documents``.
    """

    kind = "chroma"
    concurrent_search = True  # Chroma's client is thread-safe for reads

    def __init__(
        self,
        collection_name: str = "deeprecall",
        persist_directory: str | None = "./.deeprecall",
        *,
        collection: Any = None,
        embedding_fn: EmbeddingFn | None = None,
        client: Any = None,
        writable: bool | None = None,
        text_key: str | None = None,
    ) -> None:
        self._text_key = text_key
        self._limits: WriteLimits | None = None
        self._reopen_before_write = False  # set when a write found the disk full (see _reopen)
        self._searches: Coalescer[Any, _Row] = Coalescer()
        self.created = False  # whether this object created the collection (see discard_if_unused)
        if collection is not None:
            super().__init__(collection.name, embedding_fn, bool(writable))
            self._collection, self._client = collection, None
            check_dimension(self._stored_dim(), embedding_fn, repr(self))
            return
        if len(collection_name) < 3:
            raise ConfigError(f"Chroma collection names need at least 3 characters; got {collection_name!r}")
        if client is None:
            chromadb = _chromadb()
            client = chromadb.PersistentClient(path=persist_directory) if persist_directory else chromadb.EphemeralClient()
        self._client = client
        self.created = not _exists(client, collection_name)
        if self.created and embedding_fn is not None:
            embedding_fn(["probe"])  # a function that cannot embed fails here, before a collection is bound to it
        self._collection = _open(client, collection_name, embedding_fn, persist_directory)
        ours = (self._collection.metadata or {}).get("created_by") == MARKER
        super().__init__(collection_name, embedding_fn, ours if writable is None else writable)

    @classmethod
    def attach(
        cls,
        collection_name: str,
        *,
        path: str | None = None,
        host: str | None = None,
        port: int = 8000,
        client: Any = None,
        embedding_fn: EmbeddingFn | None = None,
        writable: bool = False,
        text_key: str | None = None,
    ) -> ChromaStore:
        """Attach to an existing collection (embedded at ``path`` or a server at ``host``); never creates one."""
        if client is None:
            chromadb = _chromadb()
            client = chromadb.HttpClient(host=host, port=port) if host else chromadb.PersistentClient(path=path or ".")
        try:
            collection = client.get_collection(collection_name)
        except Exception as e:
            names = _names(client)
            raise VectorStoreError(f"Chroma has no collection {collection_name!r} (it has: {names}): {e}") from e
        return cls(collection=collection, embedding_fn=embedding_fn, writable=writable, text_key=text_key)

    @property
    def collection(self) -> Any:
        return self._collection

    def _stored_dim(self) -> int | None:
        try:
            got = self._collection.get(limit=1, include=["embeddings"])["embeddings"]
        except Exception:
            return None
        return None if got is None or len(got) == 0 else len(got[0])

    def _query_vector(self, query: str) -> list[float] | None:
        # With a function, embed here rather than letting the collection call it: chromadb's HTTP client (a Chroma
        # server) needs numpy arrays, which not every function returns; the vectors are the same.
        return None if self.embedding_fn is None else super()._query_vector(query)

    def _translate(self, conjunct: Filter) -> dict[str, Any]:
        return _node(conjunct)

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        # Concurrent searches of the same shape that queue behind a query in flight share the next one
        # (coalesce.py): Chroma's cost is mostly per call, not per query vector.
        where = None if not native else native[0] if len(native) == 1 else {"$and": native}
        item: str | list[float] = query if vector is None else vector
        try:
            row = self._searches.run(shape_key(vector is None, k, where), item,
                                     lambda items: self._query(items, k, where, texts=vector is None))
        except Exception as e:
            if _ours(e, "query"):
                raise
            raise VectorStoreError(f"{self!r}: query failed: {_described(e)}{_offline_hint(e, vector is None)}") from e
        return [self._hit(i, doc, meta, 1.0 - float(dist)) for i, doc, meta, dist in zip(*row, strict=True)]

    def _query(self, items: list[Any], k: int, where: dict[str, Any] | None, *, texts: bool) -> list[_Row]:
        """One Chroma query for several searches (query vectors, or texts Chroma embeds): one row of
        (ids, documents, metadatas, distances) per search. Chroma >= 1.0 caps n_results at the collection
        size and answers an empty collection with empty lists, so no count() round trip per search."""
        kwargs: dict[str, Any] = {"n_results": k, "include": ["documents", "metadatas", "distances"]}
        if texts:
            kwargs["query_texts"] = items
        else:
            kwargs["query_embeddings"] = _array(items)
        if where is not None:
            kwargs["where"] = where
        res = self._collection.query(**kwargs)
        return list(zip(res["ids"], res["documents"], res["metadatas"], res["distances"], strict=True))

    def _hit(self, doc_id: str, doc: str | None, meta: Metadata | None, score: float) -> Hit:
        metadata = {k: v for k, v in (meta or {}).items() if k != "_"}
        if self._text_key is not None:
            doc = str(metadata.pop(self._text_key, doc or ""))
        return Hit(id=doc_id, content=doc or "", metadata=metadata, score=score)

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        kwargs: dict[str, Any] = {"ids": ids, "documents": texts}
        if any(metas):
            kwargs["metadatas"] = [m or _EMPTY_META for m in metas]
        if vectors:
            kwargs["embeddings"] = _array(vectors)
        try:
            if self._reopen_before_write:
                self._reopen()
            self._collection.upsert(**kwargs)
        except Exception as e:
            if _ours(e, "upsert"):
                raise
            if disk_full(e):
                self._reopen_before_write = self._client is not None
                raise StoreFullError(repr(self), "upsert", _described(e)[:300]) from e
            raise VectorStoreError(f"{self!r}: upsert failed: {_described(e)}{_offline_hint(e, not vectors)}") from e
        self._mark_revision()

    def _reopen(self) -> None:
        """Chroma 1.5's embedded system, once SQLite has said the disk is full, waits forever on its next write,
        though its files are fine (the failed write was rolled back; a new process writes normally). So before
        the next write the store drops that system from chromadb's per-folder cache (reads went on with it
        meanwhile) and reopens its collection on a new one: the same ingestion run again after freeing space
        completes in this process too. A server's or an in-memory client is kept as it is."""
        client: Any = self._client
        settings = client.get_settings()
        if settings.is_persistent:
            from chromadb.api.shared_system_client import SharedSystemClient

            SharedSystemClient._identifier_to_system.pop(client._identifier, None)  # its stop() would wait too
            SharedSystemClient._identifier_to_refcount.pop(client._identifier, None)
            fresh = _chromadb().PersistentClient(path=settings.persist_directory)
            kwargs: dict[str, Any] = {}
            if self.embedding_fn is not None:
                kwargs["embedding_function"] = chroma_embedding_function(self.embedding_fn)
            self._collection, self._client = fresh.get_collection(self.name, **kwargs), fresh
        self._reopen_before_write = False

    def _mark_revision(self) -> None:
        """Record a new revision token in the collection's metadata, so ``fingerprint()`` changes in every
        process that reads this collection (the server's answer cache), also when an upsert kept the count."""
        metadata = {k: v for k, v in (self._collection.metadata or {}).items() if not k.startswith("hnsw:")}
        try:  # hnsw:* settings cannot be re-sent; the collection keeps them in its configuration
            self._collection.modify(metadata={**metadata, REVISION_KEY: uuid.uuid4().hex})
        except Exception as e:
            log.warning("Chroma: could not record a new revision (%s); cached answers may outlive this write",
                        type(e).__name__)

    def fingerprint(self) -> str | None:
        """A cheap marker that changes when the collection changes: its id, document count and the revision
        DeepRecall's writes record. Writes by other tools that keep the count (an in-place update) do not
        change it; the answer cache's TTL bounds how long such a change goes unseen. None if unreadable."""
        try:
            model = self._collection._client.get_collection(
                name=self._collection.name, tenant=self._collection.tenant, database=self._collection.database)
            count = int(self._collection.count())
        except Exception:
            return None
        return f"chroma:{model.id}:{count}:{(model.metadata or {}).get(REVISION_KEY, '')}"

    def add_documents(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        if self.embedding_fn is None and self.writable:  # the collection embeds with its own function
            return self._add_unembedded(texts, metadatas, ids)
        return super().add_documents(texts, metadatas, ids)

    def _add_unembedded(
        self, texts: Sequence[str], metadatas: Sequence[Metadata] | None, ids: Sequence[str] | None
    ) -> list[str]:
        texts, metas, doc_ids = prepare_batch(texts, metadatas, ids)
        texts, metas, unique_ids = dedupe(texts, metas, doc_ids)
        if texts:
            self._write(unique_ids, texts, metas, [])
        return doc_ids

    def write_limits(self) -> WriteLimits:
        """Chroma's own ``max_batch_size`` (5,461 embedded; a server says its own), asked once."""
        if self._limits is None:
            client = self._client if self._client is not None else self._collection._client
            with vendor_errors(repr(self), "reading max_batch_size"):
                self._limits = WriteLimits(max_count=int(client.get_max_batch_size()))
        return self._limits

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return set(self._collection.get(ids=list(ids), include=[])["ids"])

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        offset = 0
        while True:
            page = self._collection.get(limit=batch_size, offset=offset, include=["documents", "metadatas"])
            for doc_id, doc, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                yield self._hit(doc_id, doc, meta, 0.0)
            if len(page["ids"]) < batch_size:
                return
            offset += batch_size

    def count(self) -> int:
        return int(self._collection.count())

    def discard_if_unused(self) -> bool:
        """Delete the collection if this object created it and it is still empty; True if it did.

        Why: a first ingest that fails would otherwise leave an empty collection
        bound to its embedding function, and the retry with another one would stop
        on an embedding conflict. Nothing that existed before is touched: a
        collection this object only opened, or one holding documents, stays.
        """
        if not self.created or self._client is None or self.count() > 0:
            return False
        try:
            self._client.delete_collection(self.name)
        except Exception as e:
            raise VectorStoreError(f"Chroma could not remove the empty collection {self.name!r}: {e}") from e
        self.created = False
        return True


def _exists(client: Any, name: str) -> bool:
    """Strict, unlike ``_names``: a wrong "no" here would let ``discard_if_unused`` delete a collection it did not make."""
    try:
        client.get_collection(name)
    except Exception as e:
        if type(e).__name__ == "NotFoundError":
            return False
        raise VectorStoreError(f"Chroma could not look up collection {name!r}: {e}") from e
    return True


class _ChromaCallable(ChromaCompatible):
    """A plain callable (function, lambda, bound method) dressed in what chromadb 1.x asks of an embedding
    function before it binds one to a collection: ``__call__(self, input)``, ``name()``, ``is_legacy()``.

    It declares itself legacy, so Chroma records no name for it and reopening the collection with the same
    (or a re-created) function is not an embedding conflict; Chroma cannot rebuild a plain function anyway.
    """

    def __init__(self, fn: EmbeddingFn) -> None:
        self.fn = fn
        dim = getattr(fn, "dim", None)
        if isinstance(dim, int):
            self.dim = dim

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        return list(_array(embed(self.fn, list(input), "Chroma")))

    @staticmethod
    def name() -> str:
        return "deeprecall_callable"

    def is_legacy(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"_ChromaCallable({getattr(self.fn, '__qualname__', type(self.fn).__name__)})"


def chroma_embedding_function(fn: EmbeddingFn) -> Any:
    """``fn`` as Chroma accepts it: as is when it already speaks Chroma's protocol (DeepRecall's embeddings,
    chromadb's own), else wrapped. Only what Chroma is handed is wrapped; DeepRecall embeds with ``fn``."""
    if callable(getattr(fn, "name", None)) and callable(getattr(fn, "is_legacy", None)):
        return fn
    return _ChromaCallable(fn)


def _array(vectors: list[list[float]]) -> Any:
    """Vectors as a numpy array: chromadb's HTTP client (a Chroma server) calls ``.tolist()`` on each one."""
    import numpy  # a dependency of chromadb

    return numpy.asarray(vectors, dtype=numpy.float32)


def _open(client: Any, name: str, embedding_fn: EmbeddingFn | None, folder: str | None) -> Any:
    kwargs: dict[str, Any] = {"name": name, "metadata": {"hnsw:space": "cosine", "created_by": MARKER}}
    if embedding_fn is not None:
        kwargs["embedding_function"] = chroma_embedding_function(embedding_fn)
    try:
        return client.get_or_create_collection(**kwargs)
    except Exception as e:
        if "embedding function conflict" in str(e).lower():
            raise ConfigError(_conflict_message(client, name, embedding_fn, folder)) from e
        raise VectorStoreError(f"Chroma could not open collection {name!r}: {e}") from e


def _conflict_message(client: Any, name: str, embedding_fn: Any, folder: str | None) -> str:
    """Which embedding the collection records, and the flags or folders that resolve the conflict."""
    from deeprecall.embeddings.spec import spec_for

    try:
        recorded = client.get_collection(name).configuration_json.get("embedding_function") or {}
    except Exception:
        recorded = {}
    recorded_name = str(recorded.get("name", "another embedding"))
    spec = spec_for(recorded_name, recorded.get("config"))
    same = (f"`--embedding {spec}` on the command line" if spec
            else "the same embedding function (embedding_fn=)")
    where = f"{folder!r}" if folder else "this Chroma client"
    return (
        f"collection {name!r} in {where} was made with the embedding {recorded_name!r}, not "
        f"{getattr(embedding_fn, 'name', lambda: '?')()!r}; its vectors only match queries embedded the same way. "
        f"Open it with {same}, or start a new store: another collection (`--collection NAME`), another folder "
        f"(`--persist-dir DIR`), or delete {where} if nothing in it is needed"
    )


def _ours(error: Exception, operation: str) -> bool:
    """True for DeepRecall's own errors (an embedding function's, say), which pass through unwrapped.

    Chroma appends " in upsert." / " in query." to any error raised inside its
    methods; that is removed so the message reads as written.
    """
    if not isinstance(error, DeepRecallError):
        return False
    if error.args and isinstance(error.args[0], str):
        error.args = (error.args[0].removesuffix(f" in {operation}."), *error.args[1:])
    return True


def _described(error: Exception) -> str:
    """The error's type and text: a server that went away says "[Errno 111] Connection refused" alone."""
    return f"{type(error).__name__}: {error}"


def _offline_hint(error: Exception, chroma_embedded: bool) -> str:
    """Chroma's default embedding downloads its model on first use; offline that fails with a network error.
    Only when Chroma embedded the text itself: with vectors passed in, a network error is the server's."""
    if not chroma_embedded:
        return ""
    if type(error).__module__.startswith(("httpx", "requests", "urllib3")) or "onnx" in str(error).lower():
        from deeprecall.embeddings.base import OFFLINE_ROUTE

        return f". Chroma's default embedding model could not be downloaded. {OFFLINE_ROUTE}"
    return ""


def _names(client: Any) -> list[str]:
    try:
        return sorted(getattr(c, "name", str(c)) for c in client.list_collections())
    except Exception:
        return []
