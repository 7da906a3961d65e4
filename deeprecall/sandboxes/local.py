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

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from deeprecall.errors import ConfigError, SandboxError
from deeprecall.sandboxes import isolation
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.pipe_channel import PipeChannel, launcher
from deeprecall.sandboxes.protocol import launch_command
from deeprecall.sandboxes.worker import WORKER_DIR_ENV
from deeprecall.sandboxes.zygote import Zygote, ZygoteUnavailable

log = logging.getLogger("deeprecall")
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "MALLOC_ARENA_MAX": "2"}  # see isolation.SANDBOX_ENV
NICE = 10  # warming spare workers and CPU-hungry model code yield to the host
_warned: set[str] = set()


class LocalSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="local"``."""

    python: str = Field(default_factory=lambda: sys.executable, description="interpreter that runs the worker")
    isolation: Literal["auto", "namespace", "process", "none"] = Field(
        "auto", description="namespace (Linux), process, none; auto = namespace where it works, else process")
    namespace_tool: Literal["auto", "bwrap", "unshare"] = Field("auto", description="which tool builds the namespaces")
    max_processes: int | None = Field(64, ge=4, description="processes and threads the worker may run (namespace)")
    tmp_mb: int = Field(64, ge=1, le=65536, description="size of the worker's private /tmp (namespace)")
    worker_start: Literal["zygote", "exec"] = Field(
        "zygote", description="namespace workers: forked from a warmed template (zygote) or a fresh interpreter each "
                              "through namespace_tool (exec); zygote falls back to exec, with a warning, where it "
                              "cannot isolate")
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


class ProcessChannel(PipeChannel):
    """A worker subprocess of its own (an interpreter start per worker)."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: str, cleanup_dir: str | None = None) -> None:
        self._cleanup_dir = cleanup_dir
        try:
            self._proc = launcher.run(lambda: subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=cwd, start_new_session=True, close_fds=True,
            ))
        except OSError as e:
            if cleanup_dir:
                shutil.rmtree(cleanup_dir, ignore_errors=True)
            raise SandboxError(f"could not start the local worker ({argv[0]}): {e}") from e
        super().__init__(self._proc.stdin, self._proc.stdout, self._proc.stderr)  # type: ignore[arg-type]

    def _end(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.kill()
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self._cleanup_dir:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)

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
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()
        self._zygote_off: str | None = None  # why forking workers does not work here, once found

    def start_worker(self) -> PipeChannel:
        s = self.settings
        if self.mode == "namespace" and s.worker_start == "zygote" and self._zygote_off is None:
            try:
                return self._template().spawn()
            except ZygoteUnavailable as e:  # this machine cannot: exec workers, as safe, only slower
                self._zygote_off = str(e)
                self.close()
                _warn_once("zygote", f"DeepRecall local sandbox: {e}; starting each worker by exec instead "
                                     "(same isolation, ~15 ms more CPU per worker).")
        if self.mode == "namespace":
            assert self.tool is not None
            argv = isolation.sandboxed_argv(self.tool, isolation.real_python(s.python), tmp_mb=s.tmp_mb, nice=NICE)
            return ProcessChannel(argv, env=dict(isolation.SANDBOX_ENV), cwd="/")
        if self.mode == "none":
            return ProcessChannel(launch_command(s.python, nice=NICE), env=dict(os.environ), cwd=os.getcwd())
        workdir = tempfile.mkdtemp(prefix="deeprecall-worker-")
        env = dict(SAFE_ENV, HOME=workdir, TMPDIR=workdir, **{WORKER_DIR_ENV: workdir})
        return ProcessChannel(launch_command(s.python, ("-u", "-I", "-S"), nice=NICE), env=env, cwd=workdir, cleanup_dir=workdir)

    def _template(self) -> Zygote:
        with self._zygote_lock:
            if self._zygote is None:
                s = self.settings
                self._zygote = Zygote(s.python, tmp_mb=s.tmp_mb, nice=NICE, start_timeout=s.start_timeout)
            return self._zygote

    def close(self) -> None:
        """Ends the worker template (and any worker still forked from it)."""
        with self._zygote_lock:
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()


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
