"""The worker template (zygote): the program that runs in the template process.

Stdlib only, like worker.py. The host starts ``python -I -S -c TEMPLATE_BOOT`` with
a clean environment, ``/`` as its working directory and one AF_UNIX seqpacket
socket as fd 0, then sends this file's source and a JSON config carrying the
worker's source and the sandbox's setup code (``isolation.SETUP_BODY``). The
template loads the worker code once and afterwards only forks.

Why a fork costs so little and still isolates as much as an exec: per worker,
the template ``unshare``s fresh namespaces (mount, PID, network, IPC, UTS,
cgroup), forks the worker, PID 1 of its new PID namespace, and goes back to
its own namespaces (``setns``). Not root, a *keeper* forked per worker does the
``unshare`` (a user namespace too, which the template could not leave again)
and the second fork. The worker builds its own root (read-only binds, a
private /tmp), chroots, drops to a uid of its own with no capabilities and
``no_new_privs``, closes every descriptor but its three pipes, and only then runs
the worker loop. It cannot see the template or another worker (other PID
namespace), signal or trace them (other uid, no capabilities), nor reach them by
file or socket (own root, own network, no inherited descriptor).

The template holds no secret to inherit: it is started with a scrubbed
environment and never receives anything but pipes and these parameters.

Death follows the host: the template has PR_SET_PDEATHSIG on the host's
launcher thread, each worker on the template (not root: on its keeper, and the
keeper on the template); and the worker ends itself when its stdin closes.
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


WORKER_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
# The template's own namespaces, by the name /proc/self/ns gives them, that a worker gets fresh ones of.
HOME_NAMESPACES = {"mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "pid": CLONE_NEWPID,
                   "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP}


def unshare_for_worker(extra: int = 0) -> None:
    """Fresh namespaces for the next child (its PID namespace's PID 1); cgroup too where the kernel has it."""
    if libc.unshare(WORKER_NAMESPACES | extra | CLONE_NEWCGROUP) != 0 and libc.unshare(WORKER_NAMESPACES | extra) != 0:
        fail("unshare")


def new_namespaces(uid: int, gid: int) -> None:
    """Not root, in the keeper: a user namespace too, in which the worker is 65534 (as with bubblewrap), mapped
    to the host user."""
    unshare_for_worker(CLONE_NEWUSER)
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
        # As root the template forks workers itself: it enters fresh namespaces, forks, and goes back to these.
        self.home = {flag: os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                     for name, flag in HOME_NAMESPACES.items()
                     if self.as_root and os.path.exists(f"/proc/self/ns/{name}")}  # cgroup: Linux 4.6+

    def spawn(self, params: dict[str, Any], fds: list[int], probe: bool = False) -> tuple[int, int | None]:
        """Start a worker; return its pid (as the host sees it) and, from a keeper, the fd that releases it."""
        if self.as_root:
            return self.spawn_direct(params, fds, probe), None
        return self.spawn_kept(params, fds, probe)

    def spawn_direct(self, params: dict[str, Any], fds: list[int], probe: bool) -> int:
        """As root: unshare, fork the worker, and return to the template's own namespaces. No keeper process
        (its fork, copy-on-write faults and exit were a third of a worker's start). SIGCHLD stays blocked
        until the caller holds a pidfd on the worker, so the template cannot reap it, and free its pid for
        reuse, before then (``handle`` unblocks it)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            unshare_for_worker()
            worker = os.fork()
        except OSError:
            self.go_home()
            self.let_go(None)
            raise
        if worker == 0:
            self.forked()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            self.worker_main(params, fds, probe)
        self.go_home()
        return worker

    def forked(self) -> None:
        """First thing in a child of the template (a keeper, or a worker forked directly)."""
        self.control.detach()  # closed as a raw fd later; the socket object must not close a reused number
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the template reaps in a handler; its children do not

    @staticmethod
    def let_go(release: int | None) -> None:
        """Once the host holds a pidfd on the worker: its keeper may go on to wait for it, or (no keeper) the
        template may reap it."""
        if release is not None:
            os.close(release)
        else:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})

    def go_home(self) -> None:
        """Back into the template's own namespaces; a template that cannot must not fork again, so it ends
        (the host starts a new one)."""
        for flag, fd in self.home.items():
            if libc.setns(fd, flag) != 0 and flag != CLONE_NEWCGROUP:
                os.write(2, b"deeprecall: the worker template could not return to its namespaces\n")
                os._exit(1)

    def spawn_kept(self, params: dict[str, Any], fds: list[int], probe: bool) -> tuple[int, int]:
        """Not root: fork a keeper (it enters a user namespace, which the template could not leave again) and
        its worker; return the worker's pid (as the host sees it) and the fd that lets the keeper go on."""
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
        self.forked()
        try:
            new_namespaces(*self.host_ids)
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
            die_with_parent(None)  # its parent (template or keeper) is outside its PID namespace: getppid() is 0
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
            self.let_go(release)
            os.close(err_w)
            err_w = -1
            said = b""
            while True:  # until the worker (and its keeper) have closed the pipe
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
                self.let_go(release)
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
