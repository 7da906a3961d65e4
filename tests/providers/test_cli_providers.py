"""`deeprecall providers`: keys reported set/unset (never shown), local servers probed for real."""

from __future__ import annotations

import argparse
import json
import socket
import time

from deeprecall.interfaces import cli_providers
from deeprecall.providers.discovery import discover_local


def run(capsys, *argv):
    parser = argparse.ArgumentParser()
    cli_providers.add_parser(parser.add_subparsers())
    args = parser.parse_args(["providers", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_lists_every_provider_and_never_prints_a_key(capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-very-secret-value")
    out = run(capsys, "--no-probe")
    assert "sk-ant-very-secret-value" not in out
    assert "key set (ANTHROPIC_API_KEY)" in out and "no key: set OPENAI_API_KEY" in out
    for pid in ("ollama", "vllm", "openrouter", "nvidia", "zenmux", "kimi-code", "azure_openai", "vercel", "portkey"):
        assert f"  {pid} " in out


def test_local_servers_that_answer_are_found_with_their_models(llm, monkeypatch, capsys):
    ollama = llm({"qwen2.5-coder:7b": lambda r: "x", "llama3.2:3b": lambda r: "y"})
    vllm = llm({"meta-llama/Llama-3-70b": lambda r: "z"})
    monkeypatch.setenv("OLLAMA_HOST", ollama.root_url)
    monkeypatch.setenv("VLLM_BASE_URL", vllm.base_url)
    for var in ("LMSTUDIO_BASE_URL", "SGLANG_BASE_URL", "TGI_BASE_URL", "MLX_BASE_URL", "LLAMACPP_BASE_URL",
                "OPENAI_COMPATIBLE_BASE_URL"):
        monkeypatch.setenv(var, "http://127.0.0.1:9/v1")  # the discard port: nothing listens
    found = {s.provider: s for s in discover_local(timeout=0.5)}
    assert found["ollama"].up and found["ollama"].models == ["qwen2.5-coder:7b", "llama3.2:3b"]
    assert found["vllm"].up and found["vllm"].models == ["meta-llama/Llama-3-70b"]
    assert not found["lmstudio"].up and not found["tgi"].up
    rows = json.loads(run(capsys, "--json", "--local", "--timeout", "0.5"))
    assert {r["id"] for r in rows} == {"ollama", "lmstudio", "vllm", "sglang", "tgi", "mlx", "llama-cpp", "openai-compatible"}
    assert next(r for r in rows if r["id"] == "ollama")["status"].startswith("up: 2 model(s)")


def test_servers_that_never_answer_cost_one_timeout_in_all(monkeypatch):
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        for i, var in enumerate(("OLLAMA_HOST", "LMSTUDIO_BASE_URL", "VLLM_BASE_URL", "SGLANG_BASE_URL", "TGI_BASE_URL")):
            monkeypatch.setenv(var, f"http://127.0.0.1:{port}/v{i}")
        start = time.monotonic()
        found = {s.provider: s for s in discover_local(timeout=0.3)}
        assert time.monotonic() - start < 1.5
        assert not found["ollama"].up and not found["vllm"].up
