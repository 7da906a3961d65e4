"""PostgreSQL + pgvector, through psycopg 3.

``psycopg`` is imported here only (``pip install 'deeprecall[pgvector]'``).
Vectors travel as pgvector's text form (``'[1,2,3]'::vector``), so no numpy
and no type registration is needed.

Schema mapping: ``id_column``, ``text_column`` and ``vector_column`` name the
columns; metadata is one JSONB column (``metadata_column``, the default) or
plain columns (``metadata_columns``). Every filter runs natively in SQL:
JSONB conditions compare ``jsonb`` values and guard ranges with
``jsonb_typeof``, so ``{"year": {"$gt": 2020}}`` never matches a string; a
missing key is NULL, so ``$ne``/``$nin`` pass on it, as in ``filters.matches``.
Identifiers are quoted and values are literals built by psycopg, never
formatted into SQL by hand.

Tables DeepRecall creates get an HNSW index (cosine). pgvector 0.8's iterative
index scans are switched on per query so a selective filter still returns
``top_k`` rows.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from deeprecall.errors import ConfigError, MissingDependencyError, VectorStoreError
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
from deeprecall.vectorstores.write_batches import JSON_FLOAT_BYTES, WriteLimits

_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
MAX_BIND_PARAMETERS = 65_535  # PostgreSQL's wire protocol counts a statement's parameters in 16 bits
T = TypeVar("T")
_DISTANCE = {"cosine": ("<=>", "vector_cosine_ops"), "l2": ("<->", "vector_l2_ops"), "ip": ("<#>", "vector_ip_ops")}


def _sql() -> Any:
    try:
        import psycopg
        from psycopg import sql
    except ImportError as e:
        raise MissingDependencyError("psycopg", "pgvector", "PgVectorStore") from e
    del psycopg
    return sql


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class _Where:
    """Builds one SQL condition per conjunct, against a JSONB column or plain columns."""

    def __init__(self, jsonb: str | None, columns: set[str]) -> None:
        self.sql = _sql()
        self.jsonb = jsonb
        self.columns = columns

    def conjunct(self, cond: Filter) -> Any:
        ((key, value),) = cond.items()
        s = self.sql
        if key == "$or":
            branches = [s.SQL(" AND ").join(self.conjunct(c) for c in fl.conjuncts(child)) for child in value]
            return s.SQL("(") + s.SQL(" OR ").join(s.SQL("(") + b + s.SQL(")") for b in branches) + s.SQL(")")
        return s.SQL(" AND ").join(self._op(key, op, operand) for op, operand in fl.operators(value).items())

    def _op(self, key: str, op: str, operand: Any) -> Any:
        s = self.sql
        if self.jsonb is None and key not in self.columns:  # no such column: a missing key
            return s.SQL("TRUE" if op in ("$ne", "$nin") else "FALSE")
        ref = self._ref(key)
        if op in ("$in", "$nin"):
            listed = s.SQL(", ").join(self._value(v) for v in operand)
            if op == "$in":
                return s.SQL("{} IN ({})").format(ref, listed)
            return s.SQL("({} IS NULL OR {} NOT IN ({}))").format(ref, ref, listed)
        if op == "$ne":
            return s.SQL("({} IS NULL OR {} <> {})").format(ref, ref, self._value(operand))
        cmp = s.SQL("{} " + _OPS[op] + " {}").format(ref, self._value(operand))
        if self.jsonb is None or op == "$eq":
            return cmp
        kind = "number" if fl.is_number(operand) else "string"
        return s.SQL("(jsonb_typeof({}) = {} AND {})").format(ref, s.Literal(kind), cmp)

    def _ref(self, key: str) -> Any:
        s = self.sql
        if self.jsonb is None:
            return s.Identifier(key)
        return s.SQL("({} -> {})").format(s.Identifier(self.jsonb), s.Literal(key))

    def _value(self, value: Any) -> Any:
        s = self.sql
        if self.jsonb is None:
            return s.Literal(value)
        return s.SQL("{}::jsonb").format(s.Literal(json.dumps(value)))


class PgVectorStore(StoreAdapter):
    """A PostgreSQL table with a pgvector column.

    ``PgVectorStore("docs", dsn="postgresql://...", embedding_fn=fn)`` attaches
    read-only unless ``writable=True``; ``create=True`` creates a missing table
    (id text primary key, content text, metadata jsonb, embedding vector(dim)).
    ``table`` may be schema-qualified (``"rag.docs"``).

    A connection the server dropped (a restart, a failover) is replaced by a new one from ``dsn`` on the
    next call, and a call that finds its connection dropped is retried once on a new one, so a store that
    went away and came back serves the next query. A ``connection`` passed in is the caller's to replace.
    """

    kind = "pgvector"

    def __init__(
        self,
        table: str,
        *,
        embedding_fn: EmbeddingFn | None,
        dsn: str | None = None,
        connection: Any = None,
        writable: bool = False,
        create: bool = False,
        id_column: str = "id",
        text_column: str = "content",
        vector_column: str = "embedding",
        metadata_column: str | None = "metadata",
        metadata_columns: Sequence[str] | None = None,
        distance: str = "cosine",
    ) -> None:
        super().__init__(table, embedding_fn, writable)
        if distance not in _DISTANCE:
            raise ConfigError(f"distance must be one of {sorted(_DISTANCE)}; got {distance!r}")
        self.sql = _sql()
        self.id_column, self.text_column, self.vector_column = id_column, text_column, vector_column
        self.metadata_column = None if metadata_columns is not None else metadata_column
        self.metadata_columns = list(metadata_columns or [])
        self.distance = distance
        self._table = self.sql.Identifier(*table.split("."))
        self._dsn = dsn or "" if connection is None else None
        self._reconnecting = threading.Lock()
        with vendor_errors(repr(self), "connecting"):
            import psycopg

            self._lost = psycopg.OperationalError
            self.conn = connection if connection is not None else psycopg.connect(self._dsn or "", autocommit=True)
            self._regclass = self._table.as_string(self.conn)  # quoted, so to_regclass keeps the name's case
            created = self._ensure_table(create)
            dim = self._stored_dim()
            version = self._exec("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        self._iterative = bool(version) and tuple(int(x) for x in version[0][0].split(".")[:2]) >= (0, 8)
        self.writable = writable or created or self._ours()
        self._where = _Where(self.metadata_column, set(self.metadata_columns))
        check_dimension(dim, embedding_fn, repr(self))

    # -- the connection --------------------------------------------------------------
    def _on_connection(self, work: Callable[[Any], T]) -> T:
        """Run ``work(conn)``; if the server dropped the connection (a restart), once more on a new one."""
        conn = self._live()
        try:
            return work(conn)
        except self._lost:
            if self._dsn is None or not conn.broken:
                raise
        return work(self._reconnect(conn))

    def _live(self) -> Any:
        conn = self.conn
        return self._reconnect(conn) if conn.closed and self._dsn is not None else conn

    def _reconnect(self, dropped: Any) -> Any:
        """Replace ``dropped`` (once, however many threads saw it drop); raises if the server is still away."""
        import psycopg

        with self._reconnecting:
            if self.conn is dropped:
                self.conn = psycopg.connect(self._dsn or "", autocommit=True)
                dropped.close()
            return self.conn

    def _exec(self, query: Any, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        def work(conn: Any) -> list[tuple[Any, ...]]:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []

        return self._on_connection(work)

    # -- set-up --------------------------------------------------------------------

    def _ensure_table(self, create: bool) -> bool:
        if self._exec("SELECT to_regclass(%s)", [self._regclass])[0][0] is not None:
            return False
        if not create:
            raise VectorStoreError(f"PostgreSQL has no table {self.name!r}; pass create=True to make one")
        s, dim = self.sql, embedding_dim(self.embedding_fn, repr(self))
        self._exec("CREATE EXTENSION IF NOT EXISTS vector")
        self._exec(s.SQL("CREATE TABLE IF NOT EXISTS {} ({} text PRIMARY KEY, {} text NOT NULL, {} jsonb NOT NULL "
                         "DEFAULT '{{}}', {} vector({}) NOT NULL)").format(
            self._table, s.Identifier(self.id_column), s.Identifier(self.text_column),
            s.Identifier(self.metadata_column or "metadata"), s.Identifier(self.vector_column), s.Literal(dim)))
        self._exec(s.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {})").format(
            s.Identifier(self.name.split(".")[-1] + "_hnsw"), self._table, s.Identifier(self.vector_column),
            s.SQL(_DISTANCE[self.distance][1])))
        self._exec(s.SQL("COMMENT ON TABLE {} IS {}").format(self._table, s.Literal("created_by=" + MARKER)))
        return True

    def _ours(self) -> bool:
        rows = self._exec("SELECT obj_description(to_regclass(%s), 'pg_class')", [self._regclass])
        return rows[0][0] == "created_by=" + MARKER

    def _stored_dim(self) -> int | None:
        rows = self._exec(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s",
            [self._regclass, self.vector_column],
        )
        if not rows:
            raise VectorStoreError(f"{self!r} has no column {self.vector_column!r}; pass vector_column=")
        match = re.fullmatch(r"vector\((\d+)\)", rows[0][0])
        return int(match.group(1)) if match else None

    # -- search ------------------------------------------------------------------
    def _translate(self, conjunct: Filter) -> Any:
        return self._where.conjunct(conjunct)

    def _select_list(self) -> Any:
        s = self.sql
        cols = [self.id_column, self.text_column, *(self.metadata_columns or [self.metadata_column or ""])]
        return s.SQL(", ").join(s.Identifier(c) for c in cols if c)

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        s = self.sql
        where = s.SQL(" WHERE ") + s.SQL(" AND ").join(native) if native else s.SQL("")
        op = _DISTANCE[self.distance][0]
        q = s.SQL("SELECT {}, {} " + op + " %s::vector AS _d FROM {}{} ORDER BY _d LIMIT %s").format(
            self._select_list(), s.Identifier(self.vector_column), self._table, where)

        def work(conn: Any) -> list[tuple[Any, ...]]:
            with conn.transaction(), conn.cursor() as cur:
                if self._iterative:
                    cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                cur.execute(q, [vector_literal(vector or []), k])
                return list(cur.fetchall())

        with vendor_errors(repr(self), "query"):
            rows = self._on_connection(work)
        return [self._hit(r[:-1], _score(self.distance, float(r[-1]))) for r in rows]

    def _hit(self, row: Sequence[Any], score: float) -> Hit:
        doc_id, text, *rest = row
        if self.metadata_columns:
            meta = split_metadata(dict(zip(self.metadata_columns, rest, strict=True)), (), None)
        else:
            meta = dict(rest[0] or {}) if rest else {}
        return Hit(id=str(doc_id), content=str(text or ""), metadata=meta, score=score)

    # -- writes --------------------------------------------------------------------
    def _columns(self) -> list[str]:
        meta_cols = self.metadata_columns or [self.metadata_column or "metadata"]
        return [self.id_column, self.text_column, *meta_cols, self.vector_column]

    def write_limits(self) -> WriteLimits:
        """One INSERT carries rows x columns bind parameters, at most 65,535; vectors travel as text."""
        return WriteLimits(max_count=MAX_BIND_PARAMETERS // len(self._columns()), max_bytes=256 * 2**20,
                           bytes_per_float=JSON_FLOAT_BYTES)

    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        """One multi-row INSERT ... ON CONFLICT: one statement, so the write is all or nothing."""
        s = self.sql
        cols = self._columns()
        row = s.SQL("(" + ", ".join(["%s"] * (len(cols) - 1) + ["%s::vector"]) + ")")
        updates = s.SQL(", ").join(s.SQL("{0} = EXCLUDED.{0}").format(s.Identifier(c)) for c in cols[1:])
        q = s.SQL("INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}").format(
            self._table, s.SQL(", ").join(s.Identifier(c) for c in cols), s.SQL(", ").join([row] * len(ids)),
            s.Identifier(self.id_column), updates)
        params = [x for i, t, m, v in zip(ids, texts, metas, vectors, strict=True)
                  for x in (i, t, *self._meta_values(m), vector_literal(v))]
        with vendor_errors(repr(self), "insert"):
            self._exec(q, params)  # retried on a new connection if the old one dropped: an upsert, so idempotent

    def _meta_values(self, meta: Metadata) -> list[Any]:
        if self.metadata_columns:
            return [meta.get(c) for c in self.metadata_columns]
        return [json.dumps(meta)]

    # -- the rest --------------------------------------------------------------------
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        s = self.sql
        q = s.SQL("SELECT {}::text FROM {} WHERE {}::text = ANY(%s)").format(
            s.Identifier(self.id_column), self._table, s.Identifier(self.id_column))
        with vendor_errors(repr(self), "lookup"):
            return {r[0] for r in self._exec(q, [list(ids)])}

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        """Keyset pages in id order, so a large table is never held in memory at once."""
        s, idc = self.sql, self.sql.Identifier(self.id_column)
        last: Any = None
        while True:
            where = s.SQL("WHERE {} > %s ").format(idc) if last is not None else s.SQL("")
            q = s.SQL("SELECT {} FROM {} {}ORDER BY {} LIMIT %s").format(self._select_list(), self._table, where, idc)
            with vendor_errors(repr(self), "scan"):
                rows = self._exec(q, [last, batch_size] if last is not None else [batch_size])
            yield from (self._hit(r, 0.0) for r in rows)
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    def metadata_keys(self) -> list[str]:
        if self.metadata_columns:
            return sorted(self.metadata_columns)
        q = self.sql.SQL("SELECT DISTINCT k FROM (SELECT {} AS m FROM {} LIMIT 50) s, jsonb_object_keys(s.m) k").format(
            self.sql.Identifier(self.metadata_column or "metadata"), self._table)
        def work(conn: Any) -> list[str]:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(q)
                return sorted(r[0] for r in cur.fetchall())

        try:
            return self._on_connection(work)
        except Exception:
            return []

    def count(self) -> int:
        with vendor_errors(repr(self), "count"):
            return int(self._exec(self.sql.SQL("SELECT count(*) FROM {}").format(self._table))[0][0])

    def close(self) -> None:
        self.conn.close()


def _score(distance: str, d: float) -> float:
    """A similarity from pgvector's distance: 1 - cosine distance, -L2, or the inner product."""
    if distance == "cosine":
        return 1.0 - d
    return -d
