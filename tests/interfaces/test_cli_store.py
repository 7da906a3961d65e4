"""`deeprecall ingest` and `query` on every store ingestion supports, from the config file or --store flags.

Real subprocesses, real stores (the running PostgreSQL; Qdrant local mode, FAISS and LanceDB as folders), the
scripted LLM server as the model.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from deeprecall.interfaces.cli import build_parser
from deeprecall.interfaces.cli_store import store_spec
from deeprecall.testing.scripted_server import by_turn
from tests import skip_guard
from tests.engine.test_query import repl
from tests.interfaces.test_cli import CLI, clean_env

ANSWER = repl('hits = search_db("Acme factory Lyon")\n'
              'answer["content"] = "Lyon"\nanswer["sources"] = [hits[0]["id"]]\nanswer["ready"] = True')


def _docs(tmp: Path) -> Path:
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "lyon.md").write_text("# Factories\n\nAcme opened a new factory in Lyon in 2022.\n")
    (docs / "other.txt").write_text("Globex hired a new CEO in 2021.\n")
    return docs


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=clean_env(**env), cwd=cwd, timeout=180)


def _config(tmp: Path, server_url: str, store: str) -> Path:
    cfg = tmp / "deeprecall.yaml"
    cfg.write_text(f"root: {{type: openai-compatible, model_name: root-model, base_url: {server_url}}}\n{store}")
    return cfg


def _pg_store(tmp: Path, writable: bool, request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """A pgvector section whose DSN comes from the environment, as a real deployment's would."""
    dsn = request.getfixturevalue("pg_dsn")
    table = "cli_" + uuid.uuid4().hex[:10]
    request.addfinalizer(lambda: _drop(dsn, table))
    section = (f"store:\n  type: pgvector\n  dsn: ${{PG_DSN_FOR_TEST}}\n  table: {table}\n"
               f"  writable: {str(writable).lower()}\n  embedding: hashing\n")
    return section, {"PG_DSN_FOR_TEST": dsn}


def _drop(dsn: str, table: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


STORES = ["lancedb-config", "qdrant-flags", pytest.param("pgvector-config", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("case", STORES)
def test_ingest_then_query_on_each_store(case, tmp_path, llm, request):
    docs = _docs(tmp_path)
    server = llm(by_turn(ANSWER))
    env: dict[str, str] = {}
    if case == "lancedb-config":
        cfg = _config(tmp_path, server.base_url, "store: {type: lancedb, uri: ./lance, table: kb, writable: true, "
                                                 "embedding: hashing}\n")
        ingest, query = ["--config", str(cfg)], ["--config", str(cfg)]
    elif case == "pgvector-config":
        section, env = _pg_store(tmp_path, True, request)
        cfg = _config(tmp_path, server.base_url, section)
        ingest, query = ["--config", str(cfg)], ["--config", str(cfg)]
    else:
        where = ["--store", "qdrant", "--persist-dir", str(tmp_path / "qdrant"), "--collection", "kb",
                 "--embedding", "hashing"]
        ingest = [*where, "--writable"]
        query = [*where, "--backend", "openai-compatible", "--base-url", server.base_url, "--model", "root-model"]

    added = _run(["ingest", str(docs), *ingest], tmp_path, **env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("ingested 2 files: 2 chunks, 2 added")

    answered = _run(["query", "Where is Acme's new factory?", "-q", *query], tmp_path, **env)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.startswith("Lyon\n") and "lyon.md" in answered.stdout
    assert not (tmp_path / ".deeprecall").exists()  # the named store was used, not the default folder


def test_a_read_only_store_refuses_ingest_by_name_before_connecting(tmp_path):
    docs = _docs(tmp_path)
    proc = _run(["ingest", str(docs), "--store", "lancedb", "--store-url", str(tmp_path / "lance")], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "read-only" in proc.stderr and "writable: true" in proc.stderr and "--writable" in proc.stderr
    assert not (tmp_path / "lance").exists()


@pytest.mark.postgres
def test_config_store_read_only_and_a_secret_in_the_dsn_never_printed(tmp_path, llm, request, pg_dsn):
    docs = _docs(tmp_path)
    section, env = _pg_store(tmp_path, False, request)
    cfg = _config(tmp_path, llm(by_turn(ANSWER)).base_url, section)
    refused = _run(["ingest", str(docs), "--config", str(cfg)], tmp_path, **env)
    assert refused.returncode == 2 and "writable: true" in refused.stderr and "pgvector" in refused.stderr

    secret = "Sekr3t-" + uuid.uuid4().hex[:8]
    bad = pg_dsn.replace("postgres@", f"postgres:{secret}@") + f"?sslmode={secret}"  # the driver quotes sslmode
    failed = _run(["query", "q", "--config", str(cfg)], tmp_path, PG_DSN_FOR_TEST=bad)
    assert failed.returncode == 2 and "sslmode" in failed.stderr
    assert secret not in failed.stderr + failed.stdout and "Traceback" not in failed.stderr


@pytest.fixture
def pg_dsn() -> str:
    """The running PostgreSQL (scripts/services.sh); under make test's DEEPRECALL_REQUIRE_ISOLATION a missing one fails."""
    dsn = os.environ.get("DEEPRECALL_TEST_PG_DSN")
    if not dsn:
        (pytest.fail if skip_guard.required() else pytest.skip)("DEEPRECALL_TEST_PG_DSN is not set "
                                                                "(eval \"$(bash scripts/services.sh env)\")")
    return str(dsn)


def _spec(*argv: str) -> dict[str, object]:
    return store_spec(build_parser().parse_args(["ingest", "docs", *argv])).redacted()


def test_flags_over_the_config_section(tmp_path):
    cfg = tmp_path / "deeprecall.yaml"
    cfg.write_text("store: {type: qdrant, url: 'http://q:6333', collection: kb, text_field: page_content}\n")
    assert _spec() == {"type": "chroma", "collection": "deeprecall", "writable": True, "embedding": "default",
                       "path": "./.deeprecall"}  # no section, no flags: DeepRecall's own folder, as before
    assert _spec("--config", str(cfg), "--collection", "other", "--writable") == {
        "type": "qdrant", "collection": "other", "writable": True, "embedding": "default", "url": "http://q:6333",
        "text_field": "page_content"}
    assert _spec("--config", str(cfg), "--store", "qdrant", "--store-option", "metadata_field=null")[
        "metadata_field"] is None
    assert _spec("--config", str(cfg), "--store", "milvus", "--store-url", "http://m:19530") == {
        "type": "milvus", "collection": "deeprecall", "writable": False, "embedding": "default",
        "uri": "http://m:19530"}  # another kind: the file's qdrant keys do not leak into it
    assert _spec("--store", "pgvector", "--store-url", "postgresql://u:pw@h/db")["dsn"] == "postgresql://u:***@h/db"


def test_bad_store_flags_are_config_errors(tmp_path):
    from deeprecall.errors import ConfigError

    with pytest.raises(ConfigError, match="--persist-dir is for embedded stores"):
        _spec("--store", "pgvector", "--persist-dir", "x")
    with pytest.raises(ConfigError, match="--store-option takes KEY=VALUE"):
        _spec("--store", "qdrant", "--store-option", "oops")
    with pytest.raises(ConfigError, match="does not take"):
        _spec("--store", "qdrant", "--store-option", "table_name=x")


def test_an_unreachable_server_is_one_line_without_the_key(tmp_path, monkeypatch, capsys):
    from deeprecall.interfaces.cli import main

    secret = "qd-" + uuid.uuid4().hex
    monkeypatch.setenv("QDRANT_KEY_FOR_TEST", secret)
    cfg = tmp_path / "deeprecall.yaml"
    cfg.write_text("store: {type: qdrant, url: 'http://127.0.0.1:9', api_key: '${QDRANT_KEY_FOR_TEST}', "
                   "collection: kb, writable: true, embedding: hashing}\n")
    assert main(["ingest", str(_docs(tmp_path)), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deeprecall: QdrantStore('kb')") and "failed" in err and err.count("\n") == 1
    assert secret not in err


def test_flags_read_secrets_from_the_environment(monkeypatch):
    """'${VAR}' (quoted for the shell) keeps a secret out of the process list; DeepRecall reads it."""
    from deeprecall.errors import ConfigError

    monkeypatch.setenv("QDRANT_KEY_FOR_TEST", "12345678")
    monkeypatch.setenv("QDRANT_PORT_FOR_TEST", "6334")
    spec = store_spec(build_parser().parse_args([
        "ingest", "docs", "--store", "qdrant", "--store-url", "http://q:${QDRANT_PORT_FOR_TEST}",
        "--store-option", "api_key=${QDRANT_KEY_FOR_TEST}"]))
    assert spec.options == {"url": "http://q:6334", "api_key": "12345678"}  # a key stays a string
    monkeypatch.delenv("QDRANT_KEY_FOR_TEST")
    with pytest.raises(ConfigError, match=r"--store-option: api_key uses \$\{QDRANT_KEY_FOR_TEST\}"):
        _spec("--store", "qdrant", "--store-option", "api_key=${QDRANT_KEY_FOR_TEST}")
