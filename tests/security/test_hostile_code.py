"""Hostile model code against the real engine, in local (namespace isolation) and docker.

Every case must end within the bound with an answer or a clean typed error,
leave the host running, leak no secret and change nothing outside the sandbox.
The "model" is the scripted LLM server; its ```repl blocks are the attack.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.sandboxes.support import processes_matching, processes_of_uid
from tests.security.conftest import CELL_TIMEOUT, OUTPUT_CAP, Arena

pytestmark = pytest.mark.security  # a skip is a failure under DEEPRECALL_REQUIRE_ISOLATION=1

FIND_WORKER = "import gc\nw = next(o for o in gc.get_objects() if type(o).__name__ == 'Worker')\n"


def fill(code: str, **values: object) -> str:
    for key, value in values.items():
        code = code.replace(f"<<{key}>>", repr(value))
    return code


def wait_until(check, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


# -- secrets -------------------------------------------------------------------
ENV_AND_PROC = """
import os, re, json, glob
blob = [json.dumps(dict(os.environ))]
for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline') + ['/proc/1/root/proc/1/environ']:
    try:
        blob.append(open(p, 'rb').read().decode('latin-1'))
    except Exception:
        pass
import gc
blob += [o for o in gc.get_objects() if isinstance(o, str)]
found = re.findall(r'(?:drsecret-|sk-deeprecallfake|drfile-)[0-9a-f]{16}', '\\n'.join(blob))
print('RESULT ' + json.dumps({'found': found, 'env_keys': sorted(os.environ)}))
"""


def test_host_environment_and_api_keys_stay_out(arena: Arena, caplog: pytest.LogCaptureFixture) -> None:
    out = arena.ask("env", ENV_AND_PROC, "FINAL('looked around')")
    arena.assert_held(out)
    report = out.report()
    assert report["found"] == []
    assert set(report["env_keys"]) <= {"PATH", "LANG", "PYTHONDONTWRITEBYTECODE", "HOME", "TMPDIR", "PWD", "HOSTNAME",
                                       "MALLOC_ARENA_MAX"}
    arena.assert_no_leak(out, caplog)


READ_FILES = """
import os, json
got, listing = {}, {}
for p in <<paths>>:
    try:
        got[p] = open(p).read(200)
    except Exception as e:
        got[p] = 'ERR ' + type(e).__name__
for d in ['/home', '/root', '/work', <<host_dir>>, <<store_dir>>]:
    try:
        listing[d] = os.listdir(d)
    except Exception as e:
        listing[d] = 'ERR ' + type(e).__name__
print('RESULT ' + json.dumps({'read': got, 'listing': listing}))
"""


def test_host_files_are_invisible(arena: Arena, caplog: pytest.LogCaptureFixture) -> None:
    repo_file = os.path.abspath("pyproject.toml")
    paths = [os.path.join(arena.host_dir, "secret.txt"), arena.home_file, repo_file, "/etc/shadow",
             os.path.join(arena.store_dir, "chroma.sqlite3")]
    out = arena.ask("files", fill(READ_FILES, paths=paths, host_dir=arena.host_dir, store_dir=arena.store_dir),
                    "FINAL('read nothing')")
    arena.assert_held(out)
    report = out.report()
    for path in paths:
        assert report["read"][path].startswith("ERR"), (path, report["read"][path])
    for folder in (arena.host_dir, arena.store_dir):
        assert str(report["listing"][folder]).startswith("ERR")
    assert not report["listing"]["/home"] or str(report["listing"]["/home"]).startswith("ERR")
    arena.assert_no_leak(out, caplog)


WRITE_FILES = """
import json
res = {}
for t in <<targets>>:
    try:
        with open(t, 'w') as f:
            f.write('pwned')
        res[t] = 'written inside the sandbox'
    except Exception as e:
        res[t] = 'ERR ' + type(e).__name__
print('RESULT ' + json.dumps(res))
"""


def test_writes_never_reach_the_host(arena: Arena) -> None:
    home = os.path.expanduser("~")
    targets = [os.path.join(arena.host_dir, "escape.txt"), f"/tmp/deeprecall-escape-{arena.token}",
               os.path.abspath(f"escape-{arena.token}"), f"/usr/escape-{arena.token}",
               os.path.join(home, f"escape-{arena.token}"), os.path.join(arena.store_dir, "escape")]
    out = arena.ask("write", fill(WRITE_FILES, targets=targets), "FINAL('wrote')")
    arena.assert_held(out)
    assert set(out.report()) == set(targets)  # every write was attempted
    for target in targets:
        assert not os.path.exists(target), f"{arena.kind}: the sandbox wrote {target} on the host"


# -- network -------------------------------------------------------------------
NETWORK = """
import socket, json, urllib.request
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = 'ok'
    except Exception as e:
        res[name] = 'ERR ' + type(e).__name__
body = json.dumps({'model': 'escape-attempt', 'messages': [{'role': 'user', 'content': 'hi'}]}).encode()
attempt('llm_server', lambda: urllib.request.urlopen(urllib.request.Request(<<base_url>> + '/chat/completions',
        data=body, headers={'Content-Type': 'application/json'}), timeout=0.5).read())
attempt('listener_loopback', lambda: socket.create_connection(('127.0.0.1', <<port>>), timeout=0.5).close())
attempt('listener_host_ip', lambda: socket.create_connection((<<host_ip>>, <<port>>), timeout=0.5).close())
attempt('docker_gateway', lambda: socket.create_connection(('172.17.0.1', <<port>>), timeout=0.5).close())
attempt('internet_tcp', lambda: socket.create_connection(('1.1.1.1', 53), timeout=0.5).close())
attempt('internet_udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)))
attempt('dns', lambda: socket.getaddrinfo('pypi.org', 443))
print('RESULT ' + json.dumps(res))
"""


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP server on every host interface that records who connects."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
                accepted.append(peer)
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def _host_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def test_no_network_not_even_host_loopback(arena: Arena, listener: tuple[int, list[object]]) -> None:
    port, accepted = listener
    out = arena.ask("network", fill(NETWORK, base_url=arena.server.base_url, port=port, host_ip=_host_ip()),
                    "FINAL('offline')")
    arena.assert_held(out)
    report = out.report()
    assert set(report) == {"llm_server", "listener_loopback", "listener_host_ip", "docker_gateway", "internet_tcp",
                           "internet_udp", "dns"}  # every attempt was made
    assert all(v.startswith("ERR") for v in report.values()), report
    assert accepted == []
    assert not arena.server.calls_for("escape-attempt")


# -- processes -----------------------------------------------------------------
OUTLIVE = """
import subprocess, sys, os, threading, time, json, socket
loop = 'import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\\nwhile True: time.sleep(0.2)'
p = subprocess.Popen([sys.executable, '-c', loop, <<mark>>], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', loop, <<mark>>])
    os._exit(0)
os.waitpid(pid, 0)
def spin():
    while True:
        time.sleep(0.1)
threading.Thread(target=spin).start()
time.sleep(0.5)
print('RESULT ' + json.dumps({'uid': os.getuid(), 'host': socket.gethostname()}))
"""


def test_no_process_or_thread_outlives_the_query(arena: Arena) -> None:
    mark = f"deeprecall-escapee-{arena.token}"
    out = arena.ask("outlive", fill(OUTLIVE, mark=mark), "FINAL('spawned')")
    arena.assert_held(out)
    report = out.report()
    assert out.result.answer == "spawned"
    assert wait_until(lambda: not processes_matching(mark)), f"{arena.kind}: escapees still running"
    if arena.kind == "local":
        assert report["uid"] != 0
        assert wait_until(lambda: not processes_of_uid(report["uid"]))
    else:
        api = arena.engine.sandbox.api  # type: ignore[attr-defined]
        assert wait_until(lambda: not api.containers(all=True, filters={"id": report["host"]}), timeout=30)


def test_infinite_loops_and_sleeps_are_interrupted(arena: Arena) -> None:
    out = arena.ask("loops", "while True:\n    pass", "import time\ntime.sleep(10**6)", "FINAL('survived loops')")
    arena.assert_held(out)
    assert out.result.answer == "survived loops"
    assert out.transcript.count("TimeoutError") == 2


@pytest.mark.parametrize("code", [
    "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass",
    "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
], ids=["alarm-ignored", "timeout-swallowed"])
def test_code_that_defeats_the_soft_timeout_is_killed(arena: Arena, code: str) -> None:
    out = arena.ask(f"hard-{hash(code) & 0xffff}", code, "FINAL('never')")
    arena.assert_held(out)
    assert out.result.error == "cell_timeout"
    assert out.seconds < CELL_TIMEOUT + 10


def test_exit_and_self_kill_do_not_take_the_host_down(arena: Arena) -> None:
    out = arena.ask("exits", "import sys\nsys.exit(3)", "import os\nos._exit(1)",
                    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\nos.killpg(os.getpgid(0), signal.SIGKILL)",
                    "FINAL('still here')")
    arena.assert_held(out)
    assert out.result.answer == "still here"
    assert "SystemExit(3) ignored" in out.outputs
    assert "REPL process died" in out.transcript


MEMORY = """
import json, subprocess, sys
res = {}
try:
    x = bytearray(8 * 1024**3)
    res['big'] = 'allocated'
except MemoryError:
    res['big'] = 'MemoryError'
hog = []
try:
    while True:
        hog.append(bytearray(64 * 1024**2))
except MemoryError:
    res['grow'] = 'MemoryError after %d MB' % (64 * len(hog))
hog = None
r = subprocess.run([sys.executable, '-c', 'x = bytearray(8 * 1024**3)'], capture_output=True)
res['child_exit'] = r.returncode
print('RESULT ' + json.dumps(res))
"""


def test_memory_bombs_hit_the_limit(arena: Arena) -> None:
    out = arena.ask("memory", MEMORY, "FINAL('bounded')")
    arena.assert_held(out)
    report = out.report()
    assert report["big"] == "MemoryError"
    assert report["grow"].startswith("MemoryError")
    assert report["child_exit"] != 0


FLOOD = """
import os, sys, subprocess
print('RESULT {"flooding": true}')
for i in range(20000):
    print('x' * 1000)
    print('e' * 1000, file=sys.stderr)
os.write(1, b'y' * (40 << 20))
os.write(2, b'z' * (40 << 20))
subprocess.run([sys.executable, '-c', 'import sys; sys.stdout.write("w" * (20 << 20))'])
"""


def test_output_floods_are_capped(arena: Arena) -> None:
    out = arena.ask("flood", FLOOD, "FINAL('flooded')")
    arena.assert_held(out)
    assert out.result.answer == "flooded"
    assert out.report() == {"flooding": True}  # the head of stdout is kept
    first, second = ([r for r in out.requests if r.turn == n] for n in (0, 1))
    assert len(first) == len(second) == 1
    shown = len(second[0].text) - len(first[0].text) - len(arena.cases["flood"][0])  # what the cell added
    trace = out.result.steps[0].output
    print("flood: the model was shown", shown, "characters; the trace holds", len(trace))
    assert 1000 < shown <= 2 * OUTPUT_CAP + 1000  # stdout and stderr, each capped, and the truncation notes
    assert 1000 < len(trace) <= 2 * OUTPUT_CAP + 1000


def test_forged_protocol_messages_end_only_that_worker(arena: Arena) -> None:
    junk = FIND_WORKER + "w.wout.write(b'not json at all\\n')\nw.wout.flush()\nimport time\ntime.sleep(5)"
    huge = FIND_WORKER + "w.wout.write(b'{\"type\": \"result\", \"stdout\": \"' + b'a' * (20 << 20))\nw.wout.flush()\nimport time\ntime.sleep(5)"
    out = arena.ask("forge", junk, huge, "FINAL('recovered')")
    arena.assert_held(out)
    assert out.result.answer == "recovered"
    assert out.transcript.count("REPL process died") == 2


# -- the store and its filters -------------------------------------------------
STORE = FIND_WORKER + """
import json, os
res = {}
try:
    import chromadb
    res['chromadb'] = 'imported'
except Exception as e:
    res['chromadb'] = 'ERR ' + type(e).__name__
for p in [<<store_dir>>, <<store_dir>> + '/chroma.sqlite3']:
    try:
        os.remove(p)
        res[p] = 'removed'
    except Exception as e:
        res[p] = 'ERR ' + type(e).__name__
forged = [('delete', {'ids': ['doc0']}), ('add_documents', {'texts': ['pwned']}), ('describe', {}),
          ('search_db', {'query': 'x', 'top_k': 10**9}), ('search_db', {'query': 'x', 'where': {}}),
          ('search_db', {'query': 'x', 'filters': {'$where': 'drop table'}})]
for fn, args in forged:
    try:
        w.call(fn, **args)
        res[fn + json.dumps(args)] = 'accepted'
    except Exception as e:
        res[fn + json.dumps(args)] = 'refused'
print('RESULT ' + json.dumps(res))
"""


def test_store_is_reachable_only_through_search_db(arena: Arena) -> None:
    before = sorted(os.listdir(arena.store_dir))
    count = arena.store.count()
    out = arena.ask("store", fill(STORE, store_dir=arena.store_dir), "FINAL('store attacked')")
    arena.assert_held(out)
    report = out.report()
    assert report.pop("chromadb").startswith("ERR")
    assert len(report) == 8, report  # both removals and all six forged calls were attempted
    assert all(v.startswith(("ERR", "refused")) for v in report.values()), report
    assert sorted(os.listdir(arena.store_dir)) == before
    assert arena.store.count() == count
    assert [h.id for h in arena.store.search("Acme revenue grew", 1, None)] == ["doc0"]


FILTERS = FIND_WORKER + """
import json
out, seen = {}, set()
attempts = [None, {'tenant': 'globex'}, {'$or': [{'tenant': 'globex'}, {'tenant': 'acme'}]},
            {'tenant': {'$ne': 'acme'}}, {'tenant': {'$in': ['globex', 'acme']}}, {'topic': 'people'}]
for f in attempts:
    try:
        hits = search_db('revenue CEO recall factory aluminium', top_k=10, filters=f)
        out[json.dumps(f)] = sorted(h['id'] for h in hits)
        seen.update(h['id'] for h in hits)
    except Exception as e:
        out[json.dumps(f)] = 'ERR ' + type(e).__name__
for args in [{'filters': None}, {'filters': {}, 'enforced_filters': None}]:
    try:
        hits = w.call('search_db', query='Globex CEO', top_k=10, **args)
        out['forged' + json.dumps(args)] = sorted(h['id'] for h in hits)
        seen.update(h['id'] for h in hits)
    except Exception as e:
        out['forged' + json.dumps(args)] = 'ERR ' + type(e).__name__
print('RESULT ' + json.dumps({'found': out, 'ids': sorted(seen)}))
"""


def test_enforced_filters_cannot_be_widened_or_replaced(arena: Arena) -> None:
    """Engine filter tenant=acme AND query filter topic=finance allow exactly doc0 (DOCS in tests/conftest.py).

    Each attempt has its own expected result, so a search_db that returned nothing would fail as surely as
    one that let another tenant's documents through."""
    out = arena.ask("filters", FILTERS, "FINAL('scoped')", filters={"topic": "finance"})
    arena.assert_held(out)
    report = out.report()
    assert report["found"] == {
        "null": ["doc0"],                                                # no model filter: the allowed document
        '{"tenant": "globex"}': [],                                      # ANDed with tenant=acme: nothing
        '{"$or": [{"tenant": "globex"}, {"tenant": "acme"}]}': ["doc0"],  # narrows to acme, cannot widen
        '{"tenant": {"$ne": "acme"}}': [],
        '{"tenant": {"$in": ["globex", "acme"]}}': ["doc0"],
        '{"topic": "people"}': [],
        'forged{"filters": null}': ["doc0"],                             # a raw call still gets the host's filters
        'forged{"filters": {}, "enforced_filters": null}': "ERR ToolError",  # and cannot name them
    }
    assert report["ids"] == ["doc0"]
    assert {i for step in out.result.steps for search in step.searches for i in search.result_ids} == {"doc0"}
    assert {s.id for s in out.result.sources} <= {"doc0"}


BOMB = """
import threading, time, os, json
threads = forks = 0
try:
    for i in range(1000):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        threads += 1
except RuntimeError:
    pass
try:
    for i in range(1000):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forks += 1
except OSError:
    pass
print('RESULT ' + json.dumps({'threads': threads, 'forks': forks}))
"""


def test_process_and_thread_bombs_hit_the_process_limit(arena: Arena) -> None:
    out = arena.ask("bomb", BOMB, "FINAL('capped')")
    arena.assert_held(out)
    report = out.report()
    assert report["threads"] < 100 and report["forks"] < 100, report
