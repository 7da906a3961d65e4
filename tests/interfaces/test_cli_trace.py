"""``deeprecall query --trace-dir`` and ``deeprecall trace view|list``, run as real subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deeprecall.observability.trace_file import read_trace
from deeprecall.testing.scripted_server import by_turn
from tests.engine.test_query import repl
from tests.interfaces.test_cli import CLI, clean_env


def test_query_writes_a_trace_that_trace_view_renders(tmp_path: Path, llm) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lyon.md").write_text("Acme opened a new factory in Lyon in 2022.\n")
    code = repl('hits = search_db("Acme factory")\nanswer["content"] = "Lyon"\nanswer["ready"] = True')
    server = llm(by_turn(code))
    traces = tmp_path / "traces"
    query = [*CLI, "query", "Where is Acme's new factory?", "--docs", str(docs), "--embedding", "hashing",
             "--backend", "openai-compatible", "--base-url", server.base_url, "--model", "root-model",
             "--trace-dir", str(traces)]
    proc = subprocess.run(query, capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (trace_path,) = traces.iterdir()
    trace = read_trace(trace_path)
    assert trace.result is not None and trace.result["answer"] == "Lyon" and len(trace.iterations) == 1

    page = tmp_path / "page.html"
    view = subprocess.run([*CLI, "trace", "view", str(trace_path), "--out", str(page)], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert view.returncode == 0, view.stderr
    assert view.stdout.strip() == str(page.resolve())
    html = page.read_text()
    assert "Where is Acme&#x27;s new factory?" in html and 'search_db(&quot;Acme factory&quot;)' in html

    default = subprocess.run([*CLI, "trace", "view", str(trace_path)], capture_output=True, text=True, env=clean_env(),
                             timeout=60)
    assert default.returncode == 0 and Path(default.stdout.strip()) == trace_path.with_suffix(".html").resolve()

    listing = subprocess.run([*CLI, "trace", "list", str(traces)], capture_output=True, text=True, env=clean_env(),
                             timeout=60)
    assert listing.returncode == 0
    assert listing.stdout.split("\t")[:3] == [trace_path.name, "1 turns", "answered"]


def test_trace_view_of_a_missing_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "trace", "view", str(tmp_path / "nope.jsonl")], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.returncode == 2 and "no trace file at" in proc.stderr and "Traceback" not in proc.stderr
