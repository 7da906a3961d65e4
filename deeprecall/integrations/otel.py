"""OpenTelemetry spans for DeepRecall queries: a subscriber of ``deeprecall.events``.

    from deeprecall.integrations.otel import OpenTelemetrySubscriber
    otel = OpenTelemetrySubscriber(tracer_provider=provider)      # or the global provider
    engine.query(question, on_event=otel)                          # or DeepRecall(..., subscribers=[otel])

One span per query (``invoke_agent deeprecall``), per model call (``chat {model}``: root turns and
sub-calls), per cell (``execute_tool repl``) and per search (``retrieval {store}``), following the
OpenTelemetry GenAI semantic conventions and carrying OpenInference's ``openinference.span.kind``
(AGENT, LLM, TOOL, RETRIEVER) so Phoenix and Langfuse read them too. Model calls and cells are
children of the query span; searches and sub-calls a cell makes are children of that cell; a child
query's span (``rlm_query`` under ``max_depth > 1``) is a child of the parent's cell that ran it.

Why spans are timed from the events, not from the clock when the subscriber sees them: the query's
run emits ``t`` (seconds since the query started, monotonic) and each finished call's duration, and
a subscriber may be called late (from a queue, another thread). The query's wall-clock start is
fixed once, at ``QueryStarted``; every span's start and end are that plus the event's own times.
Spans with a start event (the query, a cell) are opened live, so their children can point at them
and a crash still leaves a parent; calls reported once when done (model turns, searches, sub-calls)
are created and ended at that event with their reconstructed start.

Prompts, replies, code, cell output, search queries and filters go into spans only with
``capture_content=True``; document ids and scores always do (they are not content). Events never carry
secrets, so neither do spans.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deeprecall._version import __version__
from deeprecall.events import (
    AnswerEvent,
    CellEnded,
    CellStarted,
    LimitTripped,
    ModelDelta,
    ModelTurn,
    QueryStarted,
    SearchDone,
    SubCallDone,
    WorkerRestarted,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

log = logging.getLogger("deeprecall")
AGENT_NAME = "deeprecall"
TOOL_NAME = "repl"  # the model's code runs as rlms ```repl``` blocks
OP, KIND = "gen_ai.operation.name", "openinference.span.kind"
Attrs = dict[str, Any]


def _trace() -> Any:
    """The ``opentelemetry.trace`` module, imported on first use: the rest of DeepRecall never needs it."""
    try:
        from opentelemetry import trace
    except ImportError as e:
        raise ImportError("OpenTelemetry spans need the otel extra: pip install 'deeprecall[otel]'") from e
    return trace


@dataclass
class _Query:
    """One watched query: its open spans and the wall clock its ``t = 0`` maps to."""

    span: Span
    anchor_ns: int
    data_source: str
    cells: dict[int, tuple[Span, int]] = field(default_factory=dict)  # open cells: span, start ns
    first_delta: dict[int, float] = field(default_factory=dict)  # step -> t of its first streamed piece
    provider_set: bool = False

    def ns(self, t: float) -> int:
        return self.anchor_ns + round(t * 1e9)

    def parent(self) -> Span:
        """A search or sub-call belongs to the cell that is running, else to the query."""
        return self.cells[max(self.cells)][0] if self.cells else self.span


class OpenTelemetrySubscriber:
    """An event subscriber (``EventSink``) that turns each query into a tree of OpenTelemetry spans.

    ``tracer_provider``: where spans go (default: the global provider). ``capture_content``: put prompts,
    replies, code, outputs and search queries in spans (off by default: they leave the machine).
    ``data_source_id``: the store's name in ``gen_ai.data_source.id`` when the events do not say it.
    One subscriber can watch many queries at once, from any threads."""

    wants_deltas = False  # spans record whole calls; time to first token is set when another subscriber streams

    def __init__(self, tracer_provider: TracerProvider | None = None, *, capture_content: bool = False,
                 data_source_id: str | None = None) -> None:
        trace = _trace()
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("deeprecall", __version__)
        self._trace = trace
        self.capture_content = capture_content
        self.data_source_id = data_source_id
        self._queries: dict[str, _Query] = {}
        self._lock = threading.Lock()
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            QueryStarted: self._started, ModelDelta: self._delta, ModelTurn: self._turn, CellStarted: self._cell_started,
            CellEnded: self._cell_ended, SearchDone: self._search, SubCallDone: self._sub_call, LimitTripped: self._limit,
            WorkerRestarted: self._restart, AnswerEvent: self._answer}

    def __call__(self, event: Any) -> None:
        """Never raises: a tracing fault must not break the query it watches."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        try:
            with self._lock:
                handler(event)
        except Exception as e:  # its type only: a message may quote the query's content
            log.warning("OpenTelemetry subscriber: %s on a %s event", type(e).__name__, getattr(event, "type", "?"))

    def close(self) -> None:
        """End the spans of queries that never sent their answer (an abandoned stream), marked as errors."""
        with self._lock:
            for query in self._queries.values():
                for span, _ in query.cells.values():
                    self._fail(span, "abandoned", "the query stopped before this cell ended")
                    span.end()
                self._fail(query.span, "abandoned", "the query stopped before its answer")
                query.span.end()
            self._queries.clear()

    # -- spans -----------------------------------------------------------------
    def _start(self, name: str, kind: str, parent: Span | None, start_ns: int, attributes: Attrs) -> Span:
        trace = self._trace
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self._tracer.start_span(name, context=context, kind=getattr(trace.SpanKind, kind),
                                       attributes=_clean(attributes), start_time=start_ns)

    def _fail(self, span: Span, error_type: str, message: str | None) -> None:
        span.set_attribute("error.type", error_type)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, message or error_type))

    def _content(self, attributes: Attrs) -> Attrs:
        return attributes if self.capture_content else {}

    # -- handlers --------------------------------------------------------------
    def _started(self, e: QueryStarted) -> None:
        anchor = time.time_ns() - round(e.t * 1e9)
        source = e.data_source or self.data_source_id or ""
        attributes: Attrs = {OP: "invoke_agent", "gen_ai.agent.name": AGENT_NAME, "gen_ai.request.model": e.root_model,
                             "gen_ai.data_source.id": source, KIND: "AGENT", "deeprecall.query_id": e.query_id,
                             **{f"deeprecall.limit.{k}": v for k, v in e.limits.items() if isinstance(v, (str, int, float))},
                             **self._content({"gen_ai.input.messages": _messages("user", e.question),
                                              "input.value": e.question, "deeprecall.filters": _json(e.filters)})}
        above = self._queries.get(e.parent_query_id) if e.parent_query_id else None  # a child query: in its cell
        if e.parent_query_id:
            attributes.update({"deeprecall.parent_query_id": e.parent_query_id, "deeprecall.depth": e.depth})
        span = self._start(f"invoke_agent {AGENT_NAME}", "INTERNAL", above.parent() if above else None,
                           anchor + round(e.t * 1e9), attributes)
        self._queries[e.query_id] = _Query(span, anchor, source)

    def _delta(self, e: ModelDelta) -> None:
        query = self._queries.get(e.query_id)
        if query is not None:
            query.first_delta.setdefault(e.step, e.t)

    def _turn(self, e: ModelTurn) -> None:
        query = self._queries.get(e.query_id)
        if query is None:
            return
        start = e.t - e.seconds
        first = query.first_delta.pop(e.step, None)
        call = "evidence" if e.purpose == "evidence" else "root"  # evidence: the answer from the hits after the loop
        attributes = _chat_attributes(e.model, e.provider, e.input_tokens, e.output_tokens, e.cost_usd, call, e.step)
        attributes.update({"gen_ai.response.finish_reasons": [e.finish_reason] if e.finish_reason else None,
                           "gen_ai.response.time_to_first_chunk": max(0.0, first - start) if first is not None else None})
        if e.prompt is not None:
            attributes.update(self._content({"gen_ai.input.messages": _json([_message(m) for m in e.prompt]),
                                             "input.value": _json(e.prompt), "input.mime_type": "application/json"}))
        attributes.update(self._content({"gen_ai.output.messages": _messages("assistant", e.text, e.finish_reason),
                                         "output.value": e.text}))
        if e.provider and not query.provider_set:
            query.span.set_attribute("gen_ai.provider.name", e.provider)
            query.provider_set = True
        span = self._start(f"chat {e.model}", "CLIENT", query.span, query.ns(start), attributes)
        span.end(end_time=query.ns(e.t))

    def _cell_started(self, e: CellStarted) -> None:
        query = self._queries.get(e.query_id)
        if query is None:
            return
        attributes: Attrs = {OP: "execute_tool", "gen_ai.tool.name": TOOL_NAME, "gen_ai.tool.call.id": f"cell-{e.cell}",
                             KIND: "TOOL", "tool.name": TOOL_NAME, "deeprecall.cell": e.cell, "deeprecall.step": e.step,
                             **self._content({"gen_ai.tool.call.arguments": _json({"code": e.code}), "input.value": e.code})}
        start = query.ns(e.t)
        query.cells[e.cell] = (self._start(f"execute_tool {TOOL_NAME}", "INTERNAL", query.span, start, attributes), start)

    def _cell_ended(self, e: CellEnded) -> None:
        query = self._queries.get(e.query_id)
        opened = query.cells.pop(e.cell, None) if query is not None else None
        if query is None or opened is None:
            return
        span, start = opened
        output = e.stdout + (f"\n[stderr]\n{e.stderr}" if e.stderr else "")
        for key, value in self._content({"gen_ai.tool.call.result": output, "output.value": output}).items():
            span.set_attribute(key, value)
        if e.error:
            self._fail(span, _error_type(e.error), e.error)
        span.end(end_time=max(start, query.ns(e.t)))

    def _search(self, e: SearchDone) -> None:
        query = self._queries.get(e.query_id)
        if query is None:
            return
        documents = [{"id": i, "score": e.scores[n]} if n < len(e.scores) else {"id": i} for n, i in enumerate(e.hit_ids)]
        attributes: Attrs = {OP: "retrieval", "gen_ai.data_source.id": query.data_source, KIND: "RETRIEVER",
                             "gen_ai.retrieval.documents": _json(documents), "deeprecall.search.top_k": e.top_k,
                             "deeprecall.search.hits": len(e.hit_ids), "deeprecall.step": e.step,
                             **_openinference_documents(documents),
                             **self._content({"gen_ai.retrieval.query.text": e.query, "input.value": e.query,
                                              "deeprecall.search.filters": _json(e.filters)})}
        name = f"retrieval {query.data_source}" if query.data_source else "retrieval"
        self._ended_call(query, name, "CLIENT", e.t, e.ms / 1000, attributes, e.error)

    def _sub_call(self, e: SubCallDone) -> None:
        query = self._queries.get(e.query_id)
        if query is None:
            return
        attributes = _chat_attributes(e.model, e.provider, e.input_tokens, e.output_tokens, e.cost_usd, "sub", e.step)
        attributes.update(self._content({"gen_ai.input.messages": _messages("user", e.prompt_preview),
                                         "gen_ai.output.messages": _messages("assistant", e.response_preview),
                                         "input.value": e.prompt_preview, "output.value": e.response_preview}))
        self._ended_call(query, f"chat {e.model}", "CLIENT", e.t, e.ms / 1000, attributes, e.error)

    def _ended_call(self, query: _Query, name: str, kind: str, t: float, seconds: float, attributes: Attrs,
                    error: str | None) -> None:
        """A call reported once it finished: a span from ``t - seconds`` to ``t``, inside its parent's start."""
        parent = query.parent()
        start = query.ns(t - seconds)
        if query.cells and parent is not query.span:
            start = max(start, query.cells[max(query.cells)][1])
        span = self._start(name, kind, parent, start, attributes)
        if error:
            self._fail(span, _error_type(error), error)
        span.end(end_time=max(start, query.ns(t)))

    def _limit(self, e: LimitTripped) -> None:
        query = self._queries.get(e.query_id)
        if query is not None:
            query.span.add_event("deeprecall.limit", {"deeprecall.limit.reason": e.reason, "message": e.message},
                                 timestamp=query.ns(e.t))

    def _restart(self, e: WorkerRestarted) -> None:
        query = self._queries.get(e.query_id)
        if query is not None:
            query.parent().add_event("deeprecall.worker_restarted", {"reason": e.reason}, timestamp=query.ns(e.t))

    def _answer(self, e: AnswerEvent) -> None:
        query = self._queries.pop(e.query_id, None)
        if query is None:
            return
        end = query.ns(e.t)
        for span, start in query.cells.values():  # a cell the query ended during (a limit, a dead worker)
            self._fail(span, e.error or "cut", "the query ended during this cell")
            span.end(end_time=max(start, end))
        span = query.span
        for key, value in _clean(_answer_attributes(e) | self._content(
                {"gen_ai.output.messages": _messages("assistant", e.answer), "output.value": e.answer})).items():
            span.set_attribute(key, value)
        if e.error:
            self._fail(span, e.error, e.error_message)
        span.end(end_time=end)


# -- attribute builders ---------------------------------------------------------
def _chat_attributes(model: str, provider: str, input_tokens: int, output_tokens: int, cost: float | None,
                     call: str, step: int) -> Attrs:
    return {OP: "chat", "gen_ai.request.model": model, "gen_ai.provider.name": provider or None,
            "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
            "deeprecall.cost_usd": cost, "deeprecall.call": call, "deeprecall.step": step, KIND: "LLM",
            "llm.model_name": model, "llm.provider": provider or None, "llm.token_count.prompt": input_tokens,
            "llm.token_count.completion": output_tokens, "llm.token_count.total": input_tokens + output_tokens}


def _answer_attributes(e: AnswerEvent) -> Attrs:
    models = [*e.usage.get("root", {}).values(), *e.usage.get("sub", {}).values()]
    input_tokens = sum(int(m.get("input_tokens", 0)) for m in models)
    output_tokens = sum(int(m.get("output_tokens", 0)) for m in models)
    return {"gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
            "llm.token_count.prompt": input_tokens, "llm.token_count.completion": output_tokens,
            "llm.token_count.total": input_tokens + output_tokens, "deeprecall.cost_usd": e.usage.get("total_cost_usd"),
            "deeprecall.search_calls": e.usage.get("search_calls"), "deeprecall.grounded": e.grounded,
            "deeprecall.sources": [str(s.get("id")) for s in e.sources]}


def _openinference_documents(documents: list[dict[str, Any]]) -> Attrs:
    """OpenInference's flattened form of the hits (what Phoenix lists under a retriever span)."""
    attributes: Attrs = {}
    for i, doc in enumerate(documents):
        attributes[f"retrieval.documents.{i}.document.id"] = doc["id"]
        attributes[f"retrieval.documents.{i}.document.score"] = doc.get("score")
    return attributes


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A ``{"role", "content"}`` chat message in the GenAI conventions' parts form."""
    return {"role": str(message.get("role", "user")), "parts": [{"type": "text", "content": str(message.get("content", ""))}]}


def _messages(role: str, text: str, finish_reason: str | None = None) -> str:
    message = _message({"role": role, "content": text})
    if finish_reason:
        message["finish_reason"] = finish_reason
    return json.dumps([message], ensure_ascii=False)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _error_type(error: str) -> str:
    """A short, low-cardinality ``error.type`` from an error text (its leading name, e.g. ``TimeoutError``)."""
    head = error.strip().split(":", 1)[0].split()
    return head[0][:64] if head else "error"


def _clean(attributes: Attrs) -> Attrs:
    """OpenTelemetry takes no None values: leave unknown attributes out rather than writing placeholders."""
    return {k: v for k, v in attributes.items() if v is not None}
