"""The host process SIGKILLed with queries in flight (one in a long cell that started a child process, one in a
cell waiting on ``llm_query``): within seconds no worker, no process a cell started, no container and no worker
temporary directory is left. Real parts: a host process running the engine (tests/faults/host_under_kill.py), the
scripted LLM server, the namespace / process sandbox, the Docker engine (its containers found by label)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deeprecall.sandboxes import build_sandbox
from deeprecall.testing.scripted_server import ChatRequest, Reply, ScriptedLLMServer
from tests.conftest import ROOT, SUB
from tests.faults.test_worker_faults import descendants
from tests.sandboxes.support import DOCKER_IMAGE, namespace_tool, processes_matching, require_docker

CHILD = ("import subprocess, sys, time\n"
         "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.2)', {mark!r}])\n"
         "time.sleep(100)")


def root(request: ChatRequest) -> str:
    mark = request.text.split("deeprecall-mark-", 1)[1][:8]
    code = CHILD.format(mark=f"deeprecall-mark-{mark}") if "long cell" in request.text else 'llm_query("hi")'
    return f"Working.\n```repl\n{code}\n```"


def until(check: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def kill_host_mid_query(llm: Callable[..., ScriptedLLMServer], sandbox: dict[str, Any], tmp_path: Path
                        ) -> tuple[int, str, set[int]]:
    """Start the host, wait until both queries are in their cells, SIGKILL it; (its pid, the mark, its processes)."""
    server = llm({ROOT: root, SUB: lambda r: Reply(hang=True)})
    mark = f"deeprecall-mark-{os.urandom(4).hex()}"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    host = subprocess.Popen([sys.executable, "-m", "tests.faults.host_under_kill", json.dumps(sandbox),
                             server.base_url, mark], stdout=subprocess.PIPE, text=True, cwd=os.getcwd(), env=env)
    try:
        assert host.stdout is not None
        line = host.stdout.readline().strip()  # the host exits, closing stdout, if a query ends or fails
        assert line == "ready", f"the host never had both queries in their cells: {line}"
        assert until(lambda: server.calls_for(SUB), 20), "the second query never reached llm_query"
        if sandbox["environment"] == "local":
            assert until(lambda: processes_matching(mark), 20), "the first query's cell never started its child"
        workers = descendants(host.pid)
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    return host.pid, mark, workers


def assert_nothing_left(workers: set[int], mark: str, tmp_path: Path) -> None:
    alive = until(lambda: not (workers & descendants(1) or processes_matching(mark)), 10)
    assert alive, f"outlived the host: workers {workers & descendants(1)}, cell children {processes_matching(mark)}"
    leftovers = until(lambda: not list(tmp_path.iterdir()), 10)
    assert leftovers, f"temporary directories outlived the host: {list(tmp_path.iterdir())}"


@pytest.mark.parametrize("isolation", ["bwrap", "unshare", "process"])
def test_killing_the_host_leaves_no_local_worker_child_or_directory(llm, tmp_path, isolation):
    kwargs: dict[str, Any] = {"isolation": "process"}
    if isolation != "process":
        namespace_tool(isolation)
        kwargs = {"isolation": "namespace", "namespace_tool": isolation}
    _, mark, workers = kill_host_mid_query(llm, {"environment": "local", "kwargs": kwargs}, tmp_path)
    assert workers, "the host had worker processes when it was killed"
    assert_nothing_left(workers, mark, tmp_path)


@pytest.mark.docker
@pytest.mark.isolation
def test_killing_the_host_leaves_no_container(llm, tmp_path):
    require_docker()
    import docker

    api = docker.APIClient()
    sandbox = {"environment": "docker", "kwargs": {"image": DOCKER_IMAGE}}
    pid, mark, workers = kill_host_mid_query(llm, sandbox, tmp_path)
    ours = {"label": [f"deeprecall.pid={pid}"]}
    assert api.containers(all=True, filters=ours), "the host had containers when it was killed"

    def started() -> list[dict[str, Any]]:
        return [c for c in api.containers(all=True, filters=ours) if c["State"] != "created"]

    left = until(lambda: not started(), 15)
    assert left, f"containers outlived the host: {started()}"
    assert_nothing_left(workers, mark, tmp_path)
    # A container the pool had created but not yet started when the host died runs nothing, and nothing is
    # left to remove it: the next docker sandbox on this host does (its sweep of dead owners' containers).
    sandbox_after = build_sandbox("docker", {"image": DOCKER_IMAGE})
    try:
        swept = until(lambda: not api.containers(all=True, filters=ours), 15)
        assert swept, f"the next sandbox's sweep left {api.containers(all=True, filters=ours)}"
    finally:
        sandbox_after.close()
