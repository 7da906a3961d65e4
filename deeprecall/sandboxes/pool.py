"""A warm pool of started workers, for every sandbox kind.

Starting a worker costs ~20 ms for a local process, ~2 s for a container and
more for a cloud sandbox, so the pool keeps ``size`` of them handshaken and
idle. ``acquire`` hands one out (never to a second query) and a background
thread starts its replacement.
"""

from __future__ import annotations

import threading
from collections import deque

from deeprecall.errors import SandboxError
from deeprecall.sandboxes.base import Sandbox
from deeprecall.sandboxes.protocol import WorkerSession

REFILL_THREADS = 1


class WorkerPool:
    def __init__(self, sandbox: Sandbox, *, size: int = 2, start_timeout: float = 30.0) -> None:
        self.sandbox = sandbox
        self.size = max(0, size)
        self.start_timeout = start_timeout
        self._idle: deque[WorkerSession] = deque()
        self._cond = threading.Condition()
        self._starting = 0
        self._closed = False
        self._last_error: Exception | None = None

    def spawn(self) -> WorkerSession:
        """Start and handshake one worker now, on the caller's thread."""
        channel = self.sandbox.start_worker()
        session = WorkerSession(channel)
        try:
            session.handshake(self.start_timeout)
        except BaseException:
            session.kill()
            raise
        return session

    def acquire(self) -> WorkerSession:
        with self._cond:
            if self._closed:
                raise SandboxError("the sandbox pool is closed; create a new DeepRecall engine")
            session = None
            while self._idle:
                candidate = self._idle.popleft()
                if candidate.alive:
                    session = candidate
                    break
            self._refill_locked()
        return session if session is not None else self.spawn()

    def stats(self) -> dict[str, int]:
        """Workers idle (started, waiting for a query), starting, and the target the pool refills to."""
        with self._cond:
            return {"idle": len(self._idle), "starting": self._starting, "target": self.size}

    def warm(self, count: int | None = None) -> None:
        """Start workers until ``count`` (default: size) are idle; block until they are."""
        target = self.size if count is None else count
        with self._cond:
            self.size = max(self.size, target)
            self._refill_locked()
            while len(self._idle) < target and self._starting and not self._closed and self._last_error is None:
                self._cond.wait(timeout=1.0)
        if self._last_error is not None and not self._idle:
            raise SandboxError(f"could not start sandbox workers: {self._last_error}")

    def _refill_locked(self) -> None:
        """Keep up to REFILL_THREADS refill threads running. Each starts workers one
        at a time, so a burst of queries is not slowed by a burst of start-ups."""
        missing = self.size - len(self._idle) - self._starting
        while missing > 0 and self._starting < REFILL_THREADS and not self._closed:
            self._starting += 1
            missing -= 1
            threading.Thread(target=self._refill_loop, name="deeprecall-pool", daemon=True).start()

    def _refill_loop(self) -> None:
        while True:
            with self._cond:
                if self._closed or len(self._idle) + self._starting > self.size:
                    self._starting -= 1
                    self._cond.notify_all()
                    return
            try:
                session: WorkerSession | None = self.spawn()
                self._last_error = None
            except Exception as e:  # reported by warm(); acquire() retries synchronously
                self._last_error, session = e, None
            with self._cond:
                if session is not None and not self._closed:
                    self._idle.append(session)
                elif session is not None:
                    session.kill()
                self._cond.notify_all()
                if session is None:
                    self._starting -= 1
                    return

    def close(self) -> None:
        """Kill idle workers, and wait for those still starting (they kill themselves on
        seeing the pool closed), so the sandbox's own close() finds every teardown begun."""
        with self._cond:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            self._cond.notify_all()
        for session in idle:
            session.kill()
        with self._cond:
            self._cond.wait_for(lambda: self._starting == 0, timeout=self.start_timeout)
