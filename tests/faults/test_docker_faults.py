"""The Docker engine killed and restarted while the pool holds containers (and a query holds one, mid-turn):
queries fail with a clean ``sandbox_failed`` naming Docker (no traceback, no wait past the configured timeouts), and after the engine is
back the same engine object answers again and leaves no container behind. Real parts: a private dockerd (its own
data root, exec root, containerd and socket: the shared engine other tests use is never touched), the sandbox
image copied into it, the scripted LLM server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from deeprecall.testing.scripted_server import ChatRequest
from tests.conftest import ROOT
from tests.faults.private_services import PrivateDockerd, dockerd_problem, require
from tests.sandboxes.support import DOCKER_IMAGE, require_docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

ANSWER = 'Done.\n```repl\nanswer["content"] = "answered in a container"\nanswer["ready"] = True\n```'
START_TIMEOUT = 10.0


@pytest.fixture
def dockerd() -> Iterator[PrivateDockerd]:
    require_docker()  # the image comes from the shared engine
    require(dockerd_problem())
    engine = PrivateDockerd()
    try:
        engine.start()
        engine.load(DOCKER_IMAGE)
        yield engine
    finally:
        engine.close()


def ours(dockerd: PrivateDockerd) -> list[str]:
    import os

    run = dockerd.docker("ps", "-a", "--filter", f"label=deeprecall.pid={os.getpid()}", "--format",
                         "{{.ID}} {{.Status}}")
    return run.stdout.splitlines()


def test_docker_engine_killed_and_restarted_under_a_warm_pool(dockerd, llm, make_engine):
    """``dockerd`` first: it is torn down last, after the engine (whose pool could still be starting containers)."""
    killed: list[bool] = []

    def root(request: ChatRequest) -> str:
        if "mid-query" in request.text and not killed:  # its first turn: it holds its container; the engine dies
            dockerd.kill()
            killed.append(True)
            return 'Working.\n```repl\nprint("still here")\n```'
        return ANSWER

    server = llm({ROOT: root})
    engine = make_engine(server, subs=(), max_seconds=60, environment="docker",
                         environment_kwargs={"image": DOCKER_IMAGE, "docker_host": dockerd.url, "pool_size": 2,
                                             "start_timeout": START_TIMEOUT})
    engine.warm()
    assert len(ours(dockerd)) == 2, "the pool holds two containers"
    assert engine.query("before").answer == "answered in a container"

    for question in ("the engine dies mid-query", "while the engine is down"):
        start = time.monotonic()
        result: Any = engine.query(question)
        took = time.monotonic() - start
        assert result.error == "sandbox_failed", (result.error, result.error_message)
        message = result.error_message or ""
        assert "docker" in message.lower() and "Traceback" not in message, message
        assert took < START_TIMEOUT + 5, f"the query took {took:.1f}s with the engine down"
    assert killed == [True], "the engine died while the first query held its container"

    dockerd.start()
    start = time.monotonic()
    again = engine.query("the engine is back")
    assert again.error is None and again.answer == "answered in a container", (again.error, again.error_message)
    assert time.monotonic() - start < 30
    engine.close()
    deadline = time.monotonic() + 20
    while (left := ours(dockerd)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"containers of ours outlived engine.close(): {left}"
