"""Private instances of the services a fault test stops: a PostgreSQL with pgvector and a Chroma server, each
with its own data directory and port, so stopping one never touches the shared services other tests use.

They need what ``scripts/services.sh`` installs (PostgreSQL 15, pgvector, root to run it as ``postgres``) and
chromadb from the test extra. A missing part skips, except under ``DEEPRECALL_REQUIRE_FAULTS=1`` (``make test``
sets it), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.sandboxes.support import processes_matching

REQUIRE = "DEEPRECALL_REQUIRE_FAULTS"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGVECTOR = Path("/usr/share/postgresql/15/extension/vector.control")


def require(problem: str | None) -> None:
    """Skip on ``problem``, or fail under ``DEEPRECALL_REQUIRE_FAULTS=1``."""
    if problem is None:
        return
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def postgres_problem() -> str | None:
    if os.geteuid() != 0:
        return "a private PostgreSQL is started as the postgres user, which needs root"
    if not (PG_BIN / "pg_ctl").exists() or not PGVECTOR.exists():
        return "PostgreSQL 15 with pgvector is not installed; run scripts/services.sh postgres"
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster with a password (so a test can check it never leaks) on a free port."""

    password = "Pg-s3cret-Faults"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="deeprecall-faults-pg-"))
        self.root.chmod(0o700)
        shutil.chown(self.root, "postgres", "postgres")  # initdb, the server and its log run as postgres
        self.data = self.root / "data"
        self.port = free_port()
        self.dsn = f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"
        self.paused: list[int] = []
        (self.root / "pw").write_text(self.password)
        try:
            self._initdb()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _initdb(self) -> None:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--no-sync", "-E", "UTF8",
                          "-A", "scram-sha-256", "--pwfile", str(self.root / "pw"))

    def _as_postgres(self, *argv: str, timeout: float = 60) -> None:
        run = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                             timeout=timeout, cwd=self.root, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, f"{argv[0]} failed: {run.stderr[-800:]}"

    def start(self) -> None:
        # fsync off (the page cache outlives the server), but commits wait for the WAL: an immediate stop keeps them
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                          "-t", "30", "-o", options, "start")

    def stop_now(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, as in a crash; clients see closed sockets."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def processes(self) -> list[int]:
        """This cluster's postmaster (from its own data directory's postmaster.pid) and its children (backends,
        checkpointer, walwriter...); never another cluster's."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def pause(self) -> None:
        """SIGSTOP every process of the cluster, the postmaster first (so it forks no new backend): the server
        hangs. Its sockets stay open and the kernel still ACKs and queues, so clients just wait."""
        postmaster = self.processes()[0]
        os.kill(postmaster, signal.SIGSTOP)
        self.paused = [postmaster]
        for pid in self.processes()[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self.paused.append(pid)

    def resume(self) -> None:
        """SIGCONT what ``pause`` stopped."""
        for pid in reversed(self.paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused = []

    def close(self) -> None:
        self.resume()  # a stopped postmaster would not act on pg_ctl's SIGQUIT
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def chroma_problem() -> str | None:
    if not (Path(sys.executable).parent / "chroma").exists():
        return "chromadb's `chroma` command is not installed (pip install -e '.[test]')"
    return None


class PrivateChroma:
    """A real ``chroma run`` on a free loopback port over its own directory; it can be SIGKILLed and restarted."""

    def __init__(self, path: Path) -> None:
        self.path, self.port = path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 60) -> None:
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "chroma"), "run", "--path", str(self.path),
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + within
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "chroma run did not start"
                time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def dockerd_problem() -> str | None:
    if os.geteuid() != 0:
        return "a private Docker engine needs root"
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        return "dockerd is not installed; run scripts/services.sh docker"
    return None


def storage_driver() -> str:
    """overlay2 where the kernel has overlayfs: a container starts in ~1 s instead of the ~10 s vfs takes here
    (vfs copies the whole image per container; the shared engine uses it for other reasons)."""
    return "overlay2" if "\toverlay\n" in Path("/proc/filesystems").read_text() else "vfs"


class PrivateDockerd:
    """A second Docker engine of our own: its own data root, exec root (so its own containerd), pid file and
    socket, no bridge and no iptables rules, so killing it leaves the shared engine alone. The sandbox image is
    copied in from the shared engine (``docker save | docker load``)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="deeprecall-faults-dockerd-"))
        self.url = f"unix://{self.root}/docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 30) -> None:
        r = self.root
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", f"{r}/data", "--exec-root", f"{r}/exec", "--pidfile", f"{r}/dockerd.pid",
             "-H", self.url, f"--storage-driver={storage_driver()}", "--bridge=none", "--iptables=false", "--ip-masq=false"],
            stdin=subprocess.DEVNULL, stdout=(r / "dockerd.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + within
        while self.docker("info", check=False).returncode != 0:
            assert self.proc.poll() is None, f"the private dockerd exited: {self.log_tail()}"
            assert time.monotonic() < deadline, f"the private dockerd did not answer in {within}s: {self.log_tail()}"
            time.sleep(0.2)

    def docker(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(["docker", "-H", self.url, *argv], capture_output=True, text=True, timeout=timeout)
        assert run.returncode == 0 or not check, f"docker {argv[0]} failed: {run.stderr[-500:]}"
        return run

    def load(self, image: str) -> None:
        """Copy ``image`` from the shared engine (read only there)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", self.url, "load"], stdin=save.stdout, capture_output=True, timeout=120)
        assert save.stdout is not None
        save.stdout.close()
        assert save.wait(timeout=60) == 0 and load.returncode == 0, f"docker load failed: {load.stderr[-500:]!r}"

    def kill(self) -> None:
        """SIGKILL the engine and wait for its containerd to follow (it gets SIGTERM when dockerd dies and takes a
        second or two; a dockerd started before it is gone fails on it). Container shims live on until it is back."""
        assert self.proc is not None
        try:
            containerd = int((self.root / "exec/containerd/containerd.pid").read_text())
        except (OSError, ValueError):
            containerd = 0
        self.proc.kill()
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while containerd and Path(f"/proc/{containerd}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_tail(self) -> str:
        try:
            return (self.root / "dockerd.log").read_text()[-800:]
        except OSError:
            return ""

    def close(self) -> None:
        """Start it if it is down (it clears the shims of its containers), remove every container, stop it,
        unmount what it mounted under its root, delete the root."""
        try:
            if self.proc is not None and self.proc.poll() is not None:
                self.start()
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            for pid in processes_matching(f"{self.root}/exec/containerd"):  # a shim of a container it lost track of
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1].startswith(str(self.root))]
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
            shutil.rmtree(self.root, ignore_errors=True)


def mount_problem() -> str | None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "a small tmpfs to fill is mounted with mount(8), which needs root"
    return None


class SmallDisk:
    """A tmpfs of ``size_mb`` mounted on a fresh directory: ``fill()`` takes every byte left, ``free()`` gives
    them back. ``close()`` unmounts it (lazily: a store may still hold files open)."""

    def __init__(self, size_mb: int = 4) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="deeprecall-faults-disk-"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=1777", "tmpfs", str(self.path)],
                       check=True, capture_output=True, timeout=30)
        self.filler = self.path / "filler"

    def fill(self, leave: int = 0) -> None:
        """Take every byte, then give ``leave`` back (a write larger than that is then cut part-way)."""
        with open(self.filler, "ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        assert shutil.disk_usage(self.path).free == 0, "the disk is full"
        if leave:
            os.truncate(self.filler, self.filler.stat().st_size - leave)

    def free(self) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
        shutil.rmtree(self.path, ignore_errors=True)
