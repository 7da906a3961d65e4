"""Examples are code users copy: the offline one must run as shipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scripted_model_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "scripted_model.py")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "answer: Acme's revenue grew 12% in 2023." in proc.stdout
    assert "Yes: 12%." in proc.stdout  # the sub-call's reply, printed by the worker


def test_quickstart_example_stops_cleanly_without_a_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode != 0
    assert "OPENAI_API_KEY" in proc.stderr


def test_langchain_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "langchain_retriever.py")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "answer: Acme's revenue grew 12% in 2023." in proc.stdout
    assert "sources: [('acme-revenue', True)]" in proc.stdout
    assert "chain: [acme-revenue] Acme's revenue grew 12% in 2023." in proc.stdout
    assert "Sources:\n[acme-revenue] Acme's revenue grew 12% in 2023." in proc.stdout  # the tool's reply


def test_llama_index_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "llama_index_query_engine.py")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "answer: Acme's revenue grew 12% in 2023." in proc.stdout
    assert "sources: [('acme-revenue', \"Acme's revenue grew 12% in 2023.\")]" in proc.stdout
    assert "tool: Acme's revenue grew 12% in 2023." in proc.stdout and "retrieved: ['acme-revenue']" in proc.stdout
