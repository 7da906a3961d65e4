"""The Docker sandbox against a real engine: the container's locks, its removal, its errors.

Marked ``docker``: skipped without an engine, a failure under DEEPRECALL_REQUIRE_DOCKER=1. The docker
package is in the test extra: without it these tests fail (MissingDependencyError), they do not skip.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from deeprecall.errors import ConfigError
from deeprecall.sandboxes import build_sandbox
from deeprecall.sandboxes.protocol import WorkerSession
from deeprecall.testing.scripted_server import by_turn
from tests.sandboxes.support import DOCKER_IMAGE, require_docker

pytestmark = pytest.mark.isolation  # a skip is a failure under DEEPRECALL_REQUIRE_ISOLATION=1


def _ours(api: Any) -> list[dict[str, Any]]:
    return list(api.containers(all=True, filters={"label": [f"deeprecall.pid={os.getpid()}"]}))


def _wait_gone(api: Any, container_id: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api.containers(all=True, filters={"id": container_id}):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.docker
def test_the_container_is_locked_down_and_removed_after_use() -> None:
    require_docker()
    sandbox = build_sandbox("docker", {"image": DOCKER_IMAGE, "memory_mb": 256, "pids_limit": 32, "cpus": 0.5})
    channel = sandbox.start_worker()
    session = WorkerSession(channel)
    session.handshake(30)
    info = sandbox.api.inspect_container(channel.container_id)  # type: ignore[attr-defined]
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and info["Config"]["NetworkDisabled"] is True
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    assert host["Memory"] == 256 << 20 and host["MemorySwap"] == 256 << 20
    assert host["PidsLimit"] == 32 and host["NanoCpus"] == 5 * 10**8
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert info["Config"]["User"] == "65534:65534"
    assert not host.get("PortBindings") and not info["NetworkSettings"].get("Ports")
    assert session.info["protocol"] == 1
    session.kill()
    assert _wait_gone(sandbox.api, channel.container_id)  # type: ignore[attr-defined]
    sandbox.close()


@pytest.mark.docker
def test_engine_close_removes_every_container(llm: Any, make_engine: Any, store: Any) -> None:
    require_docker()
    server = llm({"root-model": by_turn("```repl\nprint(search_db('Acme')[0]['id'])\n```", "FINAL('ok')")})
    engine = make_engine(server, environment="docker", environment_kwargs={"image": DOCKER_IMAGE, "pool_size": 2})
    engine.warm()
    api = engine.sandbox.api
    assert len(_ours(api)) >= 2
    result = engine.query("Anything about Acme?")
    expected = store.search("Acme", 5, None)[0].id  # what search_db in the container must have returned first
    assert result.answer == "ok" and result.steps[0].output.strip() == expected
    engine.close()
    assert _ours(api) == []


@pytest.mark.docker
def test_a_missing_image_is_a_config_error() -> None:
    require_docker()
    with pytest.raises(ConfigError, match="not present"):
        build_sandbox("docker", {"image": "deeprecall-no-such-image:0"})


def test_an_unreachable_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs a running Docker engine"):
        build_sandbox("docker", {"docker_host": "unix:///nonexistent/docker.sock"})


def test_root_in_the_container_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not be root"):
        build_sandbox("docker", {"user": "0:0"})
