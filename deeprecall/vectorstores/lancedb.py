"""LanceDB: a table in a local folder (or any URI lancedb.connect takes).

``lancedb`` and ``pyarrow`` are imported here only (``pip install 'deeprecall[lancedb]'``).

Schema mapping: ``id_field``, ``text_field`` and ``vector_field`` name the
columns; metadata is every other column (or ``metadata_fields``). Tables
DeepRecall creates store each metadata key as its own typed column, added the
first time a key appears, so every filter runs natively as a SQL ``WHERE`` with
prefiltering (exact, no over-fetch). Filters on columns the table lacks behave
as on a missing key: equality fails, ``$ne``/``$nin`` pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from deeprecall.errors import MissingDependencyError, VectorStoreError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._adapter import StoreAdapter
from deeprecall.vectorstores._support import (
    MARKER,
    EmbeddingFn,
    check_dimension,
    embedding_dim,
    split_metadata,
    vendor_errors,
)
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.write_batches import WriteLimits

_SQL_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_ARROW_TYPES = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "STRING"}


def _lancedb() -> tuple[Any, Any]:
    try:
        import lancedb
        import pyarrow
    except ImportError as e:
        raise MissingDependencyError("lancedb", "lancedb", "LanceDBStore") from e
    return lancedb, pyarrow


def sql_literal(value: Any) -> str:
    """A SQL literal for a scalar; strings are quoted with '' escaping."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def quote(name: str) -> str:
    if "`" in name:
        raise fl.Untranslatable({name: None})
    return f"`{name}`"


def to_lance_where(conjunct: Filter, columns: set[str]) -> str:
    """One conjunct as a SQL boolean expression over ``columns``."""
    ((key, value),) = conjunct.items()
    if key == "$or":
        ors = [" AND ".join(to_lance_where(c, columns) for c in fl.conjuncts(child)) for child in value]
        return "(" + " OR ".join(f"({o})" for o in ors) + ")"
    parts = [_condition(key, op, operand, columns) for op, operand in fl.operators(value).items()]
    return " AND ".join(parts)


def _condition(key: str, op: str, operand: Any, columns: set[str]) -> str:
    if key not in columns:  # a missing key: only the negative operators pass
        return "true" if op in ("$ne", "$nin") else "false"
    col = quote(key)
    if op in ("$in", "$nin"):
        listed = ", ".join(sql_literal(v) for v in operand)
        return f"{col} IN ({listed})" if op == "$in" else f"({col} IS NULL OR {col} NOT IN ({listed}))"
    if op == "$ne":
        return f"({col} IS NULL OR {col} <> {sql_literal(operand)})"
    return f"{col} {_SQL_OPS[op]} {sql_literal(operand)}"


class LanceDBStore(StoreAdapter):
    """A LanceDB table: ``LanceDBStore("docs", uri="./lance", embedding_fn=fn)``.

    Attached tables are read-only unless ``writable=True``; ``create=True``
    creates a missing table, which is then DeepRecall's and writable.
    """

    kind = "lancedb"
    # Local LanceDB has no request limit; each write becomes one Arrow table in memory and one new fragment and
    # version on disk, so writes are bounded to keep memory flat and fragments few (and LanceDB Cloud's
    # request size in reach).
    WRITE_LIMITS = WriteLimits(max_count=10_000, max_bytes=64 * 2**20)

    def __init__(
        self,
        table: str,
        *,
        embedding_fn: EmbeddingFn | None,
        uri: str | None = None,
        db: Any = None,
        writable: bool = False,
        create: bool = False,
        text_field: str = "text",
        id_field: str = "id",
        vector_field: str = "vector",
        metadata_fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(table, embedding_fn, writable)
        lancedb, _ = _lancedb()
        self.text_field, self.id_field, self.vector_field = text_field, id_field, vector_field
        self.metadata_fields = metadata_fields
        self._ids: set[str] | None = None  # every stored id, loaded on the first existing_ids call
        with vendor_errors(repr(self), "opening the table"):
            self.db = db if db is not None else lancedb.connect(uri or "./.deeprecall-lance")
            self.table = self._open(table, create)
        self.writable = writable or (self.table.schema.metadata or {}).get(b"created_by") == MARKER.encode()
        check_dimension(self._dim(), embedding_fn, repr(self))

    def _open(self, name: str, create: bool) -> Any:
        try:
            return self.db.open_table(name)
        except ValueError as e:  # lancedb's "Table ... was not found"
            if not create:
                raise VectorStoreError(f"LanceDB has no table {name!r}; pass create=True to make one") from e
        return self._create(name)

    def _create(self, name: str) -> Any:
        _, pa = _lancedb()
        dim = embedding_dim(self.embedding_fn, repr(self))
        fields = [
            pa.field(self.id_field, pa.string()),
            pa.field(self.text_field, pa.string()),
            pa.field(self.vector_field, pa.list_(pa.float32(), dim)),
        ]
        return self.db.create_table(name, schema=pa.schema(fields, metadata={"created_by": MARKER}))

    def _dim(self) -> int:
        try:
            kind = self.table.schema.field(self.vector_field).type
        except KeyError as e:
            raise VectorStoreError(f"{self!r} has no column {self.vector_field!r}; pass vector_field=") from e
        if getattr(kind, "list_size", -1) <= 0:
            raise VectorStoreError(f"{self!r}: column {self.vector_field!r} is {kind}, not a fixed-size vector")
        return int(kind.list_size)

    def _columns(self) -> set[str]:
        return set(self.table.schema.names)

    def _translate(self, conjunct: Filter) -> str:
        return to_lance_where(conjunct, self._columns())

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        with vendor_errors(repr(self), "search"):
            q = self.table.search(vector, vector_column_name=self.vector_field).distance_type("cosine")
            if native:
                q = q.where(" AND ".join(f"({w})" for w in native), prefilter=True)
            rows = q.limit(k).to_list()
        return [self._hit(r, 1.0 - float(r["_distance"])) for r in rows]

    def _hit(self, row: dict[str, Any], score: float) -> Hit:
        skip = (self.id_field, self.text_field, self.vector_field, "_distance", "_rowid")
        meta = split_metadata(row, skip, self.metadata_fields)
        return Hit(id=str(row[self.id_field]), content=str(row.get(self.text_field) or ""), metadata=meta, score=score)

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        _, pa = _lancedb()
        metas = [{k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in m.items()} for m in metas]
        self._add_columns(metas)
        rows = [{**m, self.id_field: i, self.text_field: t, self.vector_field: v}
                for i, t, m, v in zip(ids, texts, metas, vectors, strict=True)]
        with vendor_errors(repr(self), "upsert"):
            data = pa.Table.from_pylist(rows, schema=self.table.schema)
            if not self.existing_ids(ids):  # all new: a plain append is far cheaper than a merge
                self.table.add(data)
            else:
                merge = self.table.merge_insert(self.id_field).when_matched_update_all().when_not_matched_insert_all()
                merge.execute(data)
        if self._ids is not None:
            self._ids.update(ids)

    def _add_columns(self, metas: list[Metadata]) -> None:
        """Give each new metadata key its own typed column, so filters on it run in SQL."""
        have = self._columns()
        new: dict[str, str] = {}
        for meta in metas:
            for key, value in meta.items():
                if key not in have and key not in new:
                    new[key] = f"CAST(NULL AS {_ARROW_TYPES[type(value)]})"
        if new:
            with vendor_errors(repr(self), f"adding columns {sorted(new)}"):
                self.table.add_columns(new)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """From an in-memory set of every id, loaded once: LanceDB has no cheap point lookup, and
        a filtered scan per ingestion batch made ingesting quadratic. Assumes one writer at a time."""
        if self._ids is None:
            n = self.count()
            with vendor_errors(repr(self), "reading ids"):
                rows = self.table.search().select([self.id_field]).limit(n).to_arrow() if n else None
            self._ids = {str(i) for i in rows[self.id_field].to_pylist()} if rows is not None else set()
        return self._ids.intersection(ids)

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        columns = [c for c in self.table.schema.names if c != self.vector_field]
        offset = 0
        while True:  # pages without the vectors, so a large table is never loaded whole
            with vendor_errors(repr(self), "scan"):
                rows = self.table.search().select(columns).offset(offset).limit(batch_size).to_list()
            yield from (self._hit(r, 0.0) for r in rows)
            if len(rows) < batch_size:
                return
            offset += batch_size

    def metadata_keys(self) -> list[str]:
        if self.metadata_fields is not None:
            return sorted(self.metadata_fields)
        return sorted(set(self.table.schema.names) - {self.id_field, self.text_field, self.vector_field})

    def count(self) -> int:
        with vendor_errors(repr(self), "count"):
            return int(self.table.count_rows())
