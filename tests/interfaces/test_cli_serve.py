"""``deeprecall serve`` as a real subprocess from a config file (scripted LLM, a Chroma folder, the real
sandbox): it answers, /healthz checks its parts, and SIGTERM shuts it down gracefully: a query in flight
finishes within the grace period, one that would outlast it is cancelled, and no worker survives."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from deeprecall.embeddings import HashingEmbedding
from deeprecall.server.auth import hash_key
from deeprecall.testing.scripted_server import Reply, by_turn
from deeprecall.vectorstores.chroma import ChromaStore
from tests.conftest import DOCS, ROOT, SUB, free_port
from tests.engine.test_cancel import group_alive, wait_until
from tests.engine.test_query import repl
from tests.interfaces.test_cli import CLI, clean_env
from tests.sandboxes.support import alive

KEY = "dr-test-key-for-serve-0123456789"
DONE = repl('answer["content"] = "Lyon"\nanswer["ready"] = True')
SLEEPY = repl('import time\ntime.sleep(60)')


def write_config(tmp_path: Path, llm_url: str, grace: float) -> Path:
    store = ChromaStore("docs", persist_directory=str(tmp_path / "chroma"), embedding_fn=HashingEmbedding())
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    config = {
        "backends": {"root": {"type": "vllm", "model_name": ROOT, "base_url": llm_url, "max_retries": 0},
                     "sub": {"type": "vllm", "model_name": SUB, "base_url": llm_url, "max_retries": 0}},
        "root": "root", "sub_backends": ["sub"], "sandbox": {"type": "local", "pool_size": 1},
        "store": {"type": "chroma", "path": str(tmp_path / "chroma"), "collection": "docs", "embedding": "hashing"},
        "server": {"keys": [{"name": "acme", "key_sha256": hash_key(KEY), "filters": {"tenant": "acme"}}],
                   "shutdown_grace_seconds": grace},
    }
    path = tmp_path / "deeprecall.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def start(tmp_path: Path, llm_url: str, grace: float = 10) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--config", str(write_config(tmp_path, llm_url, grace)), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            return httpx.get(f"{url}/v1/models", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "deeprecall serve listening")
    return proc, url


def workers_of(pid: int) -> list[int]:
    """The server's child processes (each sandbox worker leads its own process group)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:  # a thread can end between the listing and the read
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def stream(url: str, question: str) -> Any:
    return httpx.stream("POST", f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                        json={"model": "x", "stream": True, "messages": [{"role": "user", "content": question}]})


def test_serve_answers_and_reports_health(tmp_path, llm):
    server = llm({ROOT: by_turn(DONE), SUB: lambda r: "sub"})
    proc, url = start(tmp_path, server.base_url)
    try:
        health = httpx.get(f"{url}/healthz", timeout=30)
        reply = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                           json={"model": "x", "messages": [{"role": "user", "content": "Where is Acme's factory?"}]})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert health.status_code == 200, health.text
    checks = health.json()["checks"]
    assert checks["store"]["documents"] == len(DOCS) and checks["sandbox"]["environment"] == "local"
    assert checks["provider"]["reachable"] is True and checks["provider"]["model"] == ROOT
    assert reply.json()["choices"][0]["message"]["content"] == "Lyon"
    assert proc.returncode in (0, -signal.SIGTERM) and KEY not in out + err and "Traceback" not in err


def test_sigterm_lets_a_query_in_flight_finish(tmp_path, llm):
    server = llm({ROOT: by_turn(Reply(DONE, delay=2.0)), SUB: lambda r: "sub"})
    proc, url = start(tmp_path, server.base_url, grace=10)
    with stream(url, "Where is Acme's factory?") as response:
        lines = response.iter_lines()
        next(lines)  # the query runs
        wait_until(lambda: len(server.requests) == 1, 10, "the model asked")
        workers = workers_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rest = "\n".join(lines)
    assert '"content":"Lyon"' in rest and rest.strip().endswith("data: [DONE]")
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert workers
    all_gone(workers)


def test_sigterm_cancels_a_query_outlasting_the_grace_period(tmp_path, llm):
    server = llm({ROOT: by_turn(SLEEPY, DONE), SUB: lambda r: "sub"})
    proc, url = start(tmp_path, server.base_url, grace=1)
    with stream(url, "Where is Acme's factory?") as response:
        lines = response.iter_lines()
        for line in lines:
            if "cell 1" in line:
                break
        workers = workers_of(proc.pid)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rest = "\n".join(lines)
        except httpx.RemoteProtocolError:  # the stream is cut when uvicorn cancels its task: no [DONE]
            rest = ""
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
        took = time.monotonic() - sent
    assert "[DONE]" not in rest and took < 8, took
    assert workers
    all_gone(workers)
    assert len(server.requests) == 1


def test_key_helpers_and_config_errors_are_one_line(tmp_path):
    made = subprocess.run([*CLI, "serve", "--new-key"], capture_output=True, text=True, env=clean_env(), timeout=60)
    key = made.stdout.split("key:", 1)[1].split()[0]
    assert made.returncode == 0 and f"key_sha256: {hash_key(key)}" in made.stdout
    hashed = subprocess.run([*CLI, "serve", "--hash-key"], input=key + "\n", capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert hashed.stdout.strip() == f"key_sha256: {hash_key(key)}"
    no_config = subprocess.run([*CLI, "serve"], capture_output=True, text=True, env=clean_env(), timeout=60, cwd=tmp_path)
    assert no_config.returncode == 2 and "needs --config" in no_config.stderr
    config = tmp_path / "deeprecall.yaml"
    config.write_text("backend: vllm\nbackend_kwargs: {model_name: m, base_url: 'http://127.0.0.1:9/v1'}\nserver: {}\n")
    no_keys = subprocess.run([*CLI, "serve", "--config", str(config)], capture_output=True, text=True, env=clean_env(),
                             timeout=60, cwd=tmp_path)
    assert no_keys.returncode == 2 and "server.keys is empty" in no_keys.stderr and "Traceback" not in no_keys.stderr


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in workers_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def test_serve_with_two_worker_processes_answers_and_leaves_nothing_behind(tmp_path, llm):
    server = llm({ROOT: by_turn(DONE), SUB: lambda r: "sub"})
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--config", str(write_config(tmp_path, server.base_url, 5)), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(), cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                reply = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                                   json={"model": "x", "messages": [{"role": "user", "content": "Where?"}]})
            except httpx.TransportError:
                return False
            return bool(reply.json()["choices"][0]["message"]["content"] == "Lyon")

        wait_until(answers, 90, "two workers serving")
        assert all(answers() for _ in range(4))
        wait_until(lambda: len(workers_of(proc.pid)) >= 2, 30, "both worker processes up")
        family = descendants(proc.pid)  # the worker processes and their sandbox workers
        # glibc's arenas are capped in the server's processes (docs/server.md#memory-over-time)
        environ = Path(f"/proc/{workers_of(proc.pid)[0]}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_ARENA_MAX=2" in environ
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "each process counts the keys' limits on its own" in err  # no redis_url: the warning
    assert len(family) >= 4
    all_gone(family)


def all_gone(pids: list[int]) -> None:
    """No process of ``pids`` nor of their groups is left. A sandboxed process is killed by the kernel when its
    namespace's init dies, and its exit can trail the server's by milliseconds (seen in CI), so this is checked
    over a short window, not at one instant."""
    wait_until(lambda: not any(alive(p) or group_alive(p) for p in pids), 5, f"the server's processes {pids} gone")

