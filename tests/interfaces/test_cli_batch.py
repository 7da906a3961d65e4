"""`deeprecall batch` as a real subprocess against the scripted LLM server and a real Chroma store (the folder
`deeprecall ingest` makes): answers written, resume after kill -9, bad lines reported before any model call,
--on-error skip|stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deeprecall.testing.scripted_server import ChatRequest, Reply, ScriptedLLMServer, by_turn
from tests.conftest import max_in_flight
from tests.engine.test_query import repl
from tests.interfaces.test_cli import CLI, clean_env

ANSWER = repl('answer["content"] = "answer to " + context["question"]\nanswer["ready"] = True')
ASKED = re.compile(r"question number (\d+)\?")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Chroma folder filled by the real `deeprecall ingest`, made once and copied into each test's folder."""
    home = tmp_path_factory.mktemp("store")
    (home / "docs").mkdir()
    (home / "docs" / "lyon.md").write_text("# Factories\n\nAcme opened a new factory in Lyon in 2022.\n")
    proc = subprocess.run([*CLI, "ingest", "docs", "--embedding", "hashing"], capture_output=True, text=True,
                          env=clean_env(), cwd=home, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return home / ".deeprecall"


def workdir(tmp_path: Path, store_dir: Path, lines: list[Any]) -> Path:
    shutil.copytree(store_dir, tmp_path / ".deeprecall")
    (tmp_path / "q.jsonl").write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                                              for line in lines))
    return tmp_path


def questions(n: int) -> list[dict[str, Any]]:
    return [{"id": f"q{i}", "question": f"question number {i}?"} for i in range(n)]


def batch(server: ScriptedLLMServer, *extra: str) -> list[str]:
    return [*CLI, "batch", "q.jsonl", "--out", "a.jsonl", "--embedding", "hashing", "--backend", "openai-compatible",
            "--base-url", server.base_url, "--model", "root-model", *extra]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def asked(requests: list[ChatRequest]) -> list[str]:
    return [f"q{ASKED.search(r.text).group(1)}" for r in requests if ASKED.search(r.text)]  # type: ignore[union-attr]


def test_answers_every_question_concurrently_with_a_summary(tmp_path, llm, store_dir):
    lines = [*questions(5), {"id": 7, "question": "question number 7?", "filters": {"year": {"$gte": 2020}}}]
    cwd = workdir(tmp_path, store_dir, lines)
    server = llm({"root-model": by_turn(ANSWER)}, latency=0.3)
    proc = subprocess.run(batch(server, "--concurrency", "3", "--json-summary"), capture_output=True, text=True,
                          env=clean_env(), cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = {r["id"]: r for r in records(cwd / "a.jsonl")}
    assert set(written) == {"q0", "q1", "q2", "q3", "q4", 7}  # an integer id stays an integer
    for qid, record in written.items():
        number = qid if isinstance(qid, int) else int(qid[1:])
        assert record["answer"] == f"answer to question number {number}?" and record["error"] is None
        assert record["usage"]["root_calls"] == 1 and record["usage"]["search_calls"] == 1
        assert record["usage"]["total_tokens"] > 0 and record["seconds"] >= 0.3
        assert set(record) == {"id", "answer", "sources", "usage", "error", "error_message", "seconds"}
    assert 2 <= max_in_flight(server.calls_for("root-model")) <= 3  # --concurrency 3, and it was used
    summary = json.loads(proc.stdout)
    assert summary["answered"] == 6 and summary["errors"] == {} and summary["skipped"] == 0
    assert summary["tokens"] == sum(r["usage"]["total_tokens"] for r in written.values())
    assert 0.3 <= summary["p50_seconds"] <= summary["p95_seconds"]
    assert "batch: 6 answered" in proc.stderr and "p95" in proc.stderr and "tokens:" in proc.stderr
    assert "batch: 6/6 answered" in proc.stderr  # the plain progress line (stderr is a pipe, not a terminal)


def test_a_rerun_after_kill_9_loses_nothing_and_reanswers_nothing(tmp_path, llm, store_dir):
    cwd = workdir(tmp_path, store_dir, questions(40))
    server = llm({"root-model": by_turn(ANSWER)}, latency=0.2)
    first = subprocess.Popen(batch(server, "--concurrency", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=clean_env(), cwd=cwd)
    out = cwd / "a.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 8):
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    kept = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    written = {r["id"] for r in kept}
    assert len(written) >= 8 and len(written) < 40  # killed mid-run
    with out.open("a") as f:  # what a kill during a write leaves: a line cut short
        f.write('{"id": "q39", "answer": "answer to que')
    before = len(server.requests)

    second = subprocess.run(batch(server, "--concurrency", "2"), capture_output=True, text=True, env=clean_env(),
                            cwd=cwd, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "was cut off by a killed run" in second.stderr
    again = asked(server.requests[before:])
    assert not set(again) & written  # nothing already written is asked again
    final = records(out)  # every line is whole JSON: the torn one is gone
    ids = [r["id"] for r in final]
    assert sorted(ids) == sorted(f"q{i}" for i in range(40)) and len(ids) == len(set(ids))
    assert all(r["answer"] == f"answer to question number {r['id'][1:]}?" for r in final)
    assert f"{len(written)} skipped" in second.stderr


BAD_LINES = [
    {"id": "a", "question": "question number 1?"},
    '{"id": "b", "question": ',
    {"question": "question number 3?"},
    {"id": "a", "question": "question number 4?"},
    {"id": "c", "question": "question number 5?", "topic": "finance"},
    {"id": "d", "question": "question number 6?", "filters": {"year": {"$between": [1, 2]}}},
    {"id": "e", "question": "question number 7?"},
]


def test_bad_lines_are_reported_with_line_numbers_before_any_model_call(tmp_path, llm, store_dir):
    cwd = workdir(tmp_path, store_dir, BAD_LINES)
    server = llm({"root-model": by_turn(ANSWER)})
    proc = subprocess.run(batch(server, "--on-error", "stop"), capture_output=True, text=True, env=clean_env(),
                          cwd=cwd, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for expected in ["line 2: malformed_line: not valid JSON", "line 3: missing_id", "line 4: duplicate_id: id \"a\" "
                     "is already used on line 1", "line 5: unknown_field: unknown field(s) ['topic']",
                     "line 6: bad_filter: filters.year: unknown operator '$between'", "5 bad line(s); nothing was run"]:
        assert expected in proc.stderr, expected
    assert server.requests == []  # no model call at all
    assert not (cwd / "a.jsonl").exists() or (cwd / "a.jsonl").read_text() == ""


def test_on_error_skip_answers_the_good_lines_and_reports_the_bad(tmp_path, llm, store_dir):
    cwd = workdir(tmp_path, store_dir, BAD_LINES)
    server = llm({"root-model": by_turn(ANSWER)})
    proc = subprocess.run(batch(server), capture_output=True, text=True, env=clean_env(), cwd=cwd, timeout=120)
    assert proc.returncode == 1  # not everything was answered
    assert sorted(r["id"] for r in records(cwd / "a.jsonl")) == ["a", "e"]
    assert sorted(set(asked(server.requests))) == ["q1", "q7"]
    assert "q.jsonl line 6: bad_filter" in proc.stderr and "(skipped)" in proc.stderr
    assert "bad lines: " in proc.stderr and "duplicate_id 1" in proc.stderr and "5 bad lines" in proc.stderr


def test_on_error_stop_ends_at_a_failed_question_and_a_rerun_retries_it(tmp_path, llm, store_dir):
    cwd = workdir(tmp_path, store_dir, questions(8))
    broken = {"on": True}

    def root(request: ChatRequest) -> Reply | str:
        if broken["on"] and "question number 2?" in request.text:
            return Reply(status=400, text="bad request: this model refuses question 2")
        return ANSWER

    server = llm({"root-model": root})
    proc = subprocess.run(batch(server, "--on-error", "stop", "--concurrency", "1"), capture_output=True, text=True,
                          env=clean_env(), cwd=cwd, timeout=120)
    assert proc.returncode == 1
    written = records(cwd / "a.jsonl")
    assert [r["id"] for r in written] == ["q0", "q1", "q2"] and written[2]["error"] == "llm_error"
    assert "stopped early (id q2: llm_error" in proc.stderr and "5 not run" in proc.stderr
    assert "errors: llm_error 1" in proc.stderr

    broken["on"] = False  # the provider is back: a re-run asks the failed question again, and the rest
    before = len(server.requests)
    again = subprocess.run(batch(server, "--on-error", "stop"), capture_output=True, text=True, env=clean_env(),
                           cwd=cwd, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(set(asked(server.requests[before:]))) == ["q2", "q3", "q4", "q5", "q6", "q7"]
    newest = {r["id"]: r for r in records(cwd / "a.jsonl")}  # the newer line for q2 supersedes the failed one
    assert len(newest) == 8 and all(r["error"] is None for r in newest.values())


def test_ctrl_c_stops_at_once_with_the_summary_and_the_rerun_goes_on(tmp_path, llm, store_dir):
    cwd = workdir(tmp_path, store_dir, questions(30))
    server = llm({"root-model": by_turn(ANSWER)}, latency=0.3)
    proc = subprocess.Popen(batch(server, "--concurrency", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(), cwd=cwd)
    out = cwd / "a.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - interrupted < 5
    assert "stopped early (interrupted)" in stderr and "not run" in stderr and "Traceback" not in stderr
    kept = {r["id"] for r in records(out) if r["error"] is None}
    assert 4 <= len(kept) < 30
    again = subprocess.run(batch(server, "--concurrency", "4"), capture_output=True, text=True, env=clean_env(),
                           cwd=cwd, timeout=120)
    assert again.returncode == 0, again.stderr
    newest = {r["id"]: r for r in records(out)}
    assert len(newest) == 30 and all(r["error"] is None for r in newest.values())
