"""What ``deeprecall query`` shows while a query runs: three views, each a subscriber of the query's events.

    JsonEventsView   --json-events: one event per line on stdout (``event_to_json``), the answer event last
    RichView         a terminal, with rich installed (extra ``cli``): the model's text as it streams, then each
                     turn, cell, search, sub-call and limit as it happens
    PlainView        a pipe, a dumb terminal, or no rich: one line per step

Why steps go to stderr: stdout stays the answer and its sources, which scripts read (and ``--json`` the
result); a terminal shows both. ``--json-events`` is the exception: the events are then the output.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, TextIO

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
    event_to_json,
)

REFRESH_HZ = 8
STREAM_LINES = 8  # lines of the streaming reply the live view keeps on screen
CODE_LINES = 12
OUTPUT_LINES = 4
STYLES = {"search": "cyan", "sub_call": "blue", "limit": "bold red", "worker_restarted": "red"}


class View:
    """A subscriber that may hold the terminal (``with view:``) while the query runs."""

    def __call__(self, event: Any) -> None:
        raise NotImplementedError

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class JsonEventsView(View):
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Any) -> None:
        self.out.write(event_to_json(event) + "\n")
        self.out.flush()


class PlainView(View):
    """One line per step, ``[  1.23s] kind  detail``; streamed pieces of text are not shown (the turn's line is)."""

    wants_deltas = False

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Any) -> None:
        line = plain_line(event)
        if line is not None:
            self.out.write(f"[{event.t:7.2f}s] {line}\n")
            self.out.flush()


def plain_line(event: Any) -> str | None:
    """The step ``event`` reports, as one line of text (None for events a line-per-step log leaves out).
    A child query's lines (``rlm_query`` under ``max_depth > 1``) start with its depth: ``depth2 search ...``;
    their times count from the child's own start."""
    line = _line(event)
    depth = getattr(event, "depth", 1)
    return line if line is None or depth == 1 else f"depth{depth} {line}"


def _line(event: Any) -> str | None:
    if isinstance(event, QueryStarted):
        where = f" on {event.data_source}" if event.data_source else ""
        return f"start    {event.root_model or 'model'}{where}: {clip(event.question, 100)}"
    if isinstance(event, ModelTurn):
        return f"{turn_header(event)}: {clip(event.text, 100)}"
    if isinstance(event, CellStarted):
        return f"cell {event.cell:<3} {clip(event.code, 100)}"
    if isinstance(event, CellEnded):
        what = f"error: {clip(event.error, 80)}" if event.error else clip(event.stdout or event.stderr, 80) or "(no output)"
        return f"cell {event.cell:<3} done in {event.seconds:.2f}s: {what}"
    if isinstance(event, SearchDone):
        found = f"error: {clip(event.error, 80)}" if event.error else f"{hits(len(event.hit_ids))}"
        return f"search   {clip(event.query, 80)!r} -> {found} ({event.ms:.0f} ms)"
    if isinstance(event, SubCallDone):
        reply = f"error: {clip(event.error, 60)}" if event.error else repr(clip(event.response_preview, 60))
        return (f"sub-call {event.model}: {clip(event.prompt_preview, 60)!r} -> {reply} "
                f"({event.input_tokens} in / {event.output_tokens} out tokens, {event.ms:.0f} ms)")
    if isinstance(event, LimitTripped):
        return f"limit    {event.reason}: {clip(event.message, 100)}"
    if isinstance(event, WorkerRestarted):
        return f"restart  worker replaced: {clip(event.reason, 100)}"
    if isinstance(event, AnswerEvent):
        return f"{'stopped' if event.error else 'answered'} {summary(event)}"
    return None


def turn_header(event: ModelTurn) -> str:
    label = "evidence" if getattr(event, "purpose", "turn") == "evidence" else f"turn {event.step}"
    return f"{label:<8} {event.model}, {event.input_tokens} in / {event.output_tokens} out tokens, {event.seconds:.2f}s"


def summary(event: AnswerEvent) -> str:
    """The bill, in one line: seconds, model calls, searches, tokens, cost, and why it stopped early."""
    usage = event.usage
    calls = [m.get("calls", 0) for part in ("root", "sub") for m in usage.get(part, {}).values()]
    cost = usage.get("total_cost_usd")
    text = (f"in {event.seconds:.1f}s: {sum(calls)} model calls, {usage.get('search_calls', 0)} searches, "
            f"{usage.get('total_tokens', 0)} tokens" + (f", ${cost:.4f}" if cost else ""))
    return text + (f" ({event.error}: {clip(event.error_message or '', 100)})" if event.error else "")


def clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def hits(n: int) -> str:
    return f"{n} hit" if n == 1 else f"{n} hits"


class RichView(View):
    """The live view: finished steps scroll above; below them, the reply streaming in and what runs now.

    rich is imported here only (extra ``cli``). Events may arrive from the query's threads, so
    drawing is under a lock; rich's own refresh thread redraws the live part (elapsed time)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console if console is not None else Console(stderr=True)
        self._lock = threading.Lock()
        self._streamed = ""
        self._doing = "starting"
        self._since = time.monotonic()
        self._drawn = 0.0
        self._live = Live(_LivePart(self), console=self.console, refresh_per_second=REFRESH_HZ, transient=True)

    def __enter__(self) -> RichView:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def __call__(self, event: Any) -> None:
        with self._lock:
            self._show(event)

    def _set(self, doing: str) -> None:
        self._doing, self._since = doing, time.monotonic()

    def _show(self, event: Any) -> None:
        from rich.syntax import Syntax
        from rich.text import Text

        out = self._live.console
        if isinstance(event, ModelDelta):
            if not self._streamed:
                self._set(f"turn {event.step}: {event.model} is writing")
            self._streamed += event.text
            if time.monotonic() - self._drawn >= 1 / REFRESH_HZ:  # sooner than rich's own refresh, never more often
                self._drawn = time.monotonic()
                self._live.refresh()
            return
        if isinstance(event, QueryStarted):
            out.print(_step("bold", plain_line(event) or "", event.t))
            self._set(f"waiting for {event.root_model or 'the model'}")
        elif isinstance(event, ModelTurn):
            self._streamed = ""
            out.print(_step("magenta", turn_header(event), event.t))
            reply = "\n".join(event.text.strip().splitlines()[:STREAM_LINES])
            out.print(Text(reply, style="dim"), overflow="ellipsis")
            self._set("running the reply")
        elif isinstance(event, CellStarted):
            out.print(_step("yellow", f"cell {event.cell}", event.t))
            code = "\n".join(event.code.splitlines()[:CODE_LINES])
            out.print(Syntax(code, "python", theme="ansi_dark", background_color="default"))
            self._set(f"running cell {event.cell}")
        elif isinstance(event, CellEnded):
            out.print(_step("red" if event.error else "yellow", plain_line(event) or "", event.t))
            shown = "\n".join((event.stdout or "").strip().splitlines()[:OUTPUT_LINES])
            if shown and not event.error:
                out.print(Text(shown, style="dim"))
            self._set("waiting for the model")
        elif isinstance(event, AnswerEvent):
            out.print(_step("red" if event.error else "green", plain_line(event) or "", event.t))
            self._set("done")
        else:
            line = plain_line(event)
            if line is not None:
                failed = bool(getattr(event, "error", None))
                out.print(_step("red" if failed else STYLES.get(event.type, "white"), line, event.t))


class _LivePart:
    """The bottom of the live view, redrawn by rich: the streaming reply's last lines and a spinner."""

    def __init__(self, view: RichView) -> None:
        self.view = view

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        view = self.view
        tail = view._streamed.splitlines()[-STREAM_LINES:]
        doing = f"{view._doing} ({time.monotonic() - view._since:.1f}s)"
        parts: list[Any] = [Text("\n".join(tail), style="italic")] if tail else []
        return Group(*parts, Spinner("dots", text=Text(doing, style="bold")))


def _step(style: str, line: str, t: float) -> Any:
    from rich.text import Text

    kind, _, rest = line.partition(" ")
    return Text.assemble((f"{t:6.2f}s ", "dim"), (kind, f"bold {style}"), " ", rest.lstrip())


def choose_view(*, json_events: bool, quiet: bool, stdout: TextIO, stderr: TextIO) -> View | None:
    """--json-events, else the live view on a terminal with rich, else plain lines; None with --quiet."""
    if json_events:
        return JsonEventsView(stdout)
    if quiet:
        return None
    if stderr.isatty() and os.environ.get("TERM", "") != "dumb":
        try:
            return RichView()
        except ImportError:  # rich is the extra `cli`: without it a terminal gets the plain lines
            pass
    return PlainView(stderr)
