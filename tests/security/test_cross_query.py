"""Two queries at once, each one's code trying to reach the other's worker (and, local, the worker template).

Each worker leaves a file in its /tmp, listens on an abstract unix socket and on a loopback TCP port, creates a
SysV shared-memory segment, then for two seconds looks for the other's; it also tries to signal, ptrace and
read the memory of every worker pid and the template pid the host knows. Its own file, sockets and segment are
checked the same way as a control, so a probe that cannot see anything at all would fail the test.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.security.conftest import Arena, Outcome
from tests.security.test_hostile_code import fill

pytestmark = pytest.mark.security  # a skip is a failure under DEEPRECALL_REQUIRE_ISOLATION=1

PORTS = {"a": 47311, "b": 47312}
KEYS = {"a": 0x5EC0A, "b": 0x5EC0B}
REACH = """
import ctypes, errno, json, os, socket, time
me, peer, pids, ports, keys = <<me>>, <<peer>>, <<pids>>, <<ports>>, <<keys>>
libc = ctypes.CDLL(None, use_errno=True)
res = {'uid': os.getuid(), 'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), 'start': time.time()}
open('/tmp/mark-' + me, 'w').write(me)
listeners = []
u = socket.socket(socket.AF_UNIX); u.bind('\\0deeprecall-cross-' + me); u.listen(); listeners.append(u)
t = socket.socket(); t.bind(('127.0.0.1', ports[me])); t.listen(); listeners.append(t)
res['shm_made'] = libc.shmget(keys[me], 4096, 0o1600) != -1
def err(fn):
    try:
        fn()
        return 'reached'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def ptrace(pid):
    if libc.ptrace(16, pid, 0, 0) == -1:
        raise OSError(ctypes.get_errno(), 'ptrace')
res['pids'] = {str(p): {'kill': err(lambda: os.kill(p, 0)), 'ptrace': err(lambda: ptrace(p)),
                        'mem': err(lambda: open('/proc/%d/mem' % p, 'rb').close())} for p in pids}
def sees(who):
    found = {'file': os.path.exists('/tmp/mark-' + who)}
    found['unix'] = err(lambda: socket.socket(socket.AF_UNIX).connect('\\0deeprecall-cross-' + who)) == 'reached'
    found['tcp'] = err(lambda: socket.create_connection(('127.0.0.1', ports[who]), timeout=0.2).close()) == 'reached'
    found['shm'] = libc.shmget(keys[who], 0, 0) != -1
    return found
res['self'] = sees(me)
res['peer'] = {}
deadline = time.time() + 2.2
while time.time() < deadline:
    for k, v in sees(peer).items():
        res['peer'][k] = res['peer'].get(k, False) or v
    time.sleep(0.1)
res['end'] = time.time()
print('RESULT ' + json.dumps(res))
"""


def worker_and_template_pids(arena: Arena) -> list[int]:
    """Host pids of the pool's idle workers (the two queries will take them) and of the worker template."""
    pool: Any = arena.engine._pool  # type: ignore[attr-defined]
    pids = [pid for s in list(pool._idle) if isinstance(pid := getattr(s._channel, "pid", None), int)]
    zygote = getattr(arena.engine.sandbox, "_zygote", None)  # type: ignore[attr-defined]
    if zygote is not None and zygote.template_pid:
        pids.append(zygote.template_pid)
    return pids


def test_two_concurrent_queries_cannot_reach_each_other(arena: Arena) -> None:
    arena.engine.warm()
    pids = worker_and_template_pids(arena)
    if arena.kind == "local":
        sandbox: Any = arena.engine.sandbox  # type: ignore[attr-defined]
        assert sandbox._zygote is not None and sandbox._zygote_off is None, "the local workers are not forked"
        assert len(pids) == 3, pids  # two idle workers and the template
    outcomes: dict[str, Outcome] = {}

    def ask(me: str, peer: str) -> None:
        code = fill(REACH, me=me, peer=peer, pids=pids, ports=PORTS, keys=KEYS)
        outcomes[me] = arena.ask(f"cross-{me}", code, f"FINAL('{me} done')")

    threads = [threading.Thread(target=ask, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    reports = {}
    for me in ("a", "b"):
        arena.assert_held(outcomes[me])
        assert outcomes[me].result.answer == f"{me} done"
        reports[me] = outcomes[me].report()
    a, b = reports["a"], reports["b"]
    assert min(a["end"], b["end"]) - max(a["start"], b["start"]) > 1, "the two workers did not run at the same time"
    for me, report in reports.items():
        # The local worker's loopback is down (no network at all); the abstract unix socket, scoped to the network
        # namespace like loopback, is the check there.
        own_tcp = arena.kind != "local"
        assert report["self"] == {"file": True, "unix": True, "tcp": own_tcp, "shm": True}, (me, report["self"])
        assert report["peer"] == {"file": False, "unix": False, "tcp": False, "shm": False}, (me, report["peer"])
        for pid, tries in report["pids"].items():
            assert "reached" not in tries.values(), (me, pid, tries)
        if arena.kind == "local":
            assert report["procs"] == [1], report["procs"]  # only itself: no other worker, no template
    if arena.kind == "local":
        assert a["uid"] != b["uid"] and 0 not in (a["uid"], b["uid"])
