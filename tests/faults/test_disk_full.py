"""``/tmp`` full on the host: a small tmpfs is the temporary directory (TMPDIR) and holds the store and the trace
directory, and is filled. Ingestion fails with a ``StoreFullError`` naming the full disk and leaves only whole
batches; after space is freed the same ingestion, in the same process, completes with every chunk exactly once.
A query still answers (searches only read) and its trace stops with a warning instead of ending it. Real parts:
an embedded Chroma store on the tmpfs, the ingestion pipeline, the engine, the namespace sandbox, the scripted LLM.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.errors import StoreFullError
from deeprecall.ingest import ingest_path
from deeprecall.testing.scripted_server import by_turn
from deeprecall.vectorstores.chroma import ChromaStore
from tests.conftest import DOCS, ROOT
from tests.faults.private_services import SmallDisk, mount_problem, require

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    """A 4 MB tmpfs that is also this process's TMPDIR (what ``tempfile`` and the local sandbox use). After
    ``tmp_path``: pytest makes its own base directory under TMPDIR, and the test's files belong on the real disk."""
    require(mount_problem())
    small = SmallDisk(4)
    monkeypatch.setenv("TMPDIR", str(small.path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches its directory: read TMPDIR again
    try:
        yield small
    finally:
        small.close()


def folders(root: Path) -> tuple[Path, Path]:
    """Two folders of 60 files each (one 900-character chunk per file)."""
    parts = root / "first", root / "second"
    for n, part in enumerate(parts):
        part.mkdir(parents=True)
        for i in range(60):
            (part / f"doc{i}.txt").write_text(f"Report {n}-{i}: " + f"figures for unit {n}-{i} " * 35)
    return parts


def open_store(kind: str, folder: Path) -> Any:
    """The embedded stores that keep their files on the host: Chroma (SQLite + its index), FAISS (appended files)."""
    if kind == "faiss":
        from deeprecall.vectorstores.faiss import FaissStore

        if (folder / "meta.json").exists():
            return FaissStore.load(folder, embedding_fn=HashingEmbedding())
        return FaissStore(embedding_fn=HashingEmbedding(), path=folder)
    return ChromaStore("docs", persist_directory=str(folder), embedding_fn=HashingEmbedding())


@pytest.mark.parametrize("kind", ["chroma", "faiss"])
def test_ingestion_on_a_full_disk_fails_clearly_and_a_rerun_completes_once(disk, tmp_path, kind):
    first, _ = folders(tmp_path / "docs")
    store = open_store(kind, disk.path / "store")
    done = ingest_path(store, first, progress=False)
    assert done.added == 60 and store.count() == 60
    disk.fill(leave=6000)  # less than a batch's vectors: a write can be cut part-way
    with pytest.raises(StoreFullError, match="the disk holding the store is full") as failed:
        ingest_path(store, tmp_path / "docs", progress=False, batch_size=16)
    assert "Free space" in str(failed.value) and "Traceback" not in str(failed.value)
    assert store.count() == 60, "nothing of the failed batch was written"
    disk.free()
    again = ingest_path(store, tmp_path / "docs", progress=False, batch_size=16)
    assert (again.added, again.already_present) == (60, 60), str(again)
    ids = [hit.id for hit in store.scan()]
    assert len(ids) == len(set(ids)) == 120, "every chunk is in the store exactly once"
    reopened = open_store(kind, disk.path / "store")
    assert reopened.count() == 120
    hit = reopened.search("figures for unit 1-7", top_k=1)[0]
    assert hit.content.startswith("Report 1-7:"), "each document still has its own vector"


def test_the_cli_on_a_full_disk_says_so_without_a_traceback_and_a_rerun_completes(disk, tmp_path):
    """``deeprecall ingest`` into a new embedded store on a full disk (the store cannot even create its files)."""
    first, _ = folders(tmp_path / "docs")
    cli = [str(Path(sys.executable).parent / "deeprecall"), "ingest", str(first), "--persist-dir",
           str(disk.path / "store"), "--embedding", "hashing"]
    env = {**os.environ, "TMPDIR": str(disk.path)}
    disk.fill()
    failed = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert failed.returncode == 2 and "the disk holding the store is full" in failed.stderr, failed.stderr[-800:]
    assert "Traceback" not in failed.stderr
    disk.free()
    done = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "60 added, 0 already present" in done.stdout, done.stderr[-800:]


ANSWER = 'Done.\n```repl\nprint(search_db("Lyon factory")[0]["content"])\nanswer["content"] = "Lyon"\n' \
         'answer["ready"] = True\n```'


@pytest.mark.parametrize("isolation", ["namespace", "process"])  # process: the worker's directory is in TMPDIR
def test_a_query_on_a_full_disk_answers_and_its_trace_stops_with_a_warning(disk, llm, make_engine, caplog, isolation):
    store = ChromaStore("docs", persist_directory=str(disk.path / "store"), embedding_fn=HashingEmbedding())
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    disk.fill()  # before the engine: its workers start, and its trace directory is made, on the full disk
    server = llm({ROOT: by_turn(ANSWER)})
    engine = make_engine(server, vectorstore=store, subs=(), max_seconds=60, trace_dir=str(disk.path / "traces"),
                         environment_kwargs={"pool_size": 1, "isolation": isolation})
    with caplog.at_level(logging.WARNING, logger="deeprecall"):
        result = engine.query("Where did Acme open a factory?")
    assert result.error is None and result.answer == "Lyon", (result.error, result.error_message)
    assert "Lyon in 2022" in server.calls_for(ROOT)[-1].text or result.retrieved, "the searches worked"
    warned = [r.getMessage() for r in caplog.records if "trace file" in r.getMessage()]
    assert warned and "No space left on device" in warned[0], warned
