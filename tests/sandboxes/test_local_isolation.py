"""The local sandbox's isolation modes: what each one holds, and how it falls back."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from deeprecall.errors import ConfigError
from deeprecall.sandboxes import build_sandbox, isolation, local
from deeprecall.sandboxes.local import LocalSandbox
from deeprecall.testing.scripted_server import by_turn
from tests.sandboxes.support import alive, namespace_tool, processes_matching

pytestmark = pytest.mark.isolation  # a skip is a failure under DEEPRECALL_REQUIRE_ISOLATION=1

PROBE = """```repl
import os, json, socket
res = {'uid': os.getuid(), 'root': sorted(os.listdir('/')), 'cwd': os.getcwd(), 'tmp': os.listdir('/tmp'),
       'hits': [h['id'] for h in search_db('Acme revenue')][:1], 'secret_env': os.environ.get('DR_LOCAL_SECRET')}
try:
    socket.create_connection(('127.0.0.1', 1), timeout=0.5)
    res['net'] = 'ok'
except OSError as e:
    res['net'] = type(e).__name__
try:
    res['host_file'] = open(<<path>>).read()
except OSError as e:
    res['host_file'] = type(e).__name__
print('RESULT ' + json.dumps(res))
```"""


def _probe(llm: Any, make_engine: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> dict[str, Any]:
    secret_file = tmp_path / "host.txt"
    secret_file.write_text("host data")
    monkeypatch.setenv("DR_LOCAL_SECRET", "host env value")
    code = PROBE.replace("<<path>>", repr(str(secret_file)))
    server = llm({"root-model": by_turn(code, "FINAL('done')")})
    engine = make_engine(server, environment_kwargs={"pool_size": 0, **kwargs})
    result = engine.query("probe")
    assert result.answer == "done", result.error_message
    line = next(x for x in result.steps[0].output.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT "):]))


ROUTES = ["bwrap", "unshare", "zygote"]  # exec through each tool, and forks of the warmed template (the default)


def route_kwargs(route: str) -> dict[str, str]:
    """environment_kwargs that start namespace workers by ``route``; skips (fails under make test) if it cannot."""
    if route == "zygote":
        namespace_tool()
        return {"isolation": "namespace", "worker_start": "zygote"}
    namespace_tool(route)
    return {"isolation": "namespace", "namespace_tool": route, "worker_start": "exec"}


@pytest.mark.parametrize("route", ROUTES)
def test_namespace_tools_hold_and_search_db_works(route: str, llm: Any, make_engine: Any, tmp_path: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    res = _probe(llm, make_engine, tmp_path, monkeypatch, **route_kwargs(route))
    assert res["hits"] == ["doc0"]
    assert res["uid"] != 0 and res["cwd"] == "/tmp" and res["tmp"] == []
    assert res["net"] != "ok" and res["host_file"] != "host data" and res["secret_env"] is None
    assert set(res["root"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin",
                                "tmp", "usr", "opt", "home"}


def test_process_isolation_scrubs_the_environment_but_not_files_or_network(llm: Any, make_engine: Any, tmp_path: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/sandboxes.md says "process" does not protect: host files are readable."""
    res = _probe(llm, make_engine, tmp_path, monkeypatch, isolation="process")
    assert res["hits"] == ["doc0"] and res["secret_env"] is None
    assert res["host_file"] == "host data"


def test_no_isolation_shares_the_host_environment(llm: Any, make_engine: Any, tmp_path: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/sandboxes.md says "none" does not protect: env vars (secrets) and files."""
    res = _probe(llm, make_engine, tmp_path, monkeypatch, isolation="none")
    assert res["secret_env"] == "host env value" and res["host_file"] == "host data"


def test_auto_falls_back_to_process_with_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    unavailable = isolation.Isolation(None, "no namespaces in this test", sys.executable)
    monkeypatch.setattr(isolation, "detect", lambda python, tool="auto": unavailable)
    monkeypatch.setattr(local, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="deeprecall"):
        first, second = LocalSandbox(), LocalSandbox()
    assert first.mode == second.mode == "process"
    warnings = [r for r in caplog.records if "falling back to process isolation" in r.getMessage()]
    assert len(warnings) == 1 and "no namespaces in this test" in warnings[0].getMessage()
    with pytest.raises(ConfigError, match="isolation='namespace' is not available"):
        LocalSandbox(isolation="namespace")


def test_limits_follow_the_mode() -> None:
    assert "max_processes" in LocalSandbox(isolation="namespace", namespace_tool=namespace_tool()).settings.limits()
    assert "max_processes" not in LocalSandbox(isolation="process").settings.limits()
    assert LocalSandbox(isolation="none").settings.limits() == {}


def test_unknown_or_bad_kwargs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="isolaton"):
        build_sandbox("local", {"isolaton": "namespace"})
    with pytest.raises(ConfigError, match="isolation"):
        build_sandbox("local", {"isolation": "chroot"})


HOST_SCRIPT = """
import json, sys, threading, time
from deeprecall.sandboxes.local import LocalSandbox
from deeprecall.sandboxes.protocol import WorkerSession
sandbox = LocalSandbox(**json.loads(sys.argv[1]))
session = WorkerSession(sandbox.start_worker())
session.handshake(30)
session.init(context={}, handler=lambda fn, args: None, output_cap=1000, limits=sandbox.settings.limits())
code = ("import subprocess, sys\\n"
        "subprocess.Popen([sys.executable, '-c', 'import time\\\\nwhile True: time.sleep(0.2)', %r], start_new_session=True)")
print(session.execute(code % sys.argv[2], timeout=10).stderr, flush=True)
# Then hold the worker's GIL in C (no bytecode runs, so its stdin reader never sees the host go): only the
# death signals (bwrap's --die-with-parent, the zygote's chain) can end it.
threading.Thread(target=session.execute, args=("sum(range(10**15))",), kwargs={"timeout": 600}, daemon=True).start()
time.sleep(0.5)
zygote = getattr(sandbox, "_zygote", None)
print("template", zygote.template_pid if zygote else "", flush=True)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("route", ROUTES)
def test_the_sandbox_dies_when_the_host_is_killed(route: str) -> None:
    """SIGKILL the host mid-query: nothing the worker started survives it (nor the template)."""
    kwargs = json.dumps(route_kwargs(route))
    mark = f"deeprecall-orphan-{os.urandom(4).hex()}"
    host = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOST_SCRIPT), kwargs, mark],
                            stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert host.stdout is not None
        template = None
        for line in host.stdout:
            if line.startswith("template "):
                template = int(line.split()[1]) if line.split()[1:] else None
            if line.strip() == "ready":
                break
        assert (template is not None) == (route == "zygote")
        deadline = time.monotonic() + 10
        while not processes_matching(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_matching(mark), "the escapee never started"
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.monotonic() + 10
    while (processes_matching(mark) or (template and alive(template))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_matching(mark)
    assert not (template and alive(template)), "the worker template outlived the host"

