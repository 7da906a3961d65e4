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

Every call to the server is bounded by the store's ``timeout``: connecting through libpq's
``connect_timeout``, each statement by a client-side deadline (one watchdog thread, ``_Watchdog``, shuts the
socket of a call that outlives it). The server's own ``statement_timeout`` cannot do this: a server that hangs
(stopped, swapped out, wedged) enforces nothing, and TCP keepalives never fire while its kernel still ACKs.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import re
import socket
import threading
import time
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
DEFAULT_TIMEOUT = 30.0  # seconds any one call to the server may take: a connect, or a statement


class _Watch:
    """One armed call: a duplicate of its connection's socket fd (so a connection closed and its fd number
    reused meanwhile cannot make the watchdog shut someone else's socket), and whether the deadline fired."""

    __slots__ = ("fd", "fired")

    def __init__(self, fd: int) -> None:
        self.fd, self.fired = fd, False


class _Watchdog:
    """Deadlines for calls blocked on a PostgreSQL socket, served by one daemon thread for the whole process.

    When a call outlives its deadline the thread shuts the socket down (``shutdown(SHUT_RDWR)``: the fd stays
    open, so it is safe while the calling thread waits on it). libpq, blocked in poll, then reads end-of-file,
    marks the connection bad and psycopg raises ``OperationalError``. Arming costs a ``dup``, a lock and a heap
    push; the thread wakes only when the earliest deadline comes (a call that ended is skipped then)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float) -> _Watch:
        watch = _Watch(os.dup(fd))
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deeprecall-pg-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:  # the new earliest deadline: the thread sleeps until a later one
                self._cond.notify()
        return watch

    def disarm(self, watch: _Watch) -> bool:
        """End the watch (idempotent); True if its deadline fired."""
        with self._cond:
            if watch.fd >= 0:
                os.close(watch.fd)
                watch.fd = -1
            self._drop_ended()  # calls end roughly in the order they began, so the heap stays short
            return watch.fired

    def _drop_ended(self) -> None:
        while self._heap and self._heap[0][2].fd < 0:
            heapq.heappop(self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                self._drop_ended()
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, watch = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                watch.fired = True
                _shut(watch.fd)


def _shut(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut or reset: the call fails (or has failed) on its own
    finally:
        sock.detach()  # the fd stays the watch's, closed by disarm


_WATCHDOG = _Watchdog()


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

    ``timeout`` (seconds, default 30; ``None`` for no bound) bounds every call to the server: connecting
    (libpq's ``connect_timeout``, whole seconds, at least 2; a ``connect_timeout`` in the DSN wins) and each
    statement. A server that does not answer in time (stopped, wedged) raises ``VectorStoreError`` naming the
    server and this setting; the call is not retried, its connection is dropped and the next call reconnects.
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
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(table, embedding_fn, writable)
        if distance not in _DISTANCE:
            raise ConfigError(f"distance must be one of {sorted(_DISTANCE)}; got {distance!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not 0 < timeout < math.inf):
            raise ConfigError(f"timeout must be a positive number of seconds or None; got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
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
            self.conn = connection if connection is not None else self._connect()
            self._server = _server(self.conn)
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
        """Run ``work(conn)`` within the timeout; if the server dropped the connection (a restart), once more on
        a new one. A call that timed out is not retried: the server is there but not answering."""
        conn = self._live()
        try:
            return self._bounded(conn, work)
        except self._lost:
            if self._dsn is None or not conn.broken:
                raise
        return self._bounded(self._reconnect(conn), work)

    def _bounded(self, conn: Any, work: Callable[[Any], T]) -> T:
        """``work(conn)``, its connection's socket shut down if it outlives ``timeout``. A call that timed out
        raises ``VectorStoreError`` and leaves the connection closed, so the next call reconnects (``_live``)."""
        if self.timeout is None:
            return work(conn)
        try:
            fd = conn.fileno()
        except self._lost:  # closed already: work fails at once, as it would have
            return work(conn)
        watch = _WATCHDOG.arm(fd, self.timeout)
        try:
            return work(conn)
        except Exception as e:
            if _WATCHDOG.disarm(watch):
                raise VectorStoreError(self._hung(f"did not answer within {self.timeout:g} s",
                                                  f"timeout= on the store (now {self.timeout:g} s)")) from e
            raise
        finally:
            if _WATCHDOG.disarm(watch):
                conn.close()  # shut down under the call: dropped whether or not the call noticed

    def _connect(self) -> Any:
        """A new connection from ``dsn``; connecting is bounded by the DSN's ``connect_timeout``, else by
        ``timeout`` (libpq counts whole seconds, at least 2)."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        dsn = self._dsn or ""
        own = conninfo_to_dict(dsn).get("connect_timeout")
        bound: dict[str, Any] = {} if own is not None or self.timeout is None else {"connect_timeout": math.ceil(self.timeout)}
        try:
            return psycopg.connect(dsn, autocommit=True, **bound)
        except psycopg.errors.ConnectionTimeout as e:
            seconds = own if own is not None else max(2, bound.get("connect_timeout", 0))
            setting = ("connect_timeout in the DSN" if own is not None
                       else f"timeout= on the store (now {self.timeout:g} s)")
            raise VectorStoreError(self._hung(f"did not complete a connection within {seconds} s", setting,
                                              _server_in(dsn))) from e

    def _hung(self, what: str, setting: str, server: str | None = None) -> str:
        after = "the next call connects anew" if self._dsn is not None else "replace the connection you passed"
        return (
            f"{self!r}: the PostgreSQL server at {server or self._server} {what}; it is hung or overloaded. "
            f"The call was abandoned and its connection dropped ({after}). If the server is only slow, "
            f"raise {setting}."
        )

    def _live(self) -> Any:
        conn = self.conn
        return self._reconnect(conn) if conn.closed and self._dsn is not None else conn

    def _reconnect(self, dropped: Any) -> Any:
        """Replace ``dropped`` (once, however many threads saw it drop); raises if the server is still away."""
        with self._reconnecting:
            if self.conn is dropped:
                self.conn = self._connect()
                self._server = _server(self.conn)
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


def _server(conn: Any) -> str:
    """host:port of a live connection, for messages (never the user or password)."""
    try:
        return f"{conn.info.host}:{conn.info.port}"
    except Exception:
        return "(unknown)"


def _server_in(dsn: str) -> str:
    """host:port a DSN names (libpq's defaults when it names none), for messages."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    return f"{host}:{params.get('port') or os.environ.get('PGPORT') or 5432}"


def _score(distance: str, d: float) -> float:
    """A similarity from pgvector's distance: 1 - cosine distance, -L2, or the inner product."""
    if distance == "cosine":
        return 1.0 - d
    return -d
