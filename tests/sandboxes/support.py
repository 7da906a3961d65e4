"""Shared helpers for sandbox and security tests: which sandboxes this machine can run.

Docker tests skip when no engine answers, except under ``DEEPRECALL_REQUIRE_DOCKER=1``
(CI sets it), where a missing engine or image is a failure, not a skip. Namespace tests
likewise skip when namespaces cannot be created, except under ``DEEPRECALL_REQUIRE_ISOLATION=1``
(``make test`` sets it; tests/skip_guard.py also fails any skipped security/isolation test).
"""

from __future__ import annotations

import functools
import os
import sys

import pytest

from deeprecall.sandboxes import isolation
from deeprecall.sandboxes.docker import DEFAULT_IMAGE

DOCKER_IMAGE = os.environ.get("DEEPRECALL_TEST_DOCKER_IMAGE", DEFAULT_IMAGE)


@functools.lru_cache(maxsize=1)
def docker_problem() -> str | None:
    """None if a Docker engine answers and has the sandbox image, else what is missing."""
    try:
        import docker
    except ImportError:
        return "the docker package is not installed (pip install 'deeprecall[docker]')"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:
        return f"no Docker engine answers ({e}); run scripts/services.sh docker"
    try:
        client.images.get(DOCKER_IMAGE)
    except Exception:
        return f"image {DOCKER_IMAGE} is missing; run scripts/services.sh docker"
    return None


def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("DEEPRECALL_REQUIRE_DOCKER") == "1":
        pytest.fail(f"DEEPRECALL_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def namespace_tool(tool: str = "auto") -> str:
    """The namespace tool that works here, or skip (a failure under DEEPRECALL_REQUIRE_ISOLATION=1)."""
    found = isolation.detect(sys.executable, tool)
    if not found.available:
        if os.environ.get("DEEPRECALL_REQUIRE_ISOLATION") == "1":
            pytest.fail(f"DEEPRECALL_REQUIRE_ISOLATION=1 but namespace isolation is unavailable: {found.reason}",
                        pytrace=False)
        pytest.skip(f"namespace isolation unavailable: {found.reason}")
    assert found.tool is not None
    return found.tool


def processes_matching(needle: str) -> list[int]:
    """Host PIDs whose command line contains ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:") and int(line.split()[1]) == uid:
                        found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie or a dying process counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
