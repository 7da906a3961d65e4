"""The command line, run as a real subprocess against a scripted LLM server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deeprecall.testing.scripted_server import by_turn
from tests.engine.test_query import repl

CLI = [sys.executable, "-m", "deeprecall.interfaces.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("DEEPRECALL_")}
    env.update(extra)
    return env


def test_no_llm_configured_stops_at_once_with_what_to_set(tmp_path):
    # An empty models folder: the embedded model, installed on this machine or not, is not there.
    proc = subprocess.run([*CLI, "query", "what?", "--docs", str(tmp_path)], capture_output=True, text=True,
                          env=clean_env(DEEPRECALL_MODELS_DIR=str(tmp_path / "no-models")), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "no LLM is configured" in proc.stderr and "OPENAI_API_KEY" in proc.stderr and "--base-url" in proc.stderr
    assert "scripts/local_llm.sh" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / ".deeprecall").exists()  # it stopped before any work


def test_bad_flags_give_a_clear_error_not_a_traceback(tmp_path):
    proc = subprocess.run([*CLI, "query", "q", "--backend", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1"],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "--model is required" in proc.stderr and "Traceback" not in proc.stderr


def test_query_ingests_docs_and_answers_with_sources(tmp_path, llm):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lyon.md").write_text("# Factories\n\nAcme opened a new factory in Lyon in 2022.\n")
    (docs / "other.txt").write_text("Globex hired a new CEO in 2021.\n")
    code = repl('hits = search_db("Acme factory Lyon")\n'
                'answer["content"] = "Lyon"\nanswer["sources"] = [hits[0]["id"]]\nanswer["ready"] = True')
    server = llm(by_turn(code))
    args = [*CLI, "query", "Where is Acme's new factory?", "--docs", str(docs), "--embedding", "hashing",
            "--backend", "openai-compatible", "--base-url", server.base_url, "--model", "root-model"]
    proc = subprocess.run(args, capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Lyon\n")
    assert "Sources:" in proc.stdout and "lyon.md" in proc.stdout
    assert (tmp_path / ".deeprecall").is_dir()

    again = subprocess.run([*args, "--json"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    result = json.loads(again.stdout)
    assert result["answer"] == "Lyon" and result["error"] is None
    assert Path(result["sources"][0]["metadata"]["source"]).name == "lyon.md"
