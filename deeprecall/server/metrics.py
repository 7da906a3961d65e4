"""``GET /metrics``: the server's Prometheus text exposition (format 0.0.4), from the one event stream.

``QueryMetrics`` is an engine-wide subscriber (``wants_deltas = False``: alone it never makes a model
stream). Everything about queries is read from their events, never measured a second way. Queries are
the requests' (top) queries: a child query's (``rlm_query`` at ``max_depth > 1``) usage is already in its
top query's, so only its model calls and searches are counted, as calls:

    deeprecall_queries_in_flight                          gauge      query_started .. answer
    deeprecall_queries_total{outcome}                     counter    answer: ok, or the error that ended it
    deeprecall_query_errors_total{cause}                  counter    answer.error (max_seconds, llm_error, cancelled...)
    deeprecall_query_seconds                              histogram  answer.seconds
    deeprecall_model_call_seconds{model,role}             histogram  model_turn.seconds (root), sub_call.ms (sub)
    deeprecall_search_seconds                             histogram  search.ms
    deeprecall_tokens_total{model,role,direction}         counter    answer.usage (root and sub models, input/output)
    deeprecall_cost_usd_total{model,role}                 counter    answer.usage
    deeprecall_worker_restarts_total                      counter    worker_restarted

Beside the events, read when scraped: the sandbox pool (``deeprecall_sandbox_workers{state}``: idle,
starting, target), and what only the HTTP layer sees (``deeprecall_http_responses_total{route,status}``,
counted by ``ResponseCounter``, an ASGI wrapper, so 401/413/429 refusals show up by status) and the
answer cache (``deeprecall_answer_cache_total{result}``: hit, miss, uncacheable).

Written by hand (about 100 lines) rather than with ``prometheus_client``: the server then needs no extra
package, and each app (tests run several in one process) owns its own numbers. Each server process
exposes its own; with several workers or replicas, scrape each (Prometheus sums them).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

QUERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SEARCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class _Family:
    """One metric name: its type, help and values by label set."""

    def __init__(self, name: str, kind: str, help_text: str, buckets: tuple[float, ...] = ()) -> None:
        self.name, self.kind, self.help, self.buckets = name, kind, help_text, buckets
        self.values: dict[Labels, Any] = {}

    def add(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        histogram = self.values.get(key)
        if histogram is None:
            histogram = self.values[key] = _Histogram(self.buckets)
        histogram.observe(value)

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.values.items()):
            if isinstance(value, _Histogram):
                cumulative = 0
                for bound, count in zip([*value.buckets, float("inf")], value.counts, strict=True):
                    cumulative += count
                    yield f"{self.name}_bucket{_labels((*labels, ('le', _number(bound))))} {cumulative}"
                yield f"{self.name}_sum{_labels(labels)} {_number(value.total)}"
                yield f"{self.name}_count{_labels(labels)} {cumulative}"
            else:
                yield f"{self.name}{_labels(labels)} {_number(value)}"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    value = float(value)
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class QueryMetrics:
    """The engine-wide subscriber feeding the query metrics, plus ``render()`` for ``GET /metrics``."""

    wants_deltas = False

    def __init__(self, pool_stats: Callable[[], dict[str, int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._pool_stats = pool_stats
        self.in_flight = _Family("deeprecall_queries_in_flight", "gauge", "Queries running now.")
        self.in_flight.add(0.0)
        self.queries = _Family("deeprecall_queries_total", "counter", "Queries ended, by outcome (ok or the error).")
        self.errors = _Family("deeprecall_query_errors_total", "counter", "Queries that ended early, by cause.")
        self.seconds = _Family("deeprecall_query_seconds", "histogram", "Query wall time in seconds.", QUERY_BUCKETS)
        self.calls = _Family("deeprecall_model_call_seconds", "histogram", "Model call time in seconds, by model "
                             "and role (root turn or sub-call).", CALL_BUCKETS)
        self.searches = _Family("deeprecall_search_seconds", "histogram", "Store search time in seconds.",
                                SEARCH_BUCKETS)
        self.tokens = _Family("deeprecall_tokens_total", "counter", "Model tokens, by model, role and direction.")
        self.cost = _Family("deeprecall_cost_usd_total", "counter", "Model cost in USD, by model and role.")
        self.restarts = _Family("deeprecall_worker_restarts_total", "counter", "Sandbox workers replaced mid-query.")
        self.restarts.add(0.0)
        self.http = _Family("deeprecall_http_responses_total", "counter", "HTTP responses, by route and status.")
        self.cache = _Family("deeprecall_answer_cache_total", "counter", "Answer cache lookups, by result.")
        self._families = [self.in_flight, self.queries, self.errors, self.seconds, self.calls, self.searches,
                          self.tokens, self.cost, self.restarts, self.http, self.cache]

    def __call__(self, event: Any) -> None:
        kind = event.type
        child = getattr(event, "parent_query_id", None) is not None  # a child query (rlm_query, max_depth > 1)
        with self._lock:
            if kind == "query_started" and not child:
                self.in_flight.add(1.0)
            elif kind == "answer" and not child:  # a child's tokens and cost are in its top query's usage
                self._answered(event)
            elif kind == "model_turn":
                self.calls.observe(float(event.seconds), model=event.model, role="root")
            elif kind == "sub_call":
                self.calls.observe(float(event.ms) / 1000.0, model=event.model, role="sub")
            elif kind == "search":
                self.searches.observe(float(event.ms) / 1000.0)
            elif kind == "worker_restarted":
                self.restarts.add()

    def _answered(self, event: Any) -> None:
        self.in_flight.add(-1.0)
        self.queries.add(outcome=event.error or "ok")
        if event.error:
            self.errors.add(cause=event.error)
        self.seconds.observe(float(event.seconds))
        for role in ("root", "sub"):
            for model, usage in (event.usage.get(role) or {}).items():
                self.tokens.add(float(usage.get("input_tokens", 0)), model=model, role=role, direction="input")
                self.tokens.add(float(usage.get("output_tokens", 0)), model=model, role=role, direction="output")
                if usage.get("cost_usd") is not None:
                    self.cost.add(float(usage["cost_usd"]), model=model, role=role)

    def count_response(self, route: str, status: int) -> None:
        with self._lock:
            self.http.add(route=route, status=str(status))

    def count_cache(self, result: str) -> None:
        with self._lock:
            self.cache.add(result=result)

    def render(self) -> str:
        """The exposition text, every family, with the sandbox pool read now."""
        pool = _Family("deeprecall_sandbox_workers", "gauge", "Sandbox workers: idle (ready), starting, target.")
        if self._pool_stats is not None:
            for state, value in self._pool_stats().items():
                pool.add(float(value), state=state)
        with self._lock:
            lines = [line for family in [*self._families, pool] for line in family.lines()]
        return "\n".join(lines) + "\n"


class ResponseCounter:
    """ASGI wrapper counting every HTTP response by route and status into ``QueryMetrics`` (401, 429 and
    413 refusals never reach the engine, so the events cannot count them)."""

    def __init__(self, app: ASGIApp, metrics: QueryMetrics, routes: Iterable[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, set(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self.routes else "other"  # unknown paths must not grow the label set

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.count_response(route, int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting)
