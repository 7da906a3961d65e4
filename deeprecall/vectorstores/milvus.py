"""Milvus: Milvus Lite (a local ``.db`` file) or a server URI.

``pymilvus`` is imported here only (``pip install 'deeprecall[milvus]'``, which
also installs ``milvus-lite``). A reopened Milvus Lite file serves no search
until ``load_collection``, so attaching always loads.

Schema mapping: ``id_field``, ``text_field`` and ``vector_field`` name the
fields; metadata is the other scalar fields plus the dynamic ``$meta`` keys, or
the keys of one JSON field (``metadata_field``). Every filter runs natively as
a Milvus boolean expression. Milvus treats a comparison with a missing key as
false even under ``not``, so ``$ne``/``$nin`` are written as
``not exists k or k != v`` to keep the filter language's meaning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from deeprecall.errors import MissingDependencyError, VectorStoreError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._adapter import StoreAdapter
from deeprecall.vectorstores._support import EmbeddingFn, check_dimension, embedding_dim, split_metadata, vendor_errors
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.write_batches import WriteLimits

_OPS = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as e:
        raise MissingDependencyError("pymilvus", "milvus", "MilvusStore") from e
    return pymilvus


def literal(value: Any) -> str:
    """A Milvus expression literal; JSON's string escaping is what Milvus parses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def to_milvus_expr(conjunct: Filter, field: Any) -> str:
    """One conjunct as a Milvus expression; ``field(key)`` gives the key's expression or None if it cannot exist."""
    ((key, value),) = conjunct.items()
    if key == "$or":
        ors = [" and ".join(to_milvus_expr(c, field) for c in fl.conjuncts(child)) for child in value]
        return "(" + " or ".join(f"({o})" for o in ors) + ")"
    ref = field(key)
    parts = [_condition(ref, op, operand) for op, operand in fl.operators(value).items()]
    return " and ".join(parts)


def _condition(ref: str | None, op: str, operand: Any) -> str:
    if ref is None:
        return "true" if op in ("$ne", "$nin") else "false"
    maybe_missing = ref.endswith("]")  # a JSON or dynamic key; a schema field is always present
    if op in ("$in", "$nin"):  # Milvus takes `in` on schema fields only, so spell it as ==s
        anyof = "(" + " or ".join(f"{ref} == {literal(v)}" for v in operand) + ")"
        if op == "$in":
            return anyof
        return f"(not exists {ref} or not {anyof})" if maybe_missing else f"not {anyof}"
    if op == "$ne" and maybe_missing:
        return f"(not exists {ref} or {ref} != {literal(operand)})"
    return f"{ref} {_OPS[op]} {literal(operand)}"


class MilvusStore(StoreAdapter):
    """A Milvus collection: ``MilvusStore("docs", uri="./milvus.db", embedding_fn=fn)``.

    ``uri`` is a Milvus Lite file path or a server URI (``http://host:19530``,
    with ``token``). Attached collections are read-only unless ``writable=True``;
    ``create=True`` creates a missing collection (string ids, dynamic fields
    for metadata, cosine), which is then writable.
    """

    kind = "milvus"
    # A Milvus server takes gRPC messages up to proxy.grpc.serverMaxRecvSize (64 MB in the milvus.yaml it
    # ships); pymilvus sends floats as 4 binary bytes. Half of it, for the estimate's error.
    WRITE_LIMITS = WriteLimits(max_count=10_000, max_bytes=32 * 2**20)

    def __init__(
        self,
        collection: str,
        *,
        embedding_fn: EmbeddingFn | None,
        uri: str | None = None,
        token: str = "",
        client: Any = None,
        writable: bool = False,
        create: bool = False,
        text_field: str = "text",
        id_field: str = "id",
        vector_field: str = "vector",
        metadata_field: str | None = None,
        metadata_fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(collection, embedding_fn, writable)
        self.text_field, self.id_field, self.vector_field = text_field, id_field, vector_field
        self.metadata_field, self.metadata_fields = metadata_field, metadata_fields
        with vendor_errors(repr(self), "connecting"):
            self.client = client if client is not None else _pymilvus().MilvusClient(uri=uri or "./milvus.db", token=token)
            exists = self.client.has_collection(collection)
            if not exists and not create:
                raise VectorStoreError(f"Milvus has no collection {collection!r}; pass create=True to make one")
            if not exists:
                self._create()
                self.writable = True
            self.client.load_collection(collection)  # a reopened Milvus Lite file needs it before search
            info = self.client.describe_collection(collection)
        self._scalars = {f["name"] for f in info["fields"]} - {vector_field}
        self._dynamic = bool(info.get("enable_dynamic_field"))
        check_dimension(self._dim(info), embedding_fn, repr(self))

    def _create(self) -> None:
        self.client.create_collection(
            self.name,
            dimension=embedding_dim(self.embedding_fn, repr(self)),
            primary_field_name=self.id_field,
            id_type="string",
            max_length=256,
            vector_field_name=self.vector_field,
            metric_type="COSINE",
            enable_dynamic_field=True,
        )

    def _dim(self, info: dict[str, Any]) -> int:
        for f in info["fields"]:
            if f["name"] == self.vector_field:
                return int(f["params"]["dim"])
        raise VectorStoreError(f"{self!r} has no vector field {self.vector_field!r}; pass vector_field=")

    def _field(self, key: str) -> str | None:
        if self.metadata_field:
            return f"{self.metadata_field}[{literal(key)}]"
        if key in self._scalars:
            if not set(key) <= _NAME_OK:
                raise fl.Untranslatable({key: None})
            return key
        return f"$meta[{literal(key)}]" if self._dynamic else None

    def _translate(self, conjunct: Filter) -> str:
        return to_milvus_expr(conjunct, self._field)

    def _output_fields(self) -> list[str]:
        return [*sorted(self._scalars), *(["$meta"] if self._dynamic else [])]

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        expr = " and ".join(f"({w})" for w in native)
        with vendor_errors(repr(self), "search"):
            res = self.client.search(
                self.name, data=[vector], filter=expr, limit=k, output_fields=self._output_fields(),
                anns_field=self.vector_field,
            )
        return [self._hit(r["entity"], float(r["distance"])) for r in res[0]]

    def _hit(self, entity: dict[str, Any], score: float) -> Hit:
        if self.metadata_field:
            meta = dict(entity.get(self.metadata_field) or {})
        else:
            meta = split_metadata(entity, (self.id_field, self.text_field, self.vector_field), self.metadata_fields)
        text = str(entity.get(self.text_field) or "")
        return Hit(id=str(entity[self.id_field]), content=text, metadata=meta, score=score)

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        rows = []
        for i, t, m, v in zip(ids, texts, metas, vectors, strict=True):
            row: dict[str, Any] = {self.metadata_field: m} if self.metadata_field else dict(m)
            rows.append({**row, self.id_field: i, self.text_field: t, self.vector_field: v})
        with vendor_errors(repr(self), "upsert"):
            self.client.upsert(self.name, rows)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with vendor_errors(repr(self), "lookup"):
            rows = self.client.query(self.name, ids=list(ids), output_fields=[self.id_field])
        return {str(r[self.id_field]) for r in rows}

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        with vendor_errors(repr(self), "scan"):
            it = self.client.query_iterator(self.name, batch_size=batch_size, output_fields=self._output_fields())
        try:
            while True:
                with vendor_errors(repr(self), "scan"):
                    page = it.next()
                if not page:
                    return
                for entity in page:
                    yield self._hit(entity, 0.0)
        finally:
            it.close()

    def count(self) -> int:
        with vendor_errors(repr(self), "count"):
            rows = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def close(self) -> None:
        self.client.close()
