"""A ``WorkerChannel`` over a local worker's three pipes, and the thread that starts local processes.

Shared by the two ways the local sandbox starts a worker: a fresh process per
worker (``local.ProcessChannel``) and a fork of the warmed template
(``zygote.ZygoteChannel``). They differ only in how the worker is ended.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, Any, TypeVar

T = TypeVar("T")


class Launcher:
    """Starts local processes from one long-lived thread.

    PR_SET_PDEATHSIG (bubblewrap's ``--die-with-parent``, the zygote's own)
    fires when the *thread* that forked the process exits, not the process.
    Workers started from the pool's short-lived refill threads would be killed
    while idle."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="deeprecall-launcher", daemon=True)
                self._thread.start()
        done: Future[T] = Future()
        self._jobs.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                done.set_result(fn())
            except BaseException as e:
                done.set_exception(e)


launcher = Launcher()


def drain(stream: IO[bytes], tail: collections.deque[bytes]) -> None:
    """Read a process's stderr to its end (so the process never blocks on a full pipe), keeping the last lines."""
    try:
        for line in iter(lambda: stream.readline(4096), b""):
            tail.append(line)
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


class PipeChannel:
    """The worker's stdin and stdout as the protocol's stream; its stderr drained into a small ring buffer.

    Subclasses end the worker in ``_end`` (called once, by the first ``kill``)."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._stderr_tail: collections.deque[bytes] = collections.deque(maxlen=64)
        self._killed = False
        self._lock = threading.Lock()
        self._drainer = threading.Thread(target=drain, args=(stderr, self._stderr_tail), name="deeprecall-stderr",
                                         daemon=True)
        self._drainer.start()

    def write(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
            self._stdin.flush()
        except ValueError as e:  # closed by kill()
            raise BrokenPipeError(str(e)) from None

    def readline(self, limit: int = -1) -> bytes:
        try:
            return self._stdout.readline(limit)
        except (OSError, ValueError):  # closed by kill()
            return b""

    def kill(self) -> None:
        with self._lock:
            if self._killed:
                return
            self._killed = True
        self._end()
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def _end(self) -> None:
        raise NotImplementedError

    def diagnostics(self) -> str:
        """The tail of the worker's stderr. Asked for when the worker failed: its last words (say, why it refused
        to start) may still be in the pipe, so wait a moment for the drain to reach their end."""
        self._drainer.join(timeout=0.5)
        return b"".join(self._stderr_tail).decode("utf-8", "replace")
