"""The local sandbox: one worker process per query, on this machine, isolated.

Never in-process: rlms's own LocalREPL ``exec``s model code inside the host,
with no isolation, no timeout, and stdout/cwd races between threads.

``isolation`` (an ``environment_kwargs`` key) picks how much stands between the
model's code and the host:

- ``"namespace"``: Linux namespaces through bubblewrap or ``unshare`` (see
  isolation.py): no network, a read-only view of only what Python needs, a
  private empty /tmp, no host files, no capabilities, an unprivileged uid,
  limits on memory, CPU, processes and file size, and the whole process tree
  killed with the query.
- ``"process"``: a separate process with a scrubbed environment, an empty
  temporary working directory, its own process group and the rlimits on
  memory, CPU time and file size. It can still read and write whatever the
  host user can, and reach the network.
- ``"none"``: a separate process with the host's environment (secrets
  included), working directory and site-packages, and no resource limits.
  Only the cell timeout and the kill at query end remain.
- ``"auto"`` (default): ``"namespace"`` where it works, else ``"process"``
  with one warning that says why.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, Any, Literal, TypeVar

from pydantic import Field, PrivateAttr

from deeprecall.errors import ConfigError, SandboxError
from deeprecall.sandboxes import isolation
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.protocol import launch_command
from deeprecall.sandboxes.worker import WORKER_DIR_ENV

log = logging.getLogger("deeprecall")
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "MALLOC_ARENA_MAX": "2"}  # see isolation.SANDBOX_ENV
NICE = 10  # warming spare workers and CPU-hungry model code yield to the host
_warned: set[str] = set()
T = TypeVar("T")


class LocalSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="local"``."""

    python: str = Field(default_factory=lambda: sys.executable, description="interpreter that runs the worker")
    isolation: Literal["auto", "namespace", "process", "none"] = Field(
        "auto", description="namespace (Linux), process, none; auto = namespace where it works, else process")
    namespace_tool: Literal["auto", "bwrap", "unshare"] = Field("auto", description="which tool builds the namespaces")
    max_processes: int | None = Field(64, ge=4, description="processes and threads the worker may run (namespace)")
    tmp_mb: int = Field(64, ge=1, le=65536, description="size of the worker's private /tmp (namespace)")
    _mode: str = PrivateAttr("process")

    def limits(self) -> dict[str, Any]:
        if self._mode == "none":
            return {}
        limits = super().limits()
        if self._mode == "namespace":
            # Only here is RLIMIT_NPROC this worker's own: elsewhere it counts
            # every process of the host user (and root is exempt).
            limits["max_processes"] = self.max_processes
        return limits


class _Launcher:
    """Starts every worker from one long-lived thread.

    bubblewrap's ``--die-with-parent`` is PR_SET_PDEATHSIG, which fires when
    the *thread* that forked it exits, not the process. Workers started from
    the pool's short-lived refill threads would be killed while idle."""

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


_launcher = _Launcher()


class ProcessChannel:
    """A worker subprocess; stderr is drained into a small ring buffer."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: str, cleanup_dir: str | None = None) -> None:
        self._cleanup_dir = cleanup_dir
        try:
            self._proc = _launcher.run(lambda: subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=cwd, start_new_session=True, close_fds=True,
            ))
        except OSError as e:
            if cleanup_dir:
                shutil.rmtree(cleanup_dir, ignore_errors=True)
            raise SandboxError(f"could not start the local worker ({argv[0]}): {e}") from e
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self._proc.stdout  # type: ignore[assignment]
        self._stderr_tail: collections.deque[bytes] = collections.deque(maxlen=64)
        self._killed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._drain_stderr, name="deeprecall-stderr", daemon=True).start()

    def _drain_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        try:
            for line in iter(lambda: stream.readline(4096), b""):
                self._stderr_tail.append(line)
        except (OSError, ValueError):
            pass

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
            except (OSError, ValueError):
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
        self.mode, self.reason, self.tool = resolve(self.settings)
        self.settings._mode = self.mode

    def start_worker(self) -> ProcessChannel:
        s = self.settings
        if self.mode == "namespace":
            assert self.tool is not None
            argv = isolation.sandboxed_argv(self.tool, isolation.real_python(s.python), tmp_mb=s.tmp_mb, nice=NICE)
            return ProcessChannel(argv, env=dict(isolation.SANDBOX_ENV), cwd="/")
        if self.mode == "none":
            return ProcessChannel(launch_command(s.python, nice=NICE), env=dict(os.environ), cwd=os.getcwd())
        workdir = tempfile.mkdtemp(prefix="deeprecall-worker-")
        env = dict(SAFE_ENV, HOME=workdir, TMPDIR=workdir, **{WORKER_DIR_ENV: workdir})
        return ProcessChannel(launch_command(s.python, ("-u", "-I", "-S"), nice=NICE), env=env, cwd=workdir, cleanup_dir=workdir)

    def close(self) -> None:
        return None


def resolve(settings: LocalSettings) -> tuple[str, str, str | None]:
    """(mode, why, tool) for these settings on this machine; warns once on a fallback."""
    if settings.isolation in ("process", "none"):
        why = f"isolation={settings.isolation!r} was chosen in environment_kwargs"
        if settings.isolation == "none":
            _warn_once("none", "DeepRecall local sandbox: isolation='none' gives the model's code the host's "
                               "environment variables, files and network. Use it only with trusted documents.")
        return settings.isolation, why, None
    found = isolation.detect(settings.python, settings.namespace_tool)
    if found.available:
        return "namespace", found.reason, found.tool
    if settings.isolation == "namespace":
        raise ConfigError(f"isolation='namespace' is not available on this machine: {found.reason}. Install "
                          "bubblewrap (apt-get install bubblewrap), or choose isolation='process'.")
    _warn_once(found.reason, "DeepRecall local sandbox: namespace isolation is unavailable "
                             f"({found.reason}); falling back to process isolation, which does not stop the "
                             "model's code from reading host files or using the network. Run `deeprecall doctor`.")
    return "process", f"namespaces unavailable: {found.reason}", None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)
