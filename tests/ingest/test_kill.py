"""kill -9 in the middle of ingestion, then run it again: every chunk ends up stored exactly once.

A real SIGKILL, to a real child process, writing to a real store on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.ingest import chunk_text, iter_files, load_text
from deeprecall.vectorstores._support import content_id
from tests.ingest.ingest_child import DIM, open_store

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]


def make_corpus(folder: Path, files: int = 24) -> None:
    folder.mkdir()
    for f in range(files):
        sentences = [f"File {f} sentence {s} says {WORDS[(f + s) % 16]} {WORDS[(f * s) % 16]}." for s in range(40)]
        (folder / f"doc{f:02d}.md").write_text(" ".join(sentences))


def expected_ids(folder: Path) -> set[str]:
    ids = set()
    for file in iter_files(folder):
        for c in chunk_text(load_text(file), 300, 60):
            ids.add(content_id(c.text, {"source": str(file.resolve())}))
    return ids


def run_child(kind: str, store: Path, docs: Path, kill_after: int | None) -> str:
    cmd = [sys.executable, "-m", "tests.ingest.ingest_child", kind, str(store), str(docs)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if kill_after is not None and line.startswith(f"embedded {kill_after}"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    if kill_after is not None:
        assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    else:
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return "\n".join(lines)


@pytest.mark.parametrize("kind", ["chroma", "faiss", "lancedb", "qdrant"])
def test_sigkill_mid_ingest_then_rerun(tmp_path: Path, kind: str) -> None:
    docs, store_path = tmp_path / "docs", tmp_path / "store"
    make_corpus(docs)
    want = expected_ids(docs)
    assert len(want) > 60  # several batches of 8

    run_child(kind, store_path, docs, kill_after=3)
    run_child(kind, store_path, docs, kill_after=5)  # killed again, later, on top of a partial store
    out = run_child(kind, store_path, docs, kill_after=None)
    added, present = (int(x) for x in out.splitlines()[-1].split()[1:3])
    assert present >= 3 * 8  # the killed runs' batches were kept and skipped, not re-added
    assert added + present == len(want)

    store = open_store(kind, str(store_path), HashingEmbedding(DIM))
    stored = [h.id for h in store.scan()]
    assert len(stored) == len(set(stored)) == store.count() == len(want)
    assert set(stored) == want
    if hasattr(store, "close"):
        store.close()
