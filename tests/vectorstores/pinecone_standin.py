"""A local stand-in for the Pinecone SDK's data-plane ``Index`` (pinecone 10.x).

Pinecone is a hosted service and cannot run here, so PineconeStore is tested
against this class. It was written by reading the installed SDK's source
(``pinecone/index/__init__.py`` and ``pinecone/models/vectors/``):

- the same method names, each keyword-only as in the SDK: ``query(*, top_k,
  vector, namespace, filter, include_values, include_metadata, ...)``,
  ``upsert(*, vectors, namespace, batch_size, show_progress, ...)``,
  ``fetch(*, ids, namespace)``, ``list(*, prefix, limit, namespace)`` and
  ``describe_index_stats(*, filter)``; an unknown keyword is a TypeError here
  as there;
- it returns the SDK's own response classes (QueryResponse, ScoredVector,
  FetchResponse, Vector, DescribeIndexStatsResponse, NamespaceSummary,
  ListResponse, ListItem, Pagination, UpsertResponse);
- it refuses an upsert over Pinecone's documented limits, 1,000 vectors or 2 MB of
  JSON body (HTTP 400 / 413 there), and records each upsert's size;
- it evaluates Pinecone's metadata filter language itself, independently of
  DeepRecall's ``filters.matches``, including its refusals: a range operator
  with a non-number and an unknown operator are errors (HTTP 400 there).
  Assumed, as Pinecone documents: ``$ne``/``$nin`` match records that lack
  the field. Scores are cosine similarity, as for a ``metric="cosine"`` index.

``test_attach.py::test_pinecone_standin_matches_the_installed_sdk`` checks each method's full signature
against the installed SDK's ``pinecone.Index`` (pinned in the test extra; tests/signatures.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pinecone.models.vectors.responses import (
    DescribeIndexStatsResponse,
    FetchResponse,
    ListItem,
    ListResponse,
    NamespaceSummary,
    Pagination,
    QueryResponse,
    UpsertResponse,
)
from pinecone.models.vectors.vector import ScoredVector, Vector

_RANGE = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}


MAX_UPSERT_VECTORS = 1000  # Pinecone's documented upsert limits: 1,000 vectors and 2 MB per request
MAX_REQUEST_BYTES = 2 * 1000 * 1000


def _wire_bytes(vectors: Sequence[Any], namespace: str) -> int:
    """The size of the upsert's JSON body as the SDK's REST client sends it (compact JSON)."""
    records = [dict(v) if isinstance(v, Mapping) else {"id": v[0], "values": v[1], "metadata": v[2] if len(v) > 2 else {}}
               for v in vectors]
    return len(json.dumps({"vectors": records, "namespace": namespace}, separators=(",", ":")).encode())


class PineconeApiError(Exception):
    """What the service answers with HTTP 400."""


class StandInIndex:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.namespaces: dict[str, dict[str, tuple[list[float], dict[str, Any]]]] = {}
        self.calls: list[str] = []
        self.upsert_requests: list[tuple[int, int]] = []  # (vectors, JSON body bytes) of each upsert

    def upsert(self, *, vectors: Sequence[Any], namespace: str = "", batch_size: int | None = None,
               show_progress: bool = True, max_concurrency: int = 8, timeout: float | None = None,
               total_timeout: float | None = None) -> UpsertResponse:
        self.calls.append("upsert")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise PineconeApiError("400: too many vectors in one request")
        body = _wire_bytes(vectors, namespace)
        self.upsert_requests.append((len(vectors), body))
        if body > MAX_REQUEST_BYTES:
            raise PineconeApiError(f"413: request of {body} bytes is over the {MAX_REQUEST_BYTES}-byte limit")
        ns = self.namespaces.setdefault(namespace, {})
        for v in vectors:
            rec = dict(v) if isinstance(v, Mapping) else {"id": v[0], "values": v[1], "metadata": v[2] if len(v) > 2 else {}}
            if len(rec["values"]) != self.dimension:
                raise PineconeApiError(f"400: vector dimension {len(rec['values'])} does not match {self.dimension}")
            for key, value in (rec.get("metadata") or {}).items():
                if value is None or isinstance(value, dict):
                    raise PineconeApiError(f"400: metadata value for {key!r} must be string, number, boolean or list")
            ns[rec["id"]] = (list(rec["values"]), dict(rec.get("metadata") or {}))
        return UpsertResponse(upserted_count=len(vectors))

    def query(self, *, top_k: int, vector: Sequence[float] | None = None, id: str | None = None,
              namespace: str = "", filter: Mapping[str, Any] | None = None, include_values: bool = False,
              include_metadata: bool = False, sparse_vector: Any = None, scan_factor: float | None = None,
              max_candidates: int | None = None, timeout: float | None = None) -> QueryResponse:
        self.calls.append("query")
        if vector is None or len(vector) != self.dimension:
            raise PineconeApiError("400: query vector missing or of the wrong dimension")
        ns = self.namespaces.get(namespace, {})
        scored = [(_cosine(vector, vals), vid, meta) for vid, (vals, meta) in ns.items()
                  if filter is None or _match(filter, meta)]
        scored.sort(key=lambda t: -t[0])
        matches = [ScoredVector(id=vid, score=s, metadata=dict(meta) if include_metadata else None)
                   for s, vid, meta in scored[:top_k]]
        return QueryResponse(matches=matches, namespace=namespace)

    def fetch(self, *, ids: Sequence[str], namespace: str = "", timeout: float | None = None) -> FetchResponse:
        self.calls.append("fetch")
        if not ids:
            raise PineconeApiError("ids must not be empty")
        ns = self.namespaces.get(namespace, {})
        found = {i: Vector(id=i, values=ns[i][0], metadata=dict(ns[i][1])) for i in ids if i in ns}
        return FetchResponse(vectors=found, namespace=namespace)

    def list(self, *, prefix: str | None = None, limit: int | None = None, namespace: str = "",
             timeout: float | None = None) -> Iterator[ListResponse]:
        self.calls.append("list")
        ids = sorted(i for i in self.namespaces.get(namespace, {}) if i.startswith(prefix or ""))
        size = limit or 100
        for start in range(0, len(ids), size):
            token = str(start + size) if start + size < len(ids) else None
            yield ListResponse(vectors=[ListItem(id=i) for i in ids[start:start + size]],
                               pagination=Pagination(next=token) if token else None, namespace=namespace)

    def describe_index_stats(self, *, filter: Mapping[str, Any] | None = None,
                             timeout: float | None = None) -> DescribeIndexStatsResponse:
        self.calls.append("describe_index_stats")
        namespaces = {n: NamespaceSummary(vector_count=len(v)) for n, v in self.namespaces.items()}
        total = sum(len(v) for v in self.namespaces.values())
        return DescribeIndexStatsResponse(namespaces=namespaces, dimension=self.dimension,
                                          total_vector_count=total, metric="cosine")


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _match(flt: Mapping[str, Any], meta: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            ok = all(_match(c, meta) for c in cond)
        elif key == "$or":
            ok = any(_match(c, meta) for c in cond)
        elif key.startswith("$"):
            raise PineconeApiError(f"400: unknown top-level operator {key}")
        else:
            ok = all(_op(op, arg, key, meta) for op, arg in (cond.items() if isinstance(cond, dict) else [("$eq", cond)]))
        if not ok:
            return False
    return True


def _op(op: str, arg: Any, key: str, meta: dict[str, Any]) -> bool:
    has, val = key in meta, meta.get(key)
    if op == "$eq":
        return has and val == arg
    if op == "$ne":
        return not has or val != arg
    if op == "$in":
        return has and val in arg
    if op == "$nin":
        return not has or val not in arg
    if op == "$exists":
        return has == arg
    if op in _RANGE:
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            raise PineconeApiError(f"400: {op} takes a number; got {arg!r}")
        return has and isinstance(val, (int, float)) and not isinstance(val, bool) and _RANGE[op](val, arg)
    raise PineconeApiError(f"400: unknown operator {op}")
