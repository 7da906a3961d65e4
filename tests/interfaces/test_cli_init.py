"""`deeprecall init`: the file it writes loads, for every store kind; it asks on a terminal and never overwrites."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from deeprecall.config import DeepRecallConfig
from deeprecall.interfaces.cli import build_parser, main
from deeprecall.interfaces.cli_store import store_spec
from deeprecall.vectorstores.spec import KINDS, StoreSpec
from tests.interfaces.test_cli import CLI, clean_env


@pytest.mark.parametrize("kind", KINDS)
def test_the_written_file_loads_for_every_store_kind(kind, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    path = tmp_path / "deeprecall.yaml"
    argv = ["init", "--path", str(path), "--store", kind, "--backend", "openai-compatible", "--model", "m1",
            "--base-url", "http://127.0.0.1:9/v1", "--sandbox", "docker", "--yes"]
    assert main(argv) == 0
    text = path.read_text()
    assert text.count("#") > 10  # commented: says what each section takes

    config = DeepRecallConfig.from_file(path)
    assert (config.backend, config.backend_kwargs["model_name"], config.environment) == ("openai-compatible", "m1",
                                                                                          "docker")
    spec = StoreSpec.from_config_file(path)
    assert spec is not None and spec.kind == kind and spec.collection == "deeprecall"
    assert spec.writable is (kind in ("chroma", "faiss", "lancedb", "milvus"))  # server stores: read-only
    from_cli = store_spec(build_parser().parse_args(["query", "q", "--config", str(path)]))
    assert from_cli == spec


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "deeprecall.yaml"
    path.write_text("mine: true\n")
    assert main(["init", "--path", str(path), "--yes"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert path.read_text() == "mine: true\n"
    assert main(["init", "--path", str(path), "--yes", "--force"]) == 0
    assert StoreSpec.from_config_file(path) == StoreSpec("chroma", writable=True, options={"path": "./.deeprecall"})


def test_without_a_terminal_or_flags_it_asks_for_them(tmp_path):
    proc = subprocess.run([*CLI, "init"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--yes" in proc.stderr and "--store" in proc.stderr
    assert not (tmp_path / "deeprecall.yaml").exists()


def test_a_literal_password_in_the_store_url_is_refused(tmp_path, capsys):
    argv = ["init", "--path", str(tmp_path / "d.yaml"), "--store", "pgvector", "--store-url",
            "postgresql://app:hunter2@db/prod", "--yes"]
    assert main(argv) == 2
    assert "${VAR}" in capsys.readouterr().err and not (tmp_path / "d.yaml").exists()
    argv[6] = "postgresql://app:${DB_PASSWORD}@db/prod"
    assert main(argv) == 0 and "${DB_PASSWORD}" in (tmp_path / "d.yaml").read_text()


def test_asks_on_a_terminal(tmp_path):
    """A real pseudo-terminal: each prompt is answered in turn; an invalid choice is asked again."""
    answers = ["qdrant", "http://qdrant.internal:6333", "kb", "anthropic", "nope", "e2b"]
    out = _converse([*CLI, "init"], tmp_path, answers)
    assert "store (chroma/qdrant/" in out and "choose one of" in out
    spec = StoreSpec.from_config_file(tmp_path / "deeprecall.yaml")
    assert spec == StoreSpec("qdrant", "kb", options={"url": "http://qdrant.internal:6333"})
    config = DeepRecallConfig.from_file(tmp_path / "deeprecall.yaml")
    assert (config.backend, config.backend_kwargs["model_name"], config.environment) == (
        "anthropic", "claude-sonnet-4-6", "e2b")


def _converse(argv: list[str], cwd: Path, answers: list[str]) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=clean_env(),
                            close_fds=True)
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 60
    try:
        for answer in answers:
            prompts = seen.count(b"]: ")
            while seen.count(b"]: ") == prompts and time.monotonic() < deadline:
                seen += _read(leader)
            os.write(leader, answer.encode() + b"\n")
        while proc.poll() is None and time.monotonic() < deadline:
            seen += _read(leader)
        assert proc.wait(timeout=5) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return seen.decode(errors="replace")


def _read(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if not ready:
        return b""
    try:
        return os.read(fd, 4096)
    except OSError:  # the child closed the terminal
        return b""


@pytest.mark.parametrize("backend", ["openai", "anthropic", "llama-cpp", "ollama"])
@pytest.mark.parametrize("sandbox", ["local", "docker", "e2b"])
def test_every_offered_backend_and_sandbox_loads(backend, sandbox, tmp_path):
    path = tmp_path / "deeprecall.yaml"
    argv = ["init", "--path", str(path), "--backend", backend, "--sandbox", sandbox, "--yes"]
    assert main([*argv, *(["--model", "qwen2.5:7b"] if backend == "ollama" else [])]) == 0
    config = DeepRecallConfig.from_file(path)
    assert (config.backend, config.environment) == (backend, sandbox) and config.backend_kwargs["model_name"]
    assert "api_key:" not in path.read_text().replace("# api_key:", "")  # a key is never written, only ${VAR}


def test_a_backend_without_a_default_model_needs_one(tmp_path, capsys):
    assert main(["init", "--path", str(tmp_path / "d.yaml"), "--backend", "ollama", "--yes"]) == 2
    assert "--model is required" in capsys.readouterr().err
