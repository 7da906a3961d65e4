"""The views `deeprecall query` shows while a query runs, fed a scripted query's events: plain lines, JSON lines,
and the rich live view recorded by a rich Console. The real CLI runs them in tests/interfaces/test_cli_stream.py."""

from __future__ import annotations

import io
import re

from rich.console import Console

from deeprecall.events import AnswerEvent, ModelDelta, event_from_json
from deeprecall.interfaces.cli_live import JsonEventsView, PlainView, RichView, choose_view
from tests.integrations.test_otel import CODE, QUESTION, multi_turn_events


def test_plain_view_prints_one_line_per_step_in_order():
    out = io.StringIO()
    view = PlainView(out)
    for event in multi_turn_events():
        view(event)
    lines = out.getvalue().splitlines()
    kinds = [re.match(r"\[ *[\d.]+s\] (\S+)", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert kinds == ["start", "search", "turn", "cell", "search", "sub-call", "sub-call", "restart", "cell", "turn",
                     "limit", "stopped"]
    assert len(lines) == len(multi_turn_events()) - 2  # the two streamed pieces have no line of their own
    assert lines[0] == f"[   0.00s] start    root-model on chroma:docs: {QUESTION}"
    assert lines[1].endswith(f"search   {QUESTION!r} -> 2 hits (10 ms)")
    assert "turn 1   root-model, 120 in / 30 out tokens, 0.07s: ```repl hits = search_db(" in lines[2]
    assert lines[4].endswith("search   'Acme revenue 2023' -> 1 hit (20 ms)")
    assert "-> '12% growth' (40 in / 5 out tokens, 30 ms)" in lines[5]
    assert "error: ProviderError: sub-model: HTTP 500" in lines[6]
    assert lines[8].endswith("cell 1   done in 0.14s: 12% growth")
    assert lines[10].endswith("limit    max_iterations: 2 turns used")
    assert "4 model calls, 2 searches, 405 tokens, $0.0020 (max_iterations: 2 turns used)" in lines[11]


def test_a_child_querys_lines_carry_its_depth():
    out = io.StringIO()
    view = PlainView(out)
    for event in multi_turn_events("child")[:2]:
        view(event.model_copy(update={"parent_query_id": "q1", "depth": 2}))
    view(multi_turn_events()[0])
    lines = out.getvalue().splitlines()
    assert lines[0] == f"[   0.00s] depth2 start    root-model on chroma:docs: {QUESTION}"
    assert lines[1].endswith(f"depth2 search   {QUESTION!r} -> 2 hits (10 ms)")
    assert lines[2].startswith("[   0.00s] start ")


def test_json_events_view_writes_lines_that_read_back_as_the_same_events():
    out = io.StringIO()
    view = JsonEventsView(out)
    sent = multi_turn_events()
    for event in sent:
        view(event)
    back = [event_from_json(line) for line in out.getvalue().splitlines()]
    assert [type(e) for e in back] == [type(e) for e in sent]
    assert [e.model_dump(exclude={"result"}) for e in back[:-1]] == [e.model_dump() for e in sent[:-1]]
    assert isinstance(back[-1], AnswerEvent) and back[-1].answer == sent[-1].answer


def test_rich_view_streams_the_reply_then_shows_each_step():
    console = Console(record=True, file=io.StringIO(), force_terminal=True, width=120, color_system="truecolor")
    events = multi_turn_events()
    with RichView(console) as view:
        for event in events:
            view(event)
    styled = console.export_text(styles=True, clear=False)
    text = console.export_text()
    streamed = text.index("```repl")  # the live part drew the first streamed piece before the turn ended
    assert streamed < text.index("turn 1   root-model, 120 in / 30 out tokens")
    assert "is writing" in text
    for shown in [f"start root-model on chroma:docs: {QUESTION}", "search 'Acme revenue 2023' -> 1 hit (20 ms)",
                  "cell 1", CODE.splitlines()[0], "cell 1   done in 0.14s: 12% growth", "limit max_iterations: 2 turns used",
                  "sub-call sub-model: \"Summarise: Acme's revenue grew 12%\" -> '12% growth'", "restart worker replaced",
                  "stopped in 0.0s: 4 model calls, 2 searches, 405 tokens"]:
        assert shown in text, shown
    assert text.index("limit max_iterations") < text.index("stopped in")
    assert "\x1b[1;31mlimit\x1b[0m" in styled and "\x1b[1;31mstopped\x1b[0m" in styled  # a limit is red and bold
    assert "\x1b[1;36msearch\x1b[0m" in styled


def test_rich_view_keeps_model_text_as_text_not_markup():
    console = Console(record=True, file=io.StringIO(), force_terminal=True, width=100)
    events = multi_turn_events()
    delta = ModelDelta(query_id="q1", t=0.05, step=1, model="root-model", text="[bold]not markup[/bold] [red]")
    with RichView(console) as view:
        for event in [events[0], delta, *events[4:]]:
            view(event)
    assert "[bold]not markup[/bold] [red]" in console.export_text()


def test_choose_view_by_flags_and_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe = io.StringIO()
    assert isinstance(choose_view(json_events=True, quiet=False, stdout=pipe, stderr=Tty()), JsonEventsView)
    assert choose_view(json_events=False, quiet=True, stdout=pipe, stderr=Tty()) is None
    assert isinstance(choose_view(json_events=False, quiet=False, stdout=pipe, stderr=pipe), PlainView)
    assert isinstance(choose_view(json_events=False, quiet=False, stdout=pipe, stderr=Tty()), RichView)
