"""Namespace workers forked from a warmed template (a zygote), the host's side.

Starting a worker by exec costs an interpreter start-up and bubblewrap's set-up
per query (~15 ms of CPU). The template (``zygote_template.py``, its own
process, started once per sandbox) has the worker code loaded already; a worker
costs two forks, an ``unshare`` and its mounts. What each worker gets is the
same as with bubblewrap: see zygote_template.py's docstring and
docs/sandboxes.md.

The host talks to the template over one AF_UNIX seqpacket socket: a request
carries the worker's parameters and its three pipe ends (SCM_RIGHTS); the reply
carries the worker's pid and a pidfd, so ending the worker can never signal a
recycled pid.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from deeprecall.errors import SandboxError
from deeprecall.sandboxes import isolation
from deeprecall.sandboxes.pipe_channel import PipeChannel, drain, launcher
from deeprecall.sandboxes.protocol import worker_source

# Runs as ``python -I -S -c TEMPLATE_BOOT`` with the control socket as fd 0: moves
# the socket off fd 0 and runs the template program the host sends first.
TEMPLATE_BOOT = (
    "import os,socket\n"
    "_c=socket.socket(fileno=os.dup(0))\n"
    "_n=os.open(os.devnull,os.O_RDWR);os.dup2(_n,0);os.close(_n)\n"
    "exec(compile(_c.recv(1<<20).decode('ascii'),'<deeprecall-zygote>','exec'),"
    "{'__name__':'__deeprecall_zygote__','_control':_c})\n"
)
MAX_REPLY = 4096


class ZygoteUnavailable(SandboxError):
    """The template could not start, or its probe worker could not be isolated here."""


@lru_cache(maxsize=1)
def template_source() -> bytes:
    return (Path(__file__).parent / "zygote_template.py").read_bytes()


class ZygoteChannel(PipeChannel):
    """A worker forked from the template; ended through its pidfd."""

    def __init__(self, pid: int, pidfd: int, stdin: int, stdout: int, stderr: int) -> None:
        self._pidfd = pidfd
        self.pid = pid
        super().__init__(os.fdopen(stdin, "wb"), os.fdopen(stdout, "rb"), os.fdopen(stderr, "rb"))

    def _end(self) -> None:
        """SIGKILL the worker, PID 1 of its namespace: the kernel ends everything else in it. Not waited for: the
        template (not root: its keeper) reaps it, and waiting for the namespace's teardown cost each query ~4 ms of
        wall time."""
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except OSError:  # already gone
            pass
        finally:
            os.close(self._pidfd)


class Zygote:
    """One template process and the requests to it. Thread-safe; restarts the template if it died."""

    def __init__(self, python: str, *, tmp_mb: int, nice: int, start_timeout: float) -> None:
        self.python = isolation.real_python(python)
        self.as_root = os.geteuid() == 0
        self._params = isolation.setup_params(self.python, tmp_mb=tmp_mb, as_root=self.as_root)
        self._nice = nice
        self._timeout = start_timeout
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_tail: collections.deque[bytes] = collections.deque(maxlen=32)

    def spawn(self) -> ZygoteChannel:
        with self._lock:
            if self._control is None:
                self._start()
            try:
                return self._request()
            except (OSError, EOFError) as e:  # the template died (or was killed): one fresh template, once
                self._stop()
                self._start()
                try:
                    return self._request()
                except (OSError, EOFError) as again:
                    raise SandboxError(f"the worker template failed twice: {e}; then {again}") from again

    def _params_for_one(self) -> dict[str, Any]:
        uid, gid = isolation._unique_ids() if self.as_root else (None, None)
        return {**self._params, "uid": uid, "gid": gid}

    def _request(self) -> ZygoteChannel:
        assert self._control is not None
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds: list[int] = []
        try:
            try:
                request = json.dumps({"params": self._params_for_one()}).encode("ascii")
                socket.send_fds(self._control, [request], [in_r, out_w, err_w])
                data, fds, _flags, _addr = socket.recv_fds(self._control, MAX_REPLY, 1)
            finally:  # the worker's ends are the template's now (or nobody's)
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            if not data:
                raise EOFError("the worker template closed its socket")
            reply = json.loads(data)
            if "error" in reply or len(fds) != 1:
                raise SandboxError(f"the worker template could not start a worker: {reply.get('error', reply)}")
            pid = int(reply["pid"])
        except BaseException:  # one place closes the host's ends and any pidfd, whatever failed
            for fd in (in_w, out_r, err_r, *fds):
                os.close(fd)
            raise
        return ZygoteChannel(pid, fds[0], in_w, out_r, err_r)

    def _start(self) -> None:
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = launcher.run(lambda: subprocess.Popen(
                [self.python, "-I", "-S", "-c", TEMPLATE_BOOT], stdin=child.fileno(), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=dict(isolation.SANDBOX_ENV), cwd="/", close_fds=True,
                start_new_session=True))
        except OSError as e:
            host.close()
            raise ZygoteUnavailable(f"could not start the worker template ({self.python}): {e}") from e
        finally:
            child.close()
        self._control = host
        self._stderr_tail.clear()
        # its stderr: a Python traceback if it fails, kept for the error message
        threading.Thread(target=drain, args=(self._proc.stderr, self._stderr_tail), name="deeprecall-template",
                         daemon=True).start()
        # As root the template builds the shared read-only root once; otherwise each worker builds its own (a
        # user namespace of the template's own would have to be nested in every worker's).
        base, setup = ((isolation.SETUP_COMMON + isolation.SETUP_BASE, isolation.SETUP_COMMON + isolation.SETUP_WORKER)
                       if self.as_root else (None, isolation.SETUP_BODY))
        config = {"worker": worker_source().decode("ascii"), "base": base, "setup": setup, "as_root": self.as_root,
                  "host_uid": os.geteuid(), "host_gid": os.getegid(), "nice": self._nice,
                  "probe": self._params_for_one()}
        try:
            host.settimeout(self._timeout)
            host.sendall(template_source())
            host.sendall(json.dumps(config).encode("ascii"))
            said = host.recv(MAX_REPLY)
            verdict = json.loads(said) if said else {"ready": False, "why": "the template exited"}
        except (OSError, ValueError) as e:
            verdict = {"ready": False, "why": f"{type(e).__name__}: {e}"}
        if not verdict.get("ready"):
            why = verdict.get("why") or "no reason given"
            self._stop()
            said_on_stderr = b"".join(self._stderr_tail).decode("utf-8", "replace").strip()[-500:]
            raise ZygoteUnavailable(f"the worker template cannot isolate workers here: {why}"
                                    + (f" ({said_on_stderr})" if said_on_stderr else ""))

    def _stop(self) -> None:
        control, proc, self._control, self._proc = self._control, self._proc, None, None
        if control is not None:
            control.close()  # the template exits on EOF; its workers (and keepers) die with it
        if proc is None:
            return
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def template_pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None
