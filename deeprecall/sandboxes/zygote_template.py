"""The worker template (zygote): the program that runs in the template process.

Stdlib only, like worker.py. The host starts ``python -I -S -c TEMPLATE_BOOT`` with
a clean environment, ``/`` as its working directory and one AF_UNIX seqpacket
socket as fd 0, then sends this file's source and a JSON config carrying the
worker's source and the sandbox's setup code (``isolation.SETUP_BODY``). The
template loads the worker code once and afterwards only forks.

Why a fork costs so little and still isolates as much as an exec: per worker,
the template forks a *keeper* that ``unshare``s fresh namespaces (mount, PID,
network, IPC, UTS, cgroup; user too when not root) and forks the worker, PID 1
of its new PID namespace. The worker builds its own root (read-only binds, a
private /tmp), chroots, drops to a uid of its own with no capabilities and
``no_new_privs``, closes every descriptor but its three pipes, and only then runs
the worker loop. It cannot see the template or another worker (other PID
namespace), signal or trace them (other uid, no capabilities), nor reach them by
file or socket (own root, own network, no inherited descriptor).

The template holds no secret to inherit: it is started with a scrubbed
environment and never receives anything but pipes and these parameters.

Death follows the host: the template has PR_SET_PDEATHSIG on the host's
launcher thread, each keeper on the template, each worker on its keeper; and
the worker ends itself when its stdin closes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import signal
import socket
from typing import Any, NoReturn

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG = 1
HOSTNAME = b"deeprecall-sandbox"
PROBE_OK = b"deeprecall-probe-ok"
libc = ctypes.CDLL(None, use_errno=True)
MAX_FD = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 30)


def fail(what: str) -> NoReturn:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def die_with_parent(parent: int | None) -> None:
    """SIGKILL when the parent goes; if it is already gone, go now."""
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        fail("prctl(PDEATHSIG)")
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def close_from(low: int) -> None:
    """Close every descriptor from ``low`` up: one close_range(2) (Linux 5.9+; listing /proc/self/fd and closing
    one by one cost a tenth of a worker start). No descriptor can be numbered past the hard RLIMIT_NOFILE."""
    os.closerange(low, MAX_FD)


def new_namespaces(as_root: bool, uid: int, gid: int) -> None:
    """Called in the keeper: the worker it forks next starts in all of these."""
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
    if not as_root:
        flags |= CLONE_NEWUSER
    if libc.unshare(flags | CLONE_NEWCGROUP) != 0 and libc.unshare(flags) != 0:
        fail("unshare")
    if not as_root:  # inside its user namespace the worker is 65534 (as with bubblewrap), mapped to the host user
        for path, text in (("setgroups", "deny"), ("uid_map", f"65534 {uid} 1"), ("gid_map", f"65534 {gid} 1")):
            with open("/proc/self/" + path, "w") as f:
                f.write(text)


class Template:
    def __init__(self, control: socket.socket, config: dict[str, Any]) -> None:
        self.control = control
        self.worker_source = config["worker"].encode("ascii")
        if config["base"]:  # as root: the read-only root is built once, in the template's own mount namespace
            if libc.unshare(CLONE_NEWNS) != 0:
                fail("unshare(CLONE_NEWNS)")
            exec(compile(config["base"], "<deeprecall-base>", "exec"), {"_P": config["probe"]})
        self.setup = compile(config["setup"], "<deeprecall-setup>", "exec")
        self.as_root = config["as_root"]
        self.host_ids = (config["host_uid"], config["host_gid"])
        self.worker: dict[str, Any] = {"__name__": "__deeprecall_template__"}
        exec(compile(self.worker_source.decode("ascii"), "<deeprecall-worker>", "exec"), self.worker)
        self.pid = os.getpid()

    def spawn(self, params: dict[str, Any], fds: list[int], probe: bool = False) -> tuple[int, int]:
        """Fork a keeper and its worker; return the worker's pid (as the host sees it)."""
        report_r, report_w = os.pipe()
        release_r, release_w = os.pipe()
        keeper = os.fork()
        if keeper == 0:
            try:
                os.close(report_r)  # else the keeper would wait on its own copy of the release pipe forever
                os.close(release_w)
                self.keeper(params, fds, report_w, release_r, probe)
            finally:
                os._exit(1)
        os.close(report_w)
        os.close(release_r)
        try:
            data = b""
            while True:
                chunk = os.read(report_r, 64)
                if not chunk:
                    break
                data += chunk
            if not data.strip().isdigit():
                raise OSError("the worker did not start: " + (data.decode("ascii", "replace") or "keeper died"))
            return int(data), release_w
        finally:
            os.close(report_r)

    def keeper(self, params: dict[str, Any], fds: list[int], report_w: int, release_r: int, probe: bool) -> NoReturn:
        die_with_parent(self.pid)
        self.control.detach()  # closed below as a raw fd; the socket object must not close a reused number later
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the template reaps in a handler; here (and in the worker) no
        try:
            new_namespaces(self.as_root, *self.host_ids)
            worker = os.fork()
        except OSError as e:
            os.write(report_w, f"error {e}".encode("ascii", "replace"))
            os._exit(1)
        if worker == 0:
            os.close(report_w)
            os.close(release_r)
            self.worker_main(params, fds, probe)
        os.write(report_w, str(worker).encode("ascii"))
        os.close(report_w)
        os.read(release_r, 1)  # the host holds a pidfd on the worker before it can be reaped and its pid reused
        os.close(release_r)
        close_from(0)
        while True:
            try:
                os.waitpid(worker, 0)
                os._exit(0)
            except ChildProcessError:
                os._exit(0)
            except InterruptedError:
                continue

    def worker_main(self, params: dict[str, Any], fds: list[int], probe: bool) -> NoReturn:
        try:
            die_with_parent(None)  # its parent (the keeper) is outside its PID namespace: getppid() is 0
            os.setsid()
            libc.sethostname(HOSTNAME, len(HOSTNAME))
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            close_from(3)
            exec(self.setup, {"_P": params})  # the new root, chroot, the uid, no_new_privs
        except BaseException as e:  # the host reads why from the worker's stderr
            os.write(2, f"deeprecall: the sandbox could not be set up: {e}\n".encode("ascii", "replace"))
            os._exit(3)
        if probe:
            os.write(2, PROBE_OK if os.getuid() != 0 or not self.as_root else b"the worker is still root")
            os._exit(0)
        expected, got = self.worker_source, b""
        while len(got) < len(expected):
            chunk = os.read(0, len(expected) - len(got))
            if not chunk:
                os._exit(3)
            got += chunk
        if got != expected:
            os.write(2, b"deeprecall: the host sent a different worker than the template holds\n")
            os._exit(3)
        self.worker["main"]()
        os._exit(0)

    def probe(self, params: dict[str, Any]) -> str | None:
        """One throwaway worker through every step of the setup, so the host learns at start whether forking
        works here. Returns None if it does, else why not."""
        null = os.open(os.devnull, os.O_RDWR)
        err_r, err_w = os.pipe()
        try:
            _pid, release = self.spawn(params, [null, null, err_w], probe=True)
            os.close(release)
            os.close(err_w)
            err_w = -1
            said = b""
            while True:  # until the worker and its keeper have closed the pipe
                chunk = os.read(err_r, 4096)
                if not chunk:
                    break
                said += chunk
        except OSError as e:
            return str(e)
        finally:
            for fd in (null, err_r, err_w):
                if fd >= 0:
                    os.close(fd)
        return None if said == PROBE_OK else (said.decode("ascii", "replace").strip() or "the probe worker died")

    def serve(self) -> NoReturn:
        signal.signal(signal.SIGCHLD, self.reap)
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.control, 65536, 3)
            except InterruptedError:
                continue
            if not msg:
                os._exit(0)  # the host closed the sandbox (or died)
            self.handle(msg, fds)

    def handle(self, msg: bytes, fds: list[int]) -> None:
        loads, dumps = self.worker["loads"], self.worker["dumps"]
        reply: dict[str, Any] = {}
        send: list[int] = []
        try:
            pid, release = self.spawn(loads(msg.decode("ascii"))["params"], fds)
            try:
                send = [os.pidfd_open(pid)]
            finally:
                os.close(release)
            reply = {"pid": pid}
        except OSError as e:
            reply = {"error": str(e)}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            socket.send_fds(self.control, [dumps(reply).encode("ascii")], send)
        finally:
            for fd in send:
                os.close(fd)

    @staticmethod
    def reap(signum: int, frame: Any) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


def main(control: socket.socket) -> NoReturn:
    die_with_parent(None)
    import json

    config = json.loads(control.recv(1 << 22).decode("ascii"))
    os.nice(config["nice"])  # every worker inherits it: warming spare workers yields to the host
    template = Template(control, config)
    why = template.probe(config["probe"])
    socket.send_fds(control, [json.dumps({"ready": not why, "why": why}).encode("ascii")], [])
    if why:
        os._exit(1)
    del config, json
    # Everything loaded so far outlives every worker: frozen, a worker's garbage collections (its cells allocate)
    # never walk it, so they do not copy the template's pages it shares with every other worker.
    gc.freeze()
    template.serve()


if __name__ == "__deeprecall_zygote__":
    main(globals()["_control"])  # given by TEMPLATE_BOOT
