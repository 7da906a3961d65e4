"""The host end of the worker protocol, shared by every sandbox.

The worker (``worker.py``) is started with ``python3 -c BOOTSTRAP N`` and reads
exactly N bytes of its own source from stdin, so no file has to be copied into
an image or a cloud sandbox. After that, both sides exchange newline-delimited
ASCII JSON (see worker.py's docstring for the message list).

Calls from the worker (``search_db``, ``llm_query`` ...) are served on their own
threads, so a batch or the model's own threads can have several in flight.
Ids are checked; a malformed message or a dead worker is a ``SandboxError``.
"""

from __future__ import annotations

import json
import queue
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from deeprecall.errors import SandboxError, SandboxHung
from deeprecall.sandboxes.base import WorkerChannel

PROTOCOL_VERSION = 1
# The worker is untrusted: one message may not exceed this, so it cannot exhaust the host's memory.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_INFLIGHT_CALLS = 32
CALL_THREAD_IDLE = 5.0  # seconds an idle call thread waits for work before it exits
BOOTSTRAP = (
    "import os,sys\n"
    "n=int(sys.argv[1]);b=b''\n"
    "if len(sys.argv)>2:os.nice(int(sys.argv[2]))\n"
    "while len(b)<n:\n"
    " c=os.read(0,n-len(b))\n"
    " if not c:raise SystemExit(3)\n"
    " b+=c\n"
    "exec(compile(b.decode(),'<deeprecall-worker>','exec'),{'__name__':'__deeprecall_worker__'})\n"
)

CallHandler = Callable[[str, dict[str, Any]], Any]


class ToolRefused(Exception):
    """Raised by a call handler to send an error message back to the model's code."""


@lru_cache(maxsize=1)
def worker_source() -> bytes:
    return (Path(__file__).parent / "worker.py").read_bytes()


def launch_command(python: str = "python3", flags: tuple[str, ...] = ("-u",), nice: int = 0) -> list[str]:
    """The argv that starts a worker; sandboxes prefix their own wrapper.

    ``nice`` lowers the worker's CPU priority, so warming spare workers (and
    CPU-hungry model code) yields to the host serving other queries."""
    argv = [python, *flags, "-c", BOOTSTRAP, str(len(worker_source()))]
    return [*argv, str(nice)] if nice else argv


def launch_shell_command(python: str = "python3") -> str:
    """``launch_command`` as one shell string, for exec APIs that take a string."""
    return " ".join(shlex.quote(part) for part in launch_command(python))


@dataclass
class CellResult:
    stdout: str
    stderr: str
    answer: dict[str, Any]
    variables: list[str] = field(default_factory=list)
    timed_out: bool = False


class WorkerSession:
    """One live worker: handshake, init, run cells, serve its calls, kill it.

    ``handshake`` runs at spawn time (so a warm pool holds workers that are
    already up); ``init`` binds the worker to one query.
    """

    def __init__(self, channel: WorkerChannel) -> None:
        self._channel = channel
        self._responses: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._handler: CallHandler | None = None
        self._wlock = threading.Lock()
        self._next_id = 0
        self._inflight = 0
        self._servers = 0
        self._calls: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._clock = threading.Lock()
        self._dead: str | None = None
        self._last_activity = time.monotonic()
        self._reader: threading.Thread | None = None
        self.info: dict[str, Any] = {}

    # -- lifecycle --------------------------------------------------------
    def handshake(self, timeout: float) -> None:
        """Send the worker's source and wait for its hello."""
        try:
            self._channel.write(worker_source())
        except OSError as e:
            raise self._failure(f"could not send the worker source: {e}") from None
        self._reader = threading.Thread(target=self._read_loop, name="deeprecall-session", daemon=True)
        self._reader.start()
        hello = self._wait("hello", None, timeout)
        if hello.get("protocol") != PROTOCOL_VERSION:
            raise self._failure(f"worker speaks protocol {hello.get('protocol')!r}, host speaks {PROTOCOL_VERSION}")
        self.info = hello

    def init(self, *, context: Any, handler: CallHandler, output_cap: int, limits: dict[str, Any],
             workdir: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._handler = handler
        msg_id = self._send({"type": "init", "context": context, "output_cap": output_cap,
                             "limits": limits, "workdir": workdir})
        return self._wait("ready", msg_id, timeout)

    def execute(self, code: str, *, timeout: float, hard_deadline: float | None = None) -> CellResult:
        """Run one cell. The worker interrupts it at ``timeout`` (cell time, not
        counting host calls). If it does not answer within ``timeout`` + grace of
        its last sign of life, or by ``hard_deadline``, it is killed and this
        raises ``SandboxHung``."""
        msg_id = self._send({"type": "exec", "code": code, "timeout": timeout})
        msg = self._wait("result", msg_id, timeout + max(2.0, timeout * 0.5), hard_deadline)
        return CellResult(stdout=str(msg.get("stdout", "")), stderr=str(msg.get("stderr", "")),
                          answer=dict(msg.get("answer") or {}), variables=list(msg.get("vars") or []),
                          timed_out=bool(msg.get("timed_out")))

    def read_var(self, name: str, timeout: float = 10.0) -> str | None:
        msg_id = self._send({"type": "var", "name": name})
        msg = self._wait("var", msg_id, timeout)
        return str(msg["value"]) if msg.get("found") else None

    def kill(self) -> None:
        self._dead = self._dead or "killed by the host"
        self._channel.kill()

    @property
    def alive(self) -> bool:
        return self._dead is None

    # -- wire -------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> int:
        if self._dead:
            raise self._failure(self._dead)
        with self._wlock:
            self._next_id += 1
            msg["id"] = self._next_id
            self._write(msg)
            return self._next_id

    def _write(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg, ensure_ascii=True, default=str) + "\n").encode("ascii")
        try:
            self._channel.write(data)
        except OSError as e:
            self._dead = f"the worker's stdin closed ({e})"
            raise self._failure(self._dead) from None

    def _wait(self, kind: str, msg_id: int | None, idle_timeout: float, deadline: float | None = None) -> dict[str, Any]:
        while True:
            now = time.monotonic()
            if self._inflight:  # the host is serving the worker's call: that time is not the cell's
                self._last_activity = now
            idle_left = self._last_activity + idle_timeout - now
            wait = idle_left if deadline is None else min(idle_left, deadline - now)
            if wait <= 0:
                self.kill()
                raise self._failure(f"the worker did not answer within {idle_timeout:.1f}s and was killed", SandboxHung)
            try:
                msg = self._responses.get(timeout=min(wait, 0.5))
            except queue.Empty:
                continue
            if msg is None:
                raise self._failure(self._dead or "the worker exited")
            if msg.get("type") == kind and (msg_id is None or msg.get("id") == msg_id):
                return msg
            self.kill()
            raise self._failure(f"protocol error: expected {kind!r} #{msg_id}, got {str(msg)[:200]}")

    def _read_loop(self) -> None:
        try:
            while True:
                line = self._channel.readline(MAX_MESSAGE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_MESSAGE_BYTES:
                    self._dead = f"protocol error: a message over {MAX_MESSAGE_BYTES} bytes"
                    self._channel.kill()
                    break
                self._last_activity = time.monotonic()
                try:
                    msg = json.loads(line)
                except ValueError:
                    if not self.info:
                        continue  # noise before the hello (a shell banner): skip it
                    self._dead = f"protocol error: not JSON: {line[:200]!r}"
                    self._channel.kill()
                    break
                if isinstance(msg, dict) and msg.get("type") == "call":
                    self._dispatch_call(msg)
                else:
                    self._responses.put(msg if isinstance(msg, dict) else {"type": "invalid"})
        except OSError:
            pass
        self._dead = self._dead or "the worker exited"
        self._responses.put(None)
        with self._clock:  # idle call threads exit now rather than after CALL_THREAD_IDLE (a cancelled query leaves none)
            for _ in range(self._servers):
                self._calls.put(None)

    def _dispatch_call(self, msg: dict[str, Any]) -> None:
        """Queue a call for the session's call threads, at most MAX_INFLIGHT_CALLS at once.

        Threads are kept and reused (starting one per call cost ~1.5 ms of every
        search_db round trip), and there are always as many as calls in flight, so
        a slow llm_query never holds up a search. The cap means forged calls
        written straight to the protocol fd cannot make host threads without end."""
        with self._clock:
            busy = self._inflight >= MAX_INFLIGHT_CALLS
            if not busy:
                self._inflight += 1
                self._calls.put(msg)
                spawn = self._inflight > self._servers
                self._servers += int(spawn)
        if busy:
            with self._wlock:
                try:
                    self._write({"type": "reply", "id": msg.get("id"), "ok": False,
                                 "error": f"more than {MAX_INFLIGHT_CALLS} tool calls in flight; wait for some to finish"})
                except SandboxError:
                    pass
        elif spawn:
            threading.Thread(target=self._call_thread, name="deeprecall-call", daemon=True).start()

    def _call_thread(self) -> None:
        while True:
            try:
                msg = self._calls.get(timeout=CALL_THREAD_IDLE)
            except queue.Empty:
                with self._clock:
                    if self._calls.empty():  # checked under the lock _dispatch_call queues under
                        self._servers -= 1
                        return
                continue
            if msg is None:  # the worker is gone: no more calls will come
                with self._clock:
                    self._servers -= 1
                return
            try:
                self._serve_one(msg)
            finally:
                with self._clock:
                    self._inflight -= 1

    def _serve_one(self, msg: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "reply", "id": msg.get("id")}
        try:
            if self._handler is None:
                raise ToolRefused("the worker is not bound to a query")
            args = msg.get("args")
            reply["value"] = self._handler(str(msg.get("fn")), args if isinstance(args, dict) else {})
            reply["ok"] = True
        except ToolRefused as e:
            reply.update(ok=False, error=str(e))
        except Exception as e:  # a bug on the host side must not hang the worker
            reply.update(ok=False, error=f"internal error: {type(e).__name__}")
        self._last_activity = time.monotonic()
        with self._wlock:
            try:
                self._write(reply)
            except SandboxError:
                pass

    def _failure(self, reason: str, kind: type[SandboxError] = SandboxError) -> SandboxError:
        tail = self._channel.diagnostics().strip()
        return kind(f"sandbox worker failed: {reason}" + (f"\nworker stderr:\n{tail[-2000:]}" if tail else ""))
