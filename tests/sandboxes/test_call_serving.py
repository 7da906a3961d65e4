"""How the host serves the worker's tool calls: reused threads, no head-of-line blocking, a cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deeprecall.sandboxes.local import LocalSandbox
from deeprecall.sandboxes.protocol import MAX_INFLIGHT_CALLS, WorkerSession

SLOW = 2.0


@pytest.fixture
def session() -> Iterator[tuple[WorkerSession, list[str]]]:
    sandbox = LocalSandbox(isolation="process")
    session = WorkerSession(sandbox.start_worker())
    session.handshake(30)
    seen: list[str] = []
    release = threading.Event()

    def handler(fn: str, args: dict[str, Any]) -> Any:
        seen.append(fn)
        if args.get("query") == "slow":
            seen.append("slow started")
            time.sleep(SLOW)
            seen.append("slow finished")
        if args.get("query") == "block":
            release.wait(10)
        return [{"id": args.get("query"), "content": "", "metadata": {}, "score": 1.0}]

    session.init(context={}, handler=handler, output_cap=10_000, limits=sandbox.settings.limits())
    yield session, seen
    release.set()
    session.kill()


def test_a_slow_call_does_not_hold_up_the_others(session: tuple[WorkerSession, list[str]]) -> None:
    """Checked by order, not time: all 50 fast calls were served between the slow call's start and its end."""
    worker, seen = session
    code = """
import threading, time
slow = threading.Thread(target=search_db, args=('slow',))
slow.start()
time.sleep(0.05)
for _ in range(50):
    search_db('fast')
slow.join()
"""
    cell = worker.execute(code, timeout=60)
    assert cell.stderr == "", cell.stderr
    started, finished = seen.index("slow started"), seen.index("slow finished")
    assert seen[started + 1:finished].count("search_db") == 50, seen


def test_many_round_trips_are_served_and_threads_are_reused(session: tuple[WorkerSession, list[str]]) -> None:
    """Their speed is measured in benchmarks/sandbox_overhead.py, not asserted here (a loaded machine varies)."""
    worker, seen = session
    before = threading.active_count()
    cell = worker.execute("print(sum(search_db(str(i))[0]['id'] == str(i) for i in range(300)))", timeout=60)
    assert cell.stdout.strip() == "300" and len(seen) == 300
    assert threading.active_count() - before <= 2


def test_forged_call_floods_are_capped(session: tuple[WorkerSession, list[str]]) -> None:
    worker, _ = session
    code = f"""
import gc, threading
w = next(o for o in gc.get_objects() if type(o).__name__ == 'Worker')
results = []
def call():
    try:
        w.call('search_db', query='block')
        results.append('ok')
    except Exception as e:
        results.append(str(e))
threads = [threading.Thread(target=call) for _ in range({MAX_INFLIGHT_CALLS + 8})]
for t in threads:
    t.start()
import time
time.sleep(1)
print(sum('in flight' in r for r in results))
"""
    cell = worker.execute(code, timeout=20)
    assert cell.stdout.strip() == "8", (cell.stdout, cell.stderr, cell.timed_out)
