"""The worker SIGKILLed from outside (the OOM killer, an operator), mid-cell and mid-call (while it waits on
the host's ``llm_query``): the dead worker is replaced, the model is told, the query goes on, the next query
works, and no process is left. Real parts: the namespace sandbox, the engine, the scripted LLM server.
(The worker killing itself is tests/engine/test_query.py and tests/security/test_hostile_code.py.)"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from deeprecall.events import CellStarted
from deeprecall.testing.scripted_server import ChatRequest, by_turn
from tests.conftest import ROOT, SUB
from tests.sandboxes.support import processes_matching


def repl(code: str) -> str:
    return f"Next.\n```repl\n{code}\n```"


ANSWER = repl('answer["content"] = "answered after the kill"\nanswer["ready"] = True')


def first_turn(code: str) -> Any:
    """The first query's first turn runs ``code``, then it answers; a later query answers at once."""
    first = by_turn(repl(code), ANSWER)
    return lambda request: first(request) if "zq-second" not in request.text else ANSWER


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), zombies left out."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def next_worker(engine: Any) -> Any:
    """The warm worker the next query takes (pool_size 1: the only idle one)."""
    engine.warm()
    return engine._pool._idle[0]


def gone(pids: set[int], within: float = 10.0) -> set[int]:
    deadline = time.monotonic() + within
    while (left := pids & descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def check_replaced_and_next_query_works(engine: Any, server: Any, result: Any, victim: Any, before: set[int]) -> None:
    assert result.error is None and result.answer == "answered after the kill"
    assert "REPL process died" in server.calls_for(ROOT)[1].text, "the model was told its worker died"
    assert not victim.alive
    again = engine.query("zq-second query")
    assert again.error is None and again.answer == "answered after the kill"
    engine.close()
    assert not gone(descendants(os.getpid()) - before), "a worker process outlived engine.close()"


ESCAPE = ("import subprocess, sys, time\n"
          "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.2)', {mark!r}],"
          " start_new_session=True)\n"
          "time.sleep(20)")


def test_a_worker_killed_mid_cell_is_replaced_and_the_query_goes_on(llm, make_engine):
    mark = f"deeprecall-escapee-{os.urandom(4).hex()}"
    server = llm({ROOT: first_turn(ESCAPE.format(mark=mark))})
    before = descendants(os.getpid())
    engine = make_engine(server, environment_kwargs={"pool_size": 1, "isolation": "namespace"})
    victim = next_worker(engine)

    def kill_soon(event: Any) -> None:
        if isinstance(event, CellStarted) and event.cell == 1:
            threading.Thread(target=kill_once_escaped, daemon=True).start()

    def kill_once_escaped() -> None:
        deadline = time.monotonic() + 10
        while not processes_matching(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        escaped.append(bool(processes_matching(mark)))
        os.kill(victim._channel.pid, signal.SIGKILL)

    escaped: list[bool] = []

    start = time.monotonic()
    result = engine.query("q", on_event=kill_soon)
    assert time.monotonic() - start < 15, "the dead worker was noticed at once, not at the cell's 20 s sleep"
    assert escaped == [True], "the cell's detached process was running when its worker was killed"
    deadline = time.monotonic() + 5
    while processes_matching(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_matching(mark), "a process the killed worker started outlived it"
    check_replaced_and_next_query_works(engine, server, result, victim, before)


def test_a_worker_killed_while_it_waits_on_a_host_call_is_replaced(llm, make_engine):
    victims: list[Any] = []

    def sub(request: ChatRequest) -> str:
        if len(victims) == 1:  # the first sub-call only: the host is serving it while its worker dies
            os.kill(victims.pop()._channel.pid, signal.SIGKILL)
            time.sleep(0.3)
        return "late reply"

    server = llm({ROOT: first_turn('print(llm_query("summarise"))'), SUB: sub})
    before = descendants(os.getpid())
    engine = make_engine(server, environment_kwargs={"pool_size": 1, "isolation": "namespace"})
    victim = next_worker(engine)
    victims.append(victim)
    result = engine.query("q")
    assert not victims, "the sub-call ran, and the worker was killed during it"
    check_replaced_and_next_query_works(engine, server, result, victim, before)
