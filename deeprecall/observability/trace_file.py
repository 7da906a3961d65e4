"""Trace files: one JSONL file per query, in rlms's own log format, written by an event subscriber.

Why rlms's format: rlms's trajectory viewer (``visualizer/`` in the rlms repository) already shows a run's
turns, prompts, code and sub-calls from its logger's JSONL files, so our files open there unchanged. That viewer
reads every line that is not ``"type": "metadata"`` as an iteration, so DeepRecall's additions (searches with hit
ids, sources, usage, error) live under a ``"deeprecall"`` key inside rlms's own lines, never on lines of their own.
The schema is in docs/traces.md.

Why lines are written when the *next* turn starts: a turn's line holds its cells' results, and the events say a turn
is over only when another begins (or the answer comes). So a file lags the query by at most one turn, and a process
that dies mid-query leaves every finished turn as a complete line. Each line is one ``os.write`` on an ``O_APPEND``
descriptor opened and closed per line: nothing stays open if a query is abandoned, and readers skip a torn last line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from deeprecall.config import redact_kwargs
from deeprecall.errors import ConfigError
from deeprecall.events import (
    AnswerEvent,
    CellEnded,
    CellStarted,
    LimitTripped,
    ModelTurn,
    QueryStarted,
    SearchDone,
    SubCallDone,
    WorkerRestarted,
    preview,
)

log = logging.getLogger("deeprecall")
SCHEMA = 1
KEY = "deeprecall"  # DeepRecall's own fields, inside rlms's lines
DOCUMENT_CHARS = 2000  # a retrieved document's text kept in the file (its id and metadata are always kept)
MAX_OPEN = 1000  # queries one TraceDir follows at once; beyond it the oldest is closed (an abandoned query's state)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def trace_file_name(started: datetime, query_id: str) -> str:
    """``2026-12-01T19-07-12.123456Z_<query_id>.jsonl``: UTC, fixed width, so names sort by start time."""
    stamp = started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
    return f"{stamp}_{_UNSAFE.sub('_', query_id)[:64]}.jsonl"


class TraceDir:
    """An engine-wide event subscriber: every query it sees gets its own file in ``directory``.

    Events of several queries may arrive at once (from their own threads); each query's events arrive in order."""

    wants_deltas = False  # a trace records whole turns: the model need not stream for it

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"trace_dir {str(self.directory)!r} cannot be created: {e.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise ConfigError(f"trace_dir {str(self.directory)!r} is not writable")
        self._open: OrderedDict[str, TraceFile] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        with self._lock:
            trace = self._open.get(event.query_id)
            if trace is None and isinstance(event, QueryStarted):
                trace = self._open[event.query_id] = TraceFile(self.directory, event)
                if len(self._open) > MAX_OPEN:
                    self._open.popitem(last=False)[1].close()
        if trace is None or trace.handle(event):  # a query started before we subscribed, or this one is done
            with self._lock:
                self._open.pop(event.query_id, None)

    def path_of(self, query_id: str) -> Path | None:
        """The file of a query still being written (``None`` once it has ended)."""
        with self._lock:
            trace = self._open.get(query_id)
        return trace.path if trace else None


@dataclass
class _Turn:
    """The line being built: one iteration, written when the next one starts."""

    entry: dict[str, Any]
    start: float
    cells: dict[int, dict[str, Any]] = field(default_factory=dict)


class TraceFile:
    """One query's file. ``handle(event)`` returns True once the file is complete (after the answer)."""

    def __init__(self, directory: Path, started: QueryStarted) -> None:
        self.wall = datetime.now(timezone.utc) - timedelta(seconds=started.t)
        self.path = directory / trace_file_name(self.wall, started.query_id)
        self.config = _config(started)
        self.broken = False
        self._turn: _Turn | None = None
        self._cell: dict[str, Any] | None = None  # the open cell: searches and sub-calls made now belong to it
        self._loose: dict[str, list[dict[str, Any]]] = _loose()  # made outside any turn: go on the next line
        self._count = 0
        self._lock = threading.Lock()
        self._write({"type": "metadata", "timestamp": self._stamp(started.t), **self.config})

    def handle(self, event: Any) -> bool:
        with self._lock:
            handler = _HANDLERS.get(type(event))
            if handler is not None and not self.broken:
                handler(self, event)
            return isinstance(event, AnswerEvent)

    def close(self) -> None:
        """Write the turn in progress (a query abandoned without an answer event)."""
        with self._lock:
            self._flush(None)

    # -- events -------------------------------------------------------------
    def _on_turn(self, event: ModelTurn) -> None:
        if event.purpose == "evidence":  # the extra answer-from-documents call: part of the last step, not a turn
            self._place(_evidence_call(event), "evidence_calls")
            return
        start = max(0.0, event.t - event.seconds)
        self._flush(start)
        self._count += 1
        self._turn = _Turn(_iteration(self._count, self._stamp(start), event), start)

    def _on_cell_started(self, event: CellStarted) -> None:
        if self._turn is None:  # a cell outside any model turn: keep it on a line of its own rather than lose it
            self._count += 1
            self._turn = _Turn(_iteration(self._count, self._stamp(event.t), None, step=event.step), event.t)
        block = {"code": event.code, "result": _repl_result(),
                 KEY: {"cell": event.cell, "t": round(event.t, 4), "ended": False, "error": None, "searches": []}}
        self._turn.entry["code_blocks"].append(block)
        self._turn.cells[event.cell] = block
        self._cell = block

    def _on_cell_ended(self, event: CellEnded) -> None:
        block = self._turn.cells.get(event.cell) if self._turn else None
        if block is None:
            return
        block["result"].update(stdout=event.stdout, stderr=event.stderr, execution_time=event.seconds)
        block[KEY].update(ended=True, error=event.error)
        if self._cell is block:
            self._cell = None

    def _on_search(self, event: SearchDone) -> None:
        record = {"step": event.step, "t": round(event.t, 4), "query": event.query, "top_k": event.top_k,
                  "filters": _safe(event.filters), "hit_ids": list(event.hit_ids), "scores": list(event.scores),
                  "ms": event.ms, "error": event.error}
        self._place(record, "searches")

    def _on_sub_call(self, event: SubCallDone) -> None:
        call = _rlm_call(event)
        if self._cell is not None:
            self._cell["result"]["rlm_calls"].append(call)
        else:
            self._place(call, "sub_calls")

    def _on_note(self, event: LimitTripped | WorkerRestarted) -> None:
        note = {"type": event.type, "step": event.step, "t": round(event.t, 4), "reason": event.reason}
        if isinstance(event, LimitTripped):
            note["message"] = event.message
        self._place(note, "notes")

    def _on_answer(self, event: AnswerEvent) -> None:
        if self._turn is not None and event.error is None and event.answer:
            self._turn.entry["final_answer"] = event.answer
        self._flush(event.t)
        closing = dict(self.config)
        leftovers = {kind: records for kind, records in self._loose.items() if records}  # a query with no turn
        closing[KEY] = {**self.config[KEY], **leftovers, "result": _result(event)}
        self._write({"type": "metadata", "timestamp": self._stamp(event.t), **closing})

    # -- lines ----------------------------------------------------------------
    def _place(self, record: dict[str, Any], kind: str) -> None:
        if kind == "searches" and self._cell is not None:
            self._cell[KEY]["searches"].append(record)
        elif self._turn is not None:
            self._turn.entry[KEY][kind].append(record)
        else:
            self._loose[kind].append(record)

    def _flush(self, end: float | None) -> None:
        turn, self._turn, self._cell = self._turn, None, None
        if turn is None:
            return
        for kind, records in self._loose.items():  # made before this turn (the engine's first search): shown with it
            turn.entry[KEY][kind][:0] = records
        self._loose = _loose()
        if end is not None:
            turn.entry["iteration_time"] = round(max(0.0, end - turn.start), 4)
        self._write(turn.entry)

    def _write(self, entry: dict[str, Any]) -> None:
        if self.broken:
            return
        data = (json.dumps(entry, default=str) + "\n").encode("ascii")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as e:  # a full disk must not end the query: the trace stops, the query goes on
            self.broken = True
            log.warning("trace file %s: %s; no more of this query is written", self.path, e.strerror)

    def _stamp(self, t: float) -> str:
        return (self.wall + timedelta(seconds=t)).isoformat()


_HANDLERS: dict[type, Any] = {
    ModelTurn: TraceFile._on_turn, CellStarted: TraceFile._on_cell_started, CellEnded: TraceFile._on_cell_ended,
    SearchDone: TraceFile._on_search, SubCallDone: TraceFile._on_sub_call, LimitTripped: TraceFile._on_note,
    WorkerRestarted: TraceFile._on_note, AnswerEvent: TraceFile._on_answer,
}


def _loose() -> dict[str, list[dict[str, Any]]]:
    return {"searches": [], "sub_calls": [], "notes": [], "evidence_calls": []}


def _evidence_call(event: ModelTurn) -> dict[str, Any]:
    return {"step": event.step, "t": round(event.t, 4), "model": event.model, "provider": event.provider,
            "text": event.text, "input_tokens": event.input_tokens, "output_tokens": event.output_tokens,
            "cost_usd": event.cost_usd, "seconds": event.seconds}


def _safe(value: Any) -> Any:
    """Free-form dicts (filters, limits, metadata) with secret-looking keys masked, as config reprs mask them."""
    return redact_kwargs(value) if isinstance(value, dict) else value


def _config(started: QueryStarted) -> dict[str, Any]:
    """rlms's ``RLMMetadata`` fields, then ours. No kwargs are copied: rlms's logger writes backend_kwargs, keys and all."""
    limits = _safe(started.limits)
    return {
        "root_model": started.root_model, "max_depth": limits.get("max_depth") or 1,
        "max_iterations": limits.get("max_iterations"),
        "backend": started.backend or None, "backend_kwargs": {}, "environment_type": started.environment or None,
        "environment_kwargs": {}, "other_backends": list(started.sub_models) or None,
        KEY: {"schema": SCHEMA, "query_id": started.query_id, "question": started.question,
              "filters": _safe(started.filters), "limits": limits, "data_source": started.data_source,
              "sub_models": list(started.sub_models), "parent_query_id": started.parent_query_id,
              "depth": started.depth},
    }


def _iteration(number: int, stamp: str, turn: ModelTurn | None, *, step: int = 0) -> dict[str, Any]:
    """An rlms ``RLMIteration`` line; ``prompt`` is the message list rlms's viewer iterates (``[]`` if not given)."""
    ours: dict[str, Any] = {"step": step, "model_turn": turn is not None, **_loose()}
    if turn is not None:
        ours.update(step=turn.step, t=round(turn.t, 4), model=turn.model, provider=turn.provider,
                    input_tokens=turn.input_tokens, output_tokens=turn.output_tokens, cost_usd=turn.cost_usd,
                    finish_reason=turn.finish_reason, seconds=turn.seconds)
    return {"type": "iteration", "iteration": number, "timestamp": stamp,
            "prompt": [dict(m) for m in (turn.prompt or [])] if turn else [], "response": turn.text if turn else "",
            "code_blocks": [], "final_answer": None, "iteration_time": None, KEY: ours}


def _repl_result() -> dict[str, Any]:
    """rlms's ``REPLResult.to_dict()``; the worker's variables stay in the worker, so ``locals`` is empty."""
    return {"stdout": "", "stderr": "", "locals": {}, "execution_time": 0.0, "rlm_calls": [], "final_answer": None}


def _rlm_call(event: SubCallDone) -> dict[str, Any]:
    """rlms's ``RLMChatCompletion.to_dict()``, plus the token fields its viewer's ``RLMChatCompletion`` type reads."""
    usage: dict[str, Any] = {"total_calls": 1, "total_input_tokens": event.input_tokens,
                             "total_output_tokens": event.output_tokens}
    if event.cost_usd is not None:
        usage["total_cost"] = event.cost_usd
    summary: dict[str, Any] = {"model_usage_summaries": {event.model: usage}}
    if event.cost_usd is not None:
        summary["total_cost"] = event.cost_usd
    call: dict[str, Any] = {
        "root_model": event.model, "prompt": event.prompt_preview, "response": event.response_preview,
        "usage_summary": summary, "execution_time": round(event.ms / 1000, 4),
        "prompt_tokens": event.input_tokens, "completion_tokens": event.output_tokens,
        KEY: {"step": event.step, "t": round(event.t, 4), "provider": event.provider, "cost_usd": event.cost_usd,
              "ms": event.ms},
    }
    if event.error is not None:
        call["error"] = event.error
    return call


def _result(event: AnswerEvent) -> dict[str, Any]:
    """The closing line's result: what ``QueryResult`` says, with every retrieved document's id, score and text."""
    result = getattr(event, "result", None)
    retrieved = result.retrieved if result is not None else []
    documents = {s.id: _document(s.id, s.content, s.metadata, s.score) for s in retrieved}
    return {"answer": event.answer, "grounded": event.grounded, "error": event.error,
            "error_message": event.error_message, "seconds": event.seconds, "usage": event.usage,
            "sources": [_document(str(s.get("id", "")), str(s.get("content", "")), s.get("metadata") or {},
                                  s.get("score", 0.0)) for s in event.sources],
            "documents": documents, "children": [c.query_id for c in result.children] if result is not None else []}


def _document(doc_id: str, content: str, metadata: dict[str, Any], score: Any) -> dict[str, Any]:
    return {"id": doc_id, "score": score, "metadata": _safe(dict(metadata)), "content": preview(content, DOCUMENT_CHARS)}


# -- reading ----------------------------------------------------------------------------------------------------
@dataclass
class Trace:
    """A trace file read back: its opening metadata, its iterations, its result (None if the query never ended)."""

    path: Path
    metadata: dict[str, Any]
    iterations: list[dict[str, Any]]
    result: dict[str, Any] | None
    skipped_lines: int = 0

    @property
    def ours(self) -> dict[str, Any]:
        value = self.metadata.get(KEY)
        return value if isinstance(value, dict) else {}


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Parse a trace file as rlms's viewer does (metadata lines, every other line an iteration), skipping lines that
    are not JSON objects (a torn last line). Also reads plain rlms logs, which have no ``deeprecall`` keys."""
    path = Path(path)
    metadata: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    iterations: list[dict[str, Any]] = []
    skipped = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            entry = _parse(line)
            if entry is None:
                skipped += bool(line.strip())
            elif entry.get("type") == "metadata":
                ours = entry.get(KEY)
                if isinstance(ours, dict) and isinstance(ours.get("result"), dict):
                    result = ours["result"]
                metadata = metadata or entry
            else:
                iterations.append(entry)
    return Trace(path=path, metadata=metadata, iterations=iterations, result=result, skipped_lines=skipped)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
