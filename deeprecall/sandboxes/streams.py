"""A ``WorkerChannel`` over whatever stream a container or cloud SDK gives us.

Docker's attach socket, Modal's ``ContainerProcess``, E2B's command handle,
Daytona's session logs and Prime's live process all deliver the worker's
stdout as *chunks* (bytes or str, not lines) from a reader the adapter runs,
and take stdin through a send function. ``StreamChannel`` turns that into the
``write``/``readline``/``kill`` surface ``WorkerSession`` speaks, so each
adapter is only its SDK calls.

``AsyncRunner`` runs an asyncio loop on its own thread, for the SDKs (Prime,
Daytona's log stream) that are async only.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
STDERR_TAIL_BYTES = 16_384


class StreamChannel:
    """Lines out of pushed stdout chunks; ``send`` carries stdin, ``stop`` ends the worker.

    ``stop`` runs once, on the first ``kill``; it must end the remote process
    (and its sandbox). A reader blocked in ``readline`` returns ``b""`` at once.
    """

    def __init__(self, send: Callable[[bytes], None], stop: Callable[[], None]) -> None:
        self._send = send
        self._stop = stop
        self._buf = bytearray()
        self._scanned = 0
        self._eof = False
        self._killed = False
        self._cond = threading.Condition()
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self._wlock = threading.Lock()

    # -- fed by the adapter's reader -----------------------------------------
    def feed(self, data: bytes | str) -> None:
        chunk = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        if not chunk:
            return
        with self._cond:
            if not self._eof:
                self._buf += chunk
                self._cond.notify_all()

    def feed_stderr(self, data: bytes | str) -> None:
        chunk = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        with self._cond:
            self._stderr.append(chunk[-STDERR_TAIL_BYTES:])
            self._stderr_size += len(self._stderr[-1])
            while self._stderr_size > STDERR_TAIL_BYTES and len(self._stderr) > 1:
                self._stderr_size -= len(self._stderr.popleft())

    def end(self) -> None:
        """The stream ended (the worker exited or the connection dropped)."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # -- WorkerChannel ------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._killed or self._eof:
            raise BrokenPipeError("the worker's stream is closed")
        with self._wlock:
            self._send(data)

    def readline(self, limit: int = -1) -> bytes:
        with self._cond:
            while True:
                line = self._ready_line(limit)
                if line is not None:
                    return line
                self._cond.wait()

    def _ready_line(self, limit: int) -> bytes | None:
        """A complete line (or ``limit`` bytes, or what is left at EOF); None: wait for more.
        Call with ``_cond`` held."""
        at = self._buf.find(b"\n", self._scanned)
        if at >= 0 and (limit < 0 or at < limit):
            return self._take(at + 1)
        if limit >= 0 and len(self._buf) >= limit:
            return self._take(limit)
        if self._eof:
            return self._take(len(self._buf))
        self._scanned = len(self._buf)
        return None

    def _take(self, n: int) -> bytes:
        line = bytes(self._buf[:n])
        del self._buf[:n]
        self._scanned = 0
        return line

    def kill(self) -> None:
        with self._cond:
            if self._killed:
                return
            self._killed = True
            self._eof = True
            self._buf.clear()
            self._cond.notify_all()
        self._stop()

    def diagnostics(self) -> str:
        with self._cond:
            return b"".join(self._stderr).decode("utf-8", "replace")


class AsyncRunner:
    """One event loop on a daemon thread; sync code submits coroutines to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Cancel what is still running (stream readers), then stop the loop."""
        if not self.loop.is_running():
            return

        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.wait(rest, timeout=5) if rest else None

        try:
            self.run(cancel_rest(), timeout=10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def background(target: Callable[[], None], name: str) -> threading.Thread:
    """Run ``target`` on a daemon thread and swallow its errors (used for teardown)."""

    def run() -> None:
        try:
            target()
        except Exception:
            pass

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


class Teardowns:
    """Sandbox deletions run in the background (a query must not wait for them);
    ``wait`` at engine close makes sure none is left behind."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self, *steps: Callable[[], Any]) -> None:
        def all_steps() -> None:
            for step in steps:
                try:
                    step()
                except Exception:
                    pass

        thread = background(all_steps, self._name)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def wait(self, timeout: float = 60.0) -> None:
        with self._lock:
            pending = list(self._threads)
        for thread in pending:
            thread.join(timeout=timeout)


def import_sdk(module: str, package: str, extra: str, purpose: str) -> Any:
    """Import a vendor SDK on first use; a missing one names the pip extra."""
    import importlib

    from deeprecall.errors import MissingDependencyError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, extra, purpose) from None


def shell_command(python: str) -> str:
    """The worker's launch argv as one shell string, for exec APIs that take a string."""
    import shlex

    from deeprecall.sandboxes.protocol import launch_command

    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in REMOTE_ENV.items())
    return env + " " + " ".join(shlex.quote(part) for part in launch_command(python, REMOTE_FLAGS))


# Remote images may carry the packages the model wants (numpy ...), so keep
# site-packages (no -S); -I still ignores PYTHON* variables and the user site.
REMOTE_FLAGS = ("-u", "-I")
# glibc reserves 64 MB of address space per thread arena; under RLIMIT_AS that
# would allow only ~13 threads. The only variable the sandbox gets from us.
REMOTE_ENV = {"MALLOC_ARENA_MAX": "2"}
