"""Workers forked from the warmed template: what a user of the local sandbox relies on beyond the security suite.

The template is replaced if it dies, ends with the sandbox, hands each worker only its own pipes, and a worker
runs only the worker code the host sends (a template left over from another version refuses)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from deeprecall.errors import SandboxError
from deeprecall.sandboxes.local import LocalSandbox
from deeprecall.sandboxes.protocol import ToolRefused, WorkerSession
from tests.sandboxes.support import alive, namespace_tool

pytestmark = pytest.mark.isolation  # a skip is a failure under DEEPRECALL_REQUIRE_ISOLATION=1


@pytest.fixture
def sandbox() -> Iterator[LocalSandbox]:
    namespace_tool()
    box = LocalSandbox(isolation="namespace", worker_start="zygote", pool_size=0)
    yield box
    box.close()


def started(box: LocalSandbox) -> WorkerSession:
    session = WorkerSession(box.start_worker())
    session.handshake(30)
    session.init(context={}, handler=lambda fn, args: None, output_cap=10_000, limits=box.settings.limits())
    return session


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_worker_holds_only_its_own_pipes(sandbox: LocalSandbox) -> None:
    session = started(sandbox)
    assert sandbox._zygote is not None and sandbox._zygote_off is None  # forked, not exec'd
    code = ("import os\nfor f in os.listdir('/proc/self/fd'):\n"
            "    try:\n        print(os.readlink('/proc/self/fd/' + f))\n    except OSError:\n        pass")
    cell = session.execute(code, timeout=10)
    out = cell.stdout + cell.stderr
    session.kill()
    assert "socket:" not in out and out.count("pipe:") >= 3, out  # no control socket, no other worker's pipe


def test_a_killed_template_is_replaced_and_the_next_worker_starts(sandbox: LocalSandbox) -> None:
    started(sandbox).kill()
    assert sandbox._zygote is not None
    first = sandbox._zygote.template_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert gone(first)
    session = started(sandbox)
    assert session.execute("print(6 * 7)", timeout=10).stdout.strip() == "42"
    session.kill()
    assert sandbox._zygote.template_pid not in (None, first)


def test_closing_the_sandbox_ends_the_template_and_its_workers(sandbox: LocalSandbox) -> None:
    session = started(sandbox)
    worker = session._channel.pid  # type: ignore[attr-defined]
    assert sandbox._zygote is not None
    template = sandbox._zygote.template_pid
    assert template is not None
    sandbox.close()
    assert gone(template) and gone(worker)


def test_a_worker_refuses_code_other_than_the_templates(sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    started(sandbox).kill()  # the template holds this version's worker
    monkeypatch.setattr("deeprecall.sandboxes.protocol.worker_source", lambda: b"# another version\n" * 900)
    session = WorkerSession(sandbox.start_worker())
    with pytest.raises(SandboxError, match="different worker"):
        session.handshake(10)


def test_workers_start_and_end_when_the_host_holds_more_than_1024_descriptors(sandbox: LocalSandbox) -> None:
    """A busy host (a server with many pooled workers and clients) passes fd 1024; select() cannot watch past it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        session = started(sandbox)
        assert session.execute("print('ok')", timeout=10).stdout.strip() == "ok"
        session.kill()  # raised "filedescriptor out of range in select()" before
        assert gone(session._channel.pid)  # type: ignore[attr-defined]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("route", ["zygote", "exec"])
def test_the_model_reads_the_same_tool_error_whichever_way_its_worker_started(route: str) -> None:
    namespace_tool()
    box = LocalSandbox(isolation="namespace", worker_start=route, pool_size=0)

    def refuse(fn: str, args: dict[str, object]) -> None:
        raise ToolRefused("the store is down")

    session = WorkerSession(box.start_worker())
    try:
        session.handshake(30)
        session.init(context={}, handler=refuse, output_cap=10_000, limits=box.settings.limits())
        stderr = session.execute("search_db('x')", timeout=10).stderr
    finally:
        session.kill()
        box.close()
    assert stderr.splitlines()[-1] == "ToolError: the store is down", stderr


def test_the_template_forks_each_worker_into_fresh_namespaces_and_stays_in_its_own(sandbox: LocalSandbox) -> None:
    """As root the template enters a worker's namespaces to fork it, then goes back (setns): were it left in
    them, the next worker's namespaces, or the template itself, would be shared with the last worker."""
    kinds = ("mnt", "net", "ipc", "uts", "pid_for_children", "cgroup")
    first = started(sandbox)
    assert sandbox._zygote is not None and sandbox._zygote.template_pid is not None
    template = sandbox._zygote.template_pid

    def links(pid: int) -> dict[str, str]:
        return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in kinds
                if os.path.exists(f"/proc/{pid}/ns/{kind}")}

    home = links(template)
    workers = [first, started(sandbox), started(sandbox)]
    seen = [links(w._channel.pid) for w in workers]  # type: ignore[attr-defined]
    assert links(template) == home  # the template is back in its own namespaces after every fork
    for kind in ("mnt", "net", "ipc", "uts"):
        values = [s[kind] for s in seen]
        assert len(set(values)) == 3 and home[kind] not in values, (kind, values, home[kind])
    for w in workers:
        w.kill()
