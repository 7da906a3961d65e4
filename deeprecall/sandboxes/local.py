"""The local sandbox: the worker runs in a separate, killable process.

Never in-process: rlms's own LocalREPL ``exec``s model code inside the host,
with no isolation, no timeout, and stdout/cwd races between threads. Here the
worker gets a scrubbed environment, its own empty working directory and its
own process group, which is killed with everything in it when the query ends.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import IO, Any

from pydantic import Field

from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.protocol import launch_command

SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


class LocalSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="local"``."""

    python: str = Field(default_factory=lambda: sys.executable, description="interpreter that runs the worker")


class ProcessChannel:
    """A worker subprocess; stderr is drained into a small ring buffer."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: str, cleanup_dir: str | None = None) -> None:
        self._cleanup_dir = cleanup_dir
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, start_new_session=True, close_fds=True,
        )
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self._proc.stdout  # type: ignore[assignment]
        self._stderr_tail: collections.deque[bytes] = collections.deque(maxlen=64)
        self._killed = False
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        for line in iter(lambda: stream.readline(4096), b""):
            self._stderr_tail.append(line)

    def write(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def readline(self, limit: int = -1) -> bytes:
        return self._stdout.readline(limit)

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.kill()
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self._cleanup_dir:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)

    def diagnostics(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", "replace")

    @property
    def pid(self) -> int:
        return self._proc.pid


class LocalSandbox:
    """``environment="local"``: a worker process per query on this machine."""

    name = "local"

    def __init__(self, **kwargs: Any) -> None:
        self.settings = LocalSettings(**kwargs)

    def start_worker(self) -> ProcessChannel:
        workdir = tempfile.mkdtemp(prefix="deeprecall-worker-")
        env = dict(SAFE_ENV, HOME=workdir, TMPDIR=workdir)
        argv = launch_command(self.settings.python, ("-u", "-I", "-S"), nice=10)
        return ProcessChannel(argv, env=env, cwd=workdir, cleanup_dir=workdir)

    def close(self) -> None:
        return None
