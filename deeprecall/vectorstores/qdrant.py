"""Qdrant: local mode (a folder or ``:memory:``) or a server URL.

``qdrant_client`` is imported here only (``pip install 'deeprecall[qdrant]'``).

Schema mapping: the text lives in payload key ``text_field``; metadata is
either the other payload keys or one nested payload key (``metadata_field``,
as LangChain writes it, filtered as ``metadata.<key>``). Qdrant point ids are
UUIDs or integers, so DeepRecall keeps its own string id in payload key
``id_field`` and falls back to the point id for points that lack it.

Filters: equality, ``$in``/``$nin``, ``$ne`` (as ``must_not``, so a missing key
passes, as in ``filters.matches``), numeric ranges, ``$and``/``$or`` all run
natively. String ranges run in Python after an over-fetch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from deeprecall.errors import ConfigError, MissingDependencyError, VectorStoreError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._adapter import StoreAdapter
from deeprecall.vectorstores._support import (
    MARKER,
    EmbeddingFn,
    check_dimension,
    embedding_dim,
    id_to_uuid,
    split_metadata,
    vendor_errors,
)
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.write_batches import JSON_FLOAT_BYTES, WriteLimits


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError as e:
        raise MissingDependencyError("qdrant-client", "qdrant", "QdrantStore") from e
    return models


def to_qdrant_condition(conjunct: Filter, prefix: str = "") -> Any:
    """One DeepRecall conjunct as a Qdrant condition (a FieldCondition or a nested Filter)."""
    m = _models()
    ((key, value),) = conjunct.items()
    if key == "$or":
        return m.Filter(should=[to_qdrant_filter(child, prefix) for child in value])
    field = prefix + key
    must: list[Any] = []
    must_not: list[Any] = []
    for op, operand in fl.operators(value).items():
        if op == "$eq":
            must.append(_equals(field, operand))
        elif op == "$ne":
            must_not.append(_equals(field, operand))
        elif op == "$in":
            must.append(m.Filter(should=[_equals(field, v) for v in operand]))
        elif op == "$nin":
            must_not.extend(_equals(field, v) for v in operand)
        elif fl.is_number(operand):
            must.append(m.FieldCondition(key=field, range=m.Range(**{op[1:]: operand})))
        else:
            raise fl.Untranslatable(conjunct)
    if len(must) == 1 and not must_not:
        return must[0]
    return m.Filter(must=must or None, must_not=must_not or None)


def to_qdrant_filter(filters: Filter, prefix: str = "") -> Any:
    """A whole filter as a Qdrant ``Filter``; raises ``Untranslatable`` if any part cannot be."""
    return _models().Filter(must=[to_qdrant_condition(c, prefix) for c in fl.conjuncts(filters)])


def _equals(field: str, value: Any) -> Any:
    m = _models()
    if isinstance(value, float):  # MatchValue takes str, int and bool only
        return m.FieldCondition(key=field, range=m.Range(gte=value, lte=value))
    return m.FieldCondition(key=field, match=m.MatchValue(value=value))


class QdrantStore(StoreAdapter):
    """A Qdrant collection: ``QdrantStore("docs", path="./qdrant", embedding_fn=fn)``.

    Give one of ``path`` (local mode on disk), ``location=":memory:"``, ``url``
    (a server) or ``client``. Attached collections are read-only unless
    ``writable=True``; ``create=True`` creates a missing collection, which is
    then DeepRecall's and writable.
    """

    kind = "qdrant"
    # Qdrant's server refuses requests over service.max_request_size_mb (32 MB by default); the REST client
    # sends JSON. Half of it leaves room for the estimate's error and a lowered server setting.
    WRITE_LIMITS = WriteLimits(max_count=5_000, max_bytes=16 * 2**20, bytes_per_float=JSON_FLOAT_BYTES)

    def __init__(
        self,
        collection: str,
        *,
        embedding_fn: EmbeddingFn | None,
        path: str | None = None,
        location: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        writable: bool = False,
        create: bool = False,
        text_field: str = "text",
        id_field: str | None = "doc_id",
        metadata_field: str | None = None,
        metadata_fields: Sequence[str] | None = None,
        vector_name: str | None = None,
    ) -> None:
        self.client = client or _connect(path, location, url, api_key)
        self.text_field, self.id_field, self.vector_name = text_field, id_field, vector_name
        self.metadata_field, self.metadata_fields = metadata_field, metadata_fields
        self._prefix = f"{metadata_field}." if metadata_field else ""
        super().__init__(collection, embedding_fn, writable)
        try:
            self._open(create)
        except BaseException:
            if client is None:  # ours: release local mode's folder lock, or the next open in this process fails
                with contextlib.suppress(Exception):
                    self.client.close()
            raise

    def _open(self, create: bool) -> None:
        with vendor_errors(repr(self), "opening the collection"):
            exists = self.client.collection_exists(self.name)
            if not exists and create:
                self._create(embedding_dim(self.embedding_fn, repr(self)))
            elif not exists:
                raise VectorStoreError(f"Qdrant has no collection {self.name!r}; pass create=True to make one")
            info = self.client.get_collection(self.name)
        ours = (info.config.metadata or {}).get("created_by") == MARKER
        self.writable = self.writable or (create and not exists) or ours
        check_dimension(self._dim(info), self.embedding_fn, repr(self))

    def _create(self, dim: int) -> None:
        m = _models()
        params = m.VectorParams(size=dim, distance=m.Distance.COSINE)
        self.client.create_collection(
            self.name,
            vectors_config={self.vector_name: params} if self.vector_name else params,
            metadata={"created_by": MARKER},
        )

    def _dim(self, info: Any) -> int:
        vectors = info.config.params.vectors
        if isinstance(vectors, dict):
            if self.vector_name is None and len(vectors) == 1:
                self.vector_name = next(iter(vectors))
            if self.vector_name not in vectors:
                raise ConfigError(f"{self!r} has named vectors {sorted(vectors)}; pass vector_name=one of them")
            vectors = vectors[self.vector_name]
        return int(vectors.size)

    def _translate(self, conjunct: Filter) -> Any:
        return to_qdrant_condition(conjunct, self._prefix)

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        flt = _models().Filter(must=native) if native else None
        with vendor_errors(repr(self), "query"):
            res = self.client.query_points(
                self.name, query=vector, using=self.vector_name, query_filter=flt, limit=k, with_payload=True
            )
        return [self._hit(p.id, p.payload or {}, float(p.score)) for p in res.points]

    def _hit(self, point_id: Any, payload: dict[str, Any], score: float) -> Hit:
        doc_id = payload.get(self.id_field, point_id) if self.id_field else point_id
        if self.metadata_field:
            meta = dict(payload.get(self.metadata_field) or {})
        else:
            meta = split_metadata(payload, (self.text_field, self.id_field or ""), self.metadata_fields)
        return Hit(id=str(doc_id), content=str(payload.get(self.text_field, "")), metadata=meta, score=score)

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        m = _models()
        points = [
            m.PointStruct(id=id_to_uuid(i), vector={self.vector_name: v} if self.vector_name else v,
                          payload=self._payload(i, t, meta))
            for i, t, meta, v in zip(ids, texts, metas, vectors, strict=True)
        ]
        with vendor_errors(repr(self), "upsert"):
            self.client.upsert(self.name, points=points, wait=True)

    def _payload(self, doc_id: str, text: str, meta: Metadata) -> dict[str, Any]:
        payload: dict[str, Any] = {self.metadata_field: meta} if self.metadata_field else dict(meta)
        payload[self.text_field] = text
        if self.id_field:
            payload[self.id_field] = doc_id
        return payload

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        by_uuid = {id_to_uuid(i): i for i in ids}
        with vendor_errors(repr(self), "retrieve"):
            points = self.client.retrieve(self.name, ids=list(by_uuid), with_payload=False)
        return {by_uuid[str(p.id)] for p in points if str(p.id) in by_uuid}

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        offset = None
        while True:
            with vendor_errors(repr(self), "scroll"):
                points, offset = self.client.scroll(self.name, limit=batch_size, offset=offset, with_payload=True)
            for p in points:
                yield self._hit(p.id, p.payload or {}, 0.0)
            if offset is None:
                return

    def count(self) -> int:
        with vendor_errors(repr(self), "count"):
            return int(self.client.count(self.name, exact=True).count)

    def close(self) -> None:
        """Release local mode's folder lock so another process can open it."""
        self.client.close()


def _connect(path: str | None, location: str | None, url: str | None, api_key: str | None) -> Any:
    _models()
    from qdrant_client import QdrantClient

    if sum(x is not None for x in (path, location, url)) != 1:
        raise ConfigError("QdrantStore needs exactly one of path=, location=':memory:', url= or client=")
    with vendor_errors("QdrantStore", "connecting"):
        if path is not None:
            return QdrantClient(path=path)
        if location is not None:
            return QdrantClient(location=location)
        return QdrantClient(url=url, api_key=api_key)
