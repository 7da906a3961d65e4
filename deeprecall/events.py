"""What a query does, as it does it: one typed event per thing that happened.

Why one module, beside ``results.py`` and importable without the engine: the
query's run is the only emitter, and everything that watches a query (the
``stream()``/``astream()`` iterators, ``on_event`` callbacks, trace files, the
HTML viewer, OpenTelemetry spans, the CLI, the server) is a subscriber reading
these same objects. A second path that reports the same facts differently is a
defect; add a field here instead.

Every event carries ``type`` (the discriminator), ``query_id`` (one per query,
so one consumer can watch several) and ``t``: seconds since the query started,
from a monotonic clock. ``step`` is the root-model turn the event belongs to
(1-based; 0 before the first turn, e.g. the engine's own first search).
``parent_query_id`` and ``depth`` place a child query's events in the query tree.
The last event of every query is ``AnswerEvent``; it carries the ``QueryResult``.

Events never carry secrets: prompts and documents appear only as the model and
the store gave them to the query, and subscribers that export off the machine
(OpenTelemetry) leave them out unless the user opts in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from deeprecall.results import QueryResult

PREVIEW_CHARS = 500


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The head of a long text, marked as cut, for events that must stay small."""
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    query_id: str
    t: float = 0.0
    step: int = 0
    # A child query (``rlm_query`` with ``max_depth > 1``, docs/recursion.md) is a query of its own, with its own
    # ``query_id``; its events go to the parent's subscribers carrying the parent's id and the child's depth
    # (the top query is depth 1 and has no parent). Show only the top query with ``parent_query_id is None``.
    parent_query_id: str | None = None
    depth: int = 1


class QueryStarted(_Event):
    """The query was accepted: its question, the filters every search will carry, its models and limits."""

    type: Literal["query_started"] = "query_started"
    question: str
    filters: dict[str, Any] | None = None
    root_model: str = ""
    sub_models: list[str] = Field(default_factory=list)
    limits: dict[str, Any] = Field(default_factory=dict)
    data_source: str = ""  # the store searched, as ``kind:collection`` from its ``describe()`` (e.g. ``chroma:docs``)
    backend: str = ""  # the root model's backend name as configured (``openai``, ``vllm``, ``llama-cpp``...)
    environment: str = ""  # the sandbox the model's code runs in (``local``, ``docker``...)


class ModelDelta(_Event):
    """A piece of the root model's reply as the provider streams it (one piece per turn if it cannot stream)."""

    type: Literal["model_delta"] = "model_delta"
    model: str
    text: str


class ModelTurn(_Event):
    """A root-model turn ended: its whole reply and what it cost."""

    type: Literal["model_turn"] = "model_turn"
    model: str
    provider: str = ""  # the API shape or vendor that served it (``openai``, ``anthropic``, ``gcp.gemini``...), "" if unknown
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None
    seconds: float = 0.0
    # The messages this turn sent (role/content dicts, as the model got them, compacted if they were). Trace files
    # need them: rlms's log format and its viewer show each iteration's prompt. None when the emitter left it out.
    prompt: list[dict[str, Any]] | None = None
    # "turn": a turn of the loop (one per step); "evidence": the one extra call that answers from the retrieved
    # documents when the loop ended without an answer (it belongs to the last step, not a new iteration).
    purpose: Literal["turn", "evidence"] = "turn"


class CellStarted(_Event):
    """The sandbox started running one code block of the model's reply."""

    type: Literal["cell_started"] = "cell_started"
    cell: int
    code: str


class CellEnded(_Event):
    """A code block finished (or was cut): what it printed and how long it took."""

    type: Literal["cell_ended"] = "cell_ended"
    cell: int
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    error: str | None = None


class SearchDone(_Event):
    """One ``search_db`` call: the query, the filters the store really got (tenant filters included), the hits."""

    type: Literal["search"] = "search"
    query: str
    top_k: int
    filters: dict[str, Any] | None = None
    hit_ids: list[str] = Field(default_factory=list)
    scores: list[float] = Field(default_factory=list)
    ms: float = 0.0
    error: str | None = None


class SubCallDone(_Event):
    """One ``llm_query`` call (each prompt of a batch is its own event)."""

    type: Literal["sub_call"] = "sub_call"
    model: str
    provider: str = ""  # as in ``ModelTurn``
    prompt_preview: str
    response_preview: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    ms: float = 0.0
    error: str | None = None


class LimitTripped(_Event):
    """A limit ended the query; the answer event that follows carries the best partial answer."""

    type: Literal["limit"] = "limit"
    reason: str
    message: str


class WorkerRestarted(_Event):
    """The sandbox worker was replaced (it hung, died, or a cell could not be stopped)."""

    type: Literal["worker_restarted"] = "worker_restarted"
    reason: str


class AnswerEvent(_Event):
    """The last event of every query: the answer, its sources, the bill, and the whole ``QueryResult``."""

    type: Literal["answer"] = "answer"
    answer: str
    sources: list[dict[str, Any]] = Field(default_factory=list)  # ``Source`` as dicts: id, content, metadata, score
    grounded: bool = False
    usage: dict[str, Any] = Field(default_factory=dict)  # ``Usage`` as a dict, with total_tokens and total_cost_usd
    seconds: float = 0.0
    error: str | None = None
    error_message: str | None = None
    result: QueryResult = Field(exclude=True)


Event = Annotated[
    QueryStarted | ModelDelta | ModelTurn | CellStarted | CellEnded | SearchDone | SubCallDone | LimitTripped
    | WorkerRestarted | AnswerEvent,
    Field(discriminator="type"),
]
"""Any one event; ``event.type`` says which."""

EventSink = Callable[[Any], None]
"""A subscriber: called with each event, in order, on the thread that emitted it. It must not block for long.
A subscriber object with ``wants_deltas = False`` needs no ``ModelDelta`` events: when no subscriber of a query
wants them the model is not asked to stream at all (a plain call is cheaper), and the query emits none."""

_EVENT = TypeAdapter(Event)


def event_to_json(event: _Event) -> str:
    """One event as one JSON line (``AnswerEvent.result`` is left out: its fields are already there)."""
    return event.model_dump_json()


def event_from_json(line: str | bytes) -> Any:
    """Parse a line ``event_to_json`` wrote (``--json-events``, the server's SSE) back into its event class.

    An ``AnswerEvent`` read back has no ``result``; rebuild one from its fields if you need it."""
    import json

    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"an event is a JSON object, got {type(data).__name__}")
    if data.get("type") == "answer":
        data.setdefault("result", None)
        return AnswerEvent.model_construct(**data)
    return _EVENT.validate_python(data)
