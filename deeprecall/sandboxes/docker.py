"""``environment="docker"``: one locked-down container per worker, on a real Docker engine.

The host talks to the worker over the container's own stdin and stdout
(the attach socket), with the same protocol as every other sandbox. No port
is published and nothing listens on the host, so ``--network none`` costs
``search_db`` nothing: the search runs on the host and only its results
cross the stream.

Each container runs with no network, a read-only root filesystem plus a
size-limited tmpfs at /tmp, memory (no swap), PIDs and CPU limits, a
non-root user, no capabilities and ``no-new-privileges``. Any image with
``python3`` works; the default, ``deeprecall-sandbox:py3``, is a minimal
Debian built offline (``build_default_image`` or ``scripts/services.sh docker``).
A container serves one query and is force-removed after it, on a
background thread so the query does not wait for the storage driver.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import tempfile
import threading
from typing import Any

from pydantic import Field, field_validator

from deeprecall.errors import ConfigError, MissingDependencyError, SandboxError
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.isolation import SANDBOX_ENV
from deeprecall.sandboxes.protocol import launch_command
from deeprecall.sandboxes.streams import StreamChannel, background

DEFAULT_IMAGE = "deeprecall-sandbox:py3"
LABEL = "deeprecall.sandbox"
log = logging.getLogger("deeprecall")


class DockerSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="docker"``."""

    image: str = Field(DEFAULT_IMAGE, description="any image with python3 on PATH")
    python: str = Field("python3", description="interpreter inside the image")
    cpus: float = Field(1.0, gt=0, le=64, description="CPU limit (docker --cpus)")
    pids_limit: int = Field(64, ge=8, description="processes and threads in the container (docker --pids-limit)")
    tmp_mb: int = Field(64, ge=1, description="size of the tmpfs at /tmp, the only writable place")
    user: str = Field("65534:65534", description="uid:gid inside the container; never root")
    docker_host: str | None = Field(None, description="engine URL; default from DOCKER_HOST or the local socket")

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value.split(":")[0] in ("0", "root", ""):
            raise ValueError("must not be root: the sandbox never runs model code as root")
        return value


def _docker() -> Any:
    try:
        import docker
    except ImportError:
        raise MissingDependencyError("docker", "docker", "environment='docker'") from None
    return docker


def _engine_failures() -> tuple[type[BaseException], ...]:
    """What docker-py raises when a call fails: its own errors, and requests' when the engine does not answer
    at all (a stopped or restarting dockerd: connection refused, its socket gone)."""
    import requests

    return _docker().errors.DockerException, requests.exceptions.RequestException


def _reason(error: BaseException) -> str:
    """One line for an error message; an unreachable engine is said so, not as urllib3's nested tuple."""
    if type(error).__module__.startswith(("requests", "urllib3")):
        cause = error.args[0] if error.args else error
        cause = getattr(cause, "reason", cause)  # urllib3's MaxRetryError
        inner = cause.args[-1] if isinstance(cause, Exception) and cause.args else cause
        return f"the Docker engine did not answer ({type(inner).__name__}: {inner}); is dockerd running?"
    return str(error)


class DockerChannel(StreamChannel):
    """The attach socket of one container, demultiplexed (tty=False frames).

    Frames are read on the caller's thread inside ``readline`` (the session's
    reader), not on a thread of their own: one thread hand-off less per message."""

    def __init__(self, sandbox: DockerSandbox, container_id: str, sock: Any) -> None:
        self._raw: socket.socket = getattr(sock, "_sock", sock)
        self._holder = sock  # keeps docker-py's response (and the socket) alive
        self.container_id = container_id
        super().__init__(send=self._raw.sendall, stop=lambda: sandbox.remove(container_id, self._raw))

    def readline(self, limit: int = -1) -> bytes:
        while True:
            with self._cond:
                line = self._ready_line(limit)
            if line is not None:
                return line
            if not self._read_frame():
                self.end()

    def _read_frame(self) -> bool:
        """Read one frame into stdout or the stderr tail; False at EOF."""
        try:
            header = self._recv_exact(8)
            if header is None:
                return False
            kind, remaining = header[0], struct.unpack(">I", header[4:8])[0]
            while remaining:
                chunk = self._raw.recv(min(remaining, 1 << 16))
                if not chunk:
                    return False
                remaining -= len(chunk)
                (self.feed if kind == 1 else self.feed_stderr)(chunk)
        except OSError:
            return False
        return True

    def _recv_exact(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self._raw.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class DockerSandbox:
    """Starts hardened containers; ``close`` removes every one it started."""

    name = "docker"

    def __init__(self, **kwargs: Any) -> None:
        self.settings = DockerSettings(**kwargs)
        docker = _docker()
        try:
            client = docker.DockerClient(base_url=self.settings.docker_host) if self.settings.docker_host \
                else docker.from_env()
            self.api = client.api
            self.api.ping()
        except _engine_failures() as e:
            raise ConfigError(f"environment='docker' needs a running Docker engine, and none answered ({_reason(e)}). "
                              "Start dockerd, or set docker_host in environment_kwargs.") from None
        try:
            self.api.inspect_image(self.settings.image)
        except docker.errors.ImageNotFound:
            hint = "build it offline with `deeprecall doctor --build-docker-image` (or scripts/services.sh docker)" \
                if self.settings.image == DEFAULT_IMAGE else "pull or build it first"
            raise ConfigError(f"Docker image {self.settings.image!r} is not present: {hint}") from None
        self._errors = docker.errors
        self._failures = _engine_failures()
        self._live: set[str] = set()
        self._removals: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._labels = {LABEL: "1", "deeprecall.host": socket.gethostname(), "deeprecall.pid": str(os.getpid())}
        background(self._sweep_orphans, "deeprecall-docker-sweep")

    def _host_config(self) -> Any:
        s = self.settings
        memory = f"{s.memory_mb}m" if s.memory_mb else None
        return self.api.create_host_config(
            network_mode="none", read_only=True, tmpfs={"/tmp": f"rw,nosuid,nodev,size={s.tmp_mb}m,mode=1777"},
            mem_limit=memory, memswap_limit=memory, pids_limit=s.pids_limit, nano_cpus=int(s.cpus * 1e9),
            cap_drop=["ALL"], security_opt=["no-new-privileges"], ipc_mode="none", init=False,
            # The worker exits when its stdin closes (docker-py sets StdinOnce: when the host's attach goes, its
            # death included); the engine then removes the container with no host left to ask it.
            auto_remove=True,
        )

    def start_worker(self) -> DockerChannel:
        s = self.settings
        try:
            created = self.api.create_container(
                s.image, command=launch_command(s.python, ("-u", "-I")), stdin_open=True, tty=False,
                user=s.user, working_dir="/tmp", environment=dict(SANDBOX_ENV), network_disabled=True,
                labels=self._labels, host_config=self._host_config(),
            )
            container_id = created["Id"]
        except self._failures as e:
            raise SandboxError(f"docker could not create a sandbox container from {s.image!r}: {_reason(e)}") from None
        with self._lock:
            self._live.add(container_id)
        try:
            sock = self.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.api.start(container_id)
        except self._failures as e:
            self.remove(container_id, None)
            raise SandboxError(f"docker could not start the sandbox container: {_reason(e)}") from None
        return DockerChannel(self, container_id, sock)

    def remove(self, container_id: str, raw: socket.socket | None) -> None:
        """Close the stream now; force-remove the container on a background thread."""
        if raw is not None:
            for close in (lambda: raw.shutdown(socket.SHUT_RDWR), raw.close):
                try:
                    close()
                except OSError:
                    pass

        def remove() -> None:
            try:
                self.api.remove_container(container_id, force=True, v=True)
            except self._errors.NotFound:
                pass
            except self._errors.APIError as e:
                if e.status_code != 409:  # 409: the engine is already removing it (auto_remove)
                    raise
            except self._failures as e:  # the engine is away: close() tries again (a restarted engine kills it)
                log.debug("docker: container %s not removed yet: %s", container_id[:12], _reason(e))
                return
            with self._lock:
                self._live.discard(container_id)

        thread = background(remove, "deeprecall-docker-rm")
        with self._lock:
            self._removals = [t for t in self._removals if t.is_alive()] + [thread]

    def close(self) -> None:
        """Wait for pending removals, then remove anything still running."""
        with self._lock:
            pending, left = list(self._removals), list(self._live)
        for thread in pending:
            thread.join(timeout=30)
        for container_id in left:
            try:
                self.api.remove_container(container_id, force=True, v=True)
            except self._failures as e:
                log.debug("docker: container %s not removed at close: %s", container_id[:12], _reason(e))

    def _sweep_orphans(self) -> None:
        """Remove containers left by DeepRecall processes on this host that died without closing."""
        try:
            found = self._containers_of_this_host()
        except self._failures as e:
            log.debug("docker: no sweep of orphaned containers: %s", _reason(e))
            return
        for container in found:
            pid = int(container.get("Labels", {}).get("deeprecall.pid", "0") or 0)
            if pid and not _alive(pid):
                try:
                    self.api.remove_container(container["Id"], force=True, v=True)
                except self._failures:
                    pass

    def _containers_of_this_host(self) -> list[dict[str, Any]]:
        labels = [f"{LABEL}=1", f"deeprecall.host={socket.gethostname()}"]
        return list(self.api.containers(all=True, filters={"label": labels}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_default_image(tag: str = DEFAULT_IMAGE, *, suite: str = "bookworm", mirror: str | None = None,
                        docker_host: str | None = None) -> str:
    """Build a minimal Debian + python3 image without any registry (root and debootstrap needed).

    ``debootstrap --variant=minbase --include=python3`` from the Debian mirror
    apt already uses, then ``docker import`` of the tree. Takes ~40 s.
    """
    docker = _docker()
    mirror = mirror or _apt_mirror()
    with tempfile.TemporaryDirectory(prefix="deeprecall-rootfs-") as work:
        root = os.path.join(work, "root")
        run = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", suite, root, mirror],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SandboxError(f"debootstrap failed: {run.stderr.strip()[-500:]}")
        tar = os.path.join(work, "rootfs.tar")
        subprocess.run(["tar", "--numeric-owner", "-C", root, "-cf", tar, "."], check=True)
        client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
        repository, _, version = tag.partition(":")
        client.api.import_image(src=tar, repository=repository, tag=version or "latest", changes=['CMD ["python3"]'])
    return tag


def _apt_mirror() -> str:
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            for line in f:
                if line.startswith("URIs:"):
                    return line.split()[1]
    except OSError:
        pass
    return "http://deb.debian.org/debian"
