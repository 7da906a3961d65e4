"""`deeprecall query` showing a query's steps as they happen, run as a real subprocess against a scripted
LLM server and a real Chroma store: --json-events lines, plain lines in a pipe, the rich view on a pty."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from deeprecall.events import AnswerEvent, event_from_json
from deeprecall.testing.scripted_server import by_turn
from tests.engine.test_query import repl
from tests.interfaces.test_cli import CLI, clean_env

QUESTION = "Where is Acme's new factory?"
FIRST = repl('hits = search_db("Acme factory Lyon")\nprint(llm_query("Which city? " + hits[0]["content"]))',
             prose="Let me look it up.")
SECOND = repl('answer["content"] = "Lyon"\nanswer["sources"] = [hits[0]["id"]]\nanswer["ready"] = True', prose="Found it.")


def query_args(tmp_path: Path, llm: Any, *extra: str) -> list[str]:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "lyon.md").write_text("# Factories\n\nAcme opened a new factory in Lyon in 2022.\n")
    (docs / "other.txt").write_text("Globex hired a new CEO in 2021.\n")
    server = llm({"root-model": by_turn(FIRST, SECOND), "sub-model": lambda request: "Lyon, France."})
    return [*CLI, "query", QUESTION, "--docs", str(docs), "--embedding", "hashing", "--backend", "openai-compatible",
            "--base-url", server.base_url, "--model", "root-model", "--sub-model", "sub-model", *extra]


def test_json_events_prints_every_event_in_order_the_answer_last(tmp_path, llm):
    proc = subprocess.run(query_args(tmp_path, llm, "--json-events"), capture_output=True, text=True, env=clean_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [event_from_json(line) for line in proc.stdout.splitlines()]  # nothing but events on stdout
    types = [e.type for e in events]
    assert types[0] == "query_started" and types[-1] == "answer" and types.count("answer") == 1
    steps = [t for t in types if t != "model_delta"]
    assert steps == ["query_started", "search", "model_turn", "cell_started", "search", "sub_call", "cell_ended",
                     "model_turn", "cell_started", "cell_ended", "answer"]
    assert types.index("model_delta") < types.index("model_turn")  # the reply streamed before its turn ended
    assert len({e.query_id for e in events}) == 1
    assert [e.t for e in events] == sorted(e.t for e in events)
    started, answer = events[0], events[-1]
    assert started.question == QUESTION and started.root_model == "root-model"
    searches = [e for e in events if e.type == "search"]
    assert searches[0].step == 0 and searches[0].query == QUESTION  # the engine's own first search
    assert searches[1].query == "Acme factory Lyon" and searches[1].hit_ids
    (sub,) = [e for e in events if e.type == "sub_call"]
    assert sub.model == "sub-model" and sub.response_preview == "Lyon, France."
    assert "Lyon, France." in next(e for e in events if e.type == "cell_ended").stdout
    assert isinstance(answer, AnswerEvent) and answer.answer == "Lyon" and answer.error is None
    assert Path(answer.sources[0]["metadata"]["source"]).name == "lyon.md"


def test_in_a_pipe_steps_are_plain_lines_on_stderr_and_stdout_is_the_answer(tmp_path, llm):
    proc = subprocess.run(query_args(tmp_path, llm), capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Lyon\n") and "lyon.md" in proc.stdout
    steps = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    kinds = [line.split("] ", 1)[1].split()[0] for line in steps]
    assert kinds == ["start", "search", "turn", "cell", "search", "sub-call", "cell", "turn", "cell", "cell", "answered"]
    assert "start    root-model on chroma:" in steps[0] and QUESTION in steps[0]
    assert "search   'Acme factory Lyon' -> " in steps[4] and " hit" in steps[4]
    assert "sub-call sub-model: 'Which city? " in steps[5] and "-> 'Lyon, France.'" in steps[5]
    assert "turn 1   root-model" in steps[2] and "Let me look it up." in steps[2]
    assert "answered in" in steps[-1] and "2 searches" in steps[-1]
    assert "\x1b[" not in proc.stderr  # no terminal codes in a pipe


def test_quiet_shows_no_steps(tmp_path, llm):
    proc = subprocess.run(query_args(tmp_path, llm, "--quiet"), capture_output=True, text=True, env=clean_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Lyon\n")
    assert not [line for line in proc.stderr.splitlines() if line.startswith("[")]


def test_on_a_terminal_the_steps_are_drawn_live_with_rich(tmp_path, llm):
    """stderr on a pseudo-terminal (what a user's shell gives it); stdout a pipe, so the answer stays plain."""
    args = query_args(tmp_path, llm)
    main, secondary = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=secondary, text=True, cwd=tmp_path,
                            env=clean_env(TERM="xterm-256color", COLUMNS="120"))
    os.close(secondary)
    shown = read_until_exit(main, proc)
    stdout = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, shown
    assert stdout.startswith("Lyon\n")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "\x1b[1;35mturn\x1b[0m" in shown  # styled by rich, not the plain lines
    for step in ["start root-model on chroma:", "search 'Acme factory Lyon' -> ", "sub-call sub-model: 'Which city? ",
                 "cell 1", 'hits = search_db("Acme factory Lyon")', "answered in"]:
        assert step in plain, step
    assert "[   0." not in plain  # not the pipe's format


def read_until_exit(fd: int, proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Everything the child wrote to the terminal, until it closed it (EOF, or EIO on Linux) or exited."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=10)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def test_json_events_stream_the_reply_live_and_ctrl_c_stops_the_query(tmp_path, llm):
    """The root model streams its reply slowly: its first pieces reach stdout while it is still writing; Ctrl-C then
    ends the command at once (the query is cancelled: no further model call)."""
    from deeprecall.testing.scripted_server import Reply

    slow = Reply(text=FIRST, chunks=[FIRST[:10], FIRST[10:20], FIRST[20:]], chunk_delay=1.0)
    args = query_args(tmp_path, llm, "--json-events")
    server = llm({"root-model": by_turn(slow), "sub-model": lambda request: "Lyon, France."})
    args[args.index("--base-url") + 1] = server.base_url
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=clean_env())
    assert proc.stdout is not None
    first_delta = None
    while first_delta is None:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        event = event_from_json(line)
        if event.type == "model_delta":
            first_delta = event
    assert first_delta.text == FIRST[:10]  # the first piece, while the server is still sending the rest
    assert not any(r.replied_at for r in server.requests if r.model == "root-model")
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 130
    assert time.monotonic() - sent_at < 5
    assert '"type":"answer"' not in rest.replace(" ", "")
    assert len([r for r in server.requests if r.model == "root-model"]) == 1  # no later turn started
