"""Faithful local stand-ins for the cloud sandbox SDKs, for testing the adapters here.

Modal, E2B, Daytona and Prime cannot be reached from the test machine, so each
adapter is tested against a stand-in module with the same module, class,
method and argument names as the installed SDK (modal 1.6, e2b-code-interpreter
2.11 / e2b 2.x, daytona 0.226, prime-sandboxes 0.5; read from their source).
A stand-in "sandbox" is a local subprocess running the real worker; the
stream shapes are the SDK's own: Modal's buffered writer that needs
``drain()``, E2B's decoded-string event tuples and its 60 s default command
timeout, Daytona's str-only input with input echo on by default and its async
log stream, Prime's async byte iterators with no stdin EOF.

tests/sandboxes/test_cloud_adapters.py checks every stand-in against the
installed SDK (tests/signatures.py): full signatures (names, required
parameters, positional order, scalar defaults, async-ness, return types), the
pydantic models, and the types the streams yield, so a stand-in cannot drift
into accepting what the real one would reject. Install one into ``sys.modules`` with ``install(monkeypatch, name)``.
"""

from __future__ import annotations

import asyncio
import codecs
import datetime
import os
import signal
import subprocess
import threading
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict


class Recorder:
    """What a stand-in was asked to do, for assertions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.live: set[str] = set()
        self.lock = threading.Lock()

    def record(self, _what: str, /, **kwargs: Any) -> None:
        with self.lock:
            self.calls.append((_what, kwargs))

    def kwargs(self, name: str) -> list[dict[str, Any]]:
        return [k for n, k in self.calls if n == name]


class LocalProcess:
    """The remote process, played by a local one (argv list, or a shell string)."""

    def __init__(self, command: list[str] | str, cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=cwd if cwd and os.path.isdir(cwd) else None,
                                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
                                     start_new_session=True)

    def chunks(self, which: str) -> Iterator[bytes]:
        fd = (self.proc.stdout if which == "stdout" else self.proc.stderr).fileno()  # type: ignore[union-attr]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            yield chunk

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------------- modal
def _modal() -> types.ModuleType:
    mod = types.ModuleType("modal")
    rec = Recorder()

    class Client:
        @classmethod
        def from_credentials(cls, token_id: str, token_secret: str) -> Client:
            return cls()

    class App:
        @staticmethod
        def lookup(name: str, *, client: Any = None, environment_name: str | None = None,
                   create_if_missing: bool = False) -> App:
            rec.record("App.lookup", name=name, create_if_missing=create_if_missing)
            return App()

    class Image:
        def __init__(self, ref: str) -> None:
            self.ref = ref

        @staticmethod
        def debian_slim(python_version: str | None = None, force_build: bool = False) -> Image:
            return Image("debian_slim")

        @staticmethod
        def from_registry(tag: str, secret: Any = None, *, setup_dockerfile_commands: list[str] | None = None,
                          force_build: bool = False, add_python: str | None = None, **kwargs: Any) -> Image:
            return Image(tag)

    class StreamWriter:
        """Modal buffers ``write``s; only ``drain()`` sends them."""

        def __init__(self, process: LocalProcess) -> None:
            self._process, self._buffer = process, bytearray()

        def write(self, data: bytes | bytearray | memoryview | str) -> None:
            self._buffer += data.encode() if isinstance(data, str) else bytes(data)

        def write_eof(self) -> None:
            self._process.close_stdin()

        def drain(self) -> None:
            data, self._buffer = bytes(self._buffer), bytearray()
            self._process.write(data)

    class StreamReader:
        def __init__(self, process: LocalProcess, which: str, text: bool) -> None:
            self._process, self._which, self._text = process, which, text

        def __iter__(self) -> Iterator[bytes | str]:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            for chunk in self._process.chunks(self._which):
                yield decoder.decode(chunk) if self._text else chunk

    class ContainerProcess:
        def __init__(self, process: LocalProcess, text: bool) -> None:
            self._process = process
            self.stdin = StreamWriter(process)
            self.stdout = StreamReader(process, "stdout", text)
            self.stderr = StreamReader(process, "stderr", text)

        def poll(self) -> int | None:
            return self._process.proc.poll()

        def wait(self) -> int:
            return self._process.proc.wait()

    class Sandbox:
        def __init__(self) -> None:
            self.object_id = f"sb-{uuid.uuid4().hex[:8]}"
            self._processes: list[LocalProcess] = []

        @staticmethod
        def create(*args: str, app: Any = None, name: str | None = None, image: Any = None,
                   env: dict[str, str | None] | None = None, timeout: int | None = 300, workdir: str | None = None,
                   region: str | Any = None, cpu: float | None = None, memory: int | None = None,
                   block_network: bool = False, client: Any = None) -> Sandbox:
            if app is None:
                raise ValueError("App is required when creating a Sandbox outside a Modal container")
            sandbox = Sandbox()
            rec.record("Sandbox.create", image=getattr(image, "ref", None), env=env, block_network=block_network,
                       timeout=timeout, cpu=cpu, memory=memory)
            rec.live.add(sandbox.object_id)
            return sandbox

        def exec(self, *args: str, timeout: int | None = None, workdir: str | None = None,
                 env: dict[str, str | None] | None = None, text: bool = True, bufsize: int = -1,
                 pty: bool = False) -> ContainerProcess:
            if not all(isinstance(a, str) for a in args):
                raise TypeError("exec args must be strings")
            rec.record("Sandbox.exec", args=args, text=text, workdir=workdir, env=env)
            process = LocalProcess(list(args), cwd=workdir, env={k: v for k, v in (env or {}).items() if v})
            self._processes.append(process)
            return ContainerProcess(process, text)

        def terminate(self, *, wait: bool = False) -> int | None:
            for process in self._processes:
                process.kill()
            rec.live.discard(self.object_id)
            rec.record("Sandbox.terminate", id=self.object_id)
            return None

    mod.App, mod.Image, mod.Sandbox, mod.Client, mod.recorder = App, Image, Sandbox, Client, rec  # type: ignore[attr-defined]
    mod.io_streams = types.SimpleNamespace(StreamWriter=StreamWriter, StreamReader=StreamReader)  # type: ignore[attr-defined]
    return mod


# ------------------------------------------------------------------------ e2b
def _e2b() -> types.ModuleType:
    mod = types.ModuleType("e2b_code_interpreter")
    rec = Recorder()
    api_params = {"request_timeout", "retries", "headers", "api_headers", "api_key", "validate_api_key", "domain",
                  "api_url", "debug", "proxy", "sandbox_url", "http_version"}

    class SandboxException(Exception):
        pass

    class TimeoutException(SandboxException):
        pass

    class CommandHandle:
        def __init__(self, process: LocalProcess, stdin: bool, timeout: float | None) -> None:
            self._process, self._stdin = process, stdin
            self._deadline_timer: threading.Timer | None = None
            self._timed_out = False
            if timeout:  # e2b bounds the whole stream by `timeout` (default 60 s); 0 means unlimited
                self._deadline_timer = threading.Timer(timeout, self._expire)
                self._deadline_timer.daemon = True
                self._deadline_timer.start()

        @property
        def pid(self) -> int:
            return self._process.proc.pid

        def _expire(self) -> None:
            self._timed_out = True
            self._process.kill()

        def __iter__(self) -> Iterator[tuple[str | None, str | None, None]]:
            events: list[tuple[str | None, str | None, None] | None] = []
            cond = threading.Condition()

            def pump(which: str) -> None:
                decoder = codecs.getincrementaldecoder("utf-8")("replace")
                for chunk in self._process.chunks(which):
                    text = decoder.decode(chunk)
                    if text:
                        with cond:
                            events.append((text, None, None) if which == "stdout" else (None, text, None))
                            cond.notify()
                with cond:
                    events.append(None)
                    cond.notify()

            for which in ("stdout", "stderr"):
                threading.Thread(target=pump, args=(which,), daemon=True).start()
            ended = 0
            while ended < 2:
                with cond:
                    while not events:
                        cond.wait()
                    event = events.pop(0)
                if event is None:
                    ended += 1
                else:
                    yield event
            if self._timed_out:
                raise TimeoutException("context deadline exceeded: the command stream hit its timeout")

        def send_stdin(self, data: str | bytes, request_timeout: float | None = None) -> None:
            if not self._stdin:
                raise SandboxException("stdin is not enabled for this command; start it with stdin=True")
            self._process.write(data.encode() if isinstance(data, str) else data)

        def close_stdin(self, request_timeout: float | None = None) -> None:
            self._process.close_stdin()

        def kill(self) -> bool:
            self._process.kill()
            return True

    class Commands:
        def __init__(self, owner: Sandbox) -> None:
            self._owner = owner

        def run(self, cmd: str, background: bool | None = None, envs: dict[str, str] | None = None,
                user: str | None = None, cwd: str | None = None, on_stdout: Callable[[str], None] | None = None,
                on_stderr: Callable[[str], None] | None = None, stdin: bool | None = None,
                timeout: float | None = 60, request_timeout: float | None = None) -> CommandHandle:
            if not isinstance(cmd, str):
                raise TypeError("cmd must be a shell string")
            rec.record("commands.run", cmd=cmd, background=background, envs=envs, cwd=cwd, stdin=stdin, timeout=timeout)
            if not background:
                raise NotImplementedError("the stand-in only plays background commands")
            process = LocalProcess(cmd, cwd=cwd, env=envs)
            self._owner._processes.append(process)
            return CommandHandle(process, bool(stdin), timeout)

    class Sandbox:
        def __init__(self) -> None:
            self.sandbox_id = f"e2b-{uuid.uuid4().hex[:8]}"
            self.commands = Commands(self)
            self._processes: list[LocalProcess] = []

        @classmethod
        def create(cls, template: str | None = None, timeout: int | None = None,
                   metadata: dict[str, str] | None = None, envs: dict[str, str] | None = None,
                   secure: bool | None = None, allow_internet_access: bool | None = None,
                   **opts: Any) -> Sandbox:
            unknown = set(opts) - api_params
            if unknown:
                raise TypeError(f"unexpected ApiParams {sorted(unknown)}")
            sandbox = cls()
            rec.record("Sandbox.create", template=template, timeout=timeout, envs=envs,
                       allow_internet_access=allow_internet_access, **opts)
            rec.live.add(sandbox.sandbox_id)
            return sandbox

        def kill(self, **opts: Any) -> bool:
            for process in self._processes:
                process.kill()
            rec.live.discard(self.sandbox_id)
            rec.record("Sandbox.kill", id=self.sandbox_id)
            return True

    mod.Sandbox, mod.recorder = Sandbox, rec  # type: ignore[attr-defined]
    mod.CommandHandle = CommandHandle  # type: ignore[attr-defined]
    return mod


# -------------------------------------------------------------------- daytona
def _daytona() -> types.ModuleType:
    mod = types.ModuleType("daytona")
    rec = Recorder()
    strict = ConfigDict(extra="forbid")

    class DaytonaConfig(BaseModel):
        model_config = strict
        api_key: str | None = None
        api_url: str | None = None
        target: str | None = None

    class CreateSandboxBaseParams(BaseModel):
        model_config = strict
        name: str | None = None
        env_vars: dict[str, str] | None = None
        labels: dict[str, str] | None = None
        auto_stop_interval: int | None = None
        network_block_all: bool | None = None
        ephemeral: bool | None = None
        target: str | None = None

    class CreateSandboxFromSnapshotParams(CreateSandboxBaseParams):
        snapshot: str | None = None

    class CreateSandboxFromImageParams(CreateSandboxBaseParams):
        image: str

    class SessionExecuteRequest(BaseModel):
        model_config = strict
        command: str
        run_async: bool | None = None
        var_async: bool | None = None
        suppress_input_echo: bool | None = None

    class SessionExecuteResponse(BaseModel):
        cmd_id: str
        output: str | None = None
        exit_code: int | None = None

    class Process:
        def __init__(self, owner: Sandbox) -> None:
            self._owner = owner
            self._sessions: dict[str, dict[str, tuple[LocalProcess, bool]]] = {}

        def create_session(self, session_id: str, request_timeout: float | None = None) -> None:
            self._sessions[session_id] = {}

        def execute_session_command(self, session_id: str, req: SessionExecuteRequest,
                                    timeout: int | None = None) -> SessionExecuteResponse:
            rec.record("execute_session_command", session_id=session_id, **req.model_dump())
            if not req.run_async:
                raise NotImplementedError("the stand-in only plays run_async commands")
            cmd_id = uuid.uuid4().hex
            self._sessions[session_id][cmd_id] = (LocalProcess(req.command, env=self._owner.env),
                                                  not req.suppress_input_echo)
            return SessionExecuteResponse(cmd_id=cmd_id)

        def send_session_command_input(self, session_id: str, command_id: str, data: str,
                                       request_timeout: float | None = None) -> None:
            if not isinstance(data, str):
                raise TypeError("data: Input should be a valid string")  # pydantic StrictStr in the real client
            process, echo = self._sessions[session_id][command_id]
            process.write(data.encode())
            if echo:  # the daemon echoes input into the command's output unless suppressed
                self._owner._echo.setdefault(command_id, []).append(data)

        async def get_session_command_logs_async(self, session_id: str, command_id: str,
                                                 on_stdout: Callable[[str], Any], on_stderr: Callable[[str], Any]) -> None:
            process, _ = self._sessions[session_id][command_id]
            loop = asyncio.get_running_loop()

            async def follow(which: str, callback: Callable[[str], Any]) -> None:
                chunks = process.chunks(which)
                decoder = codecs.getincrementaldecoder("utf-8")("replace")
                while True:
                    echoed = self._owner._echo.pop(command_id, []) if which == "stdout" else []
                    for text in echoed:
                        callback(text)
                    chunk = await loop.run_in_executor(None, next, chunks, None)
                    if chunk is None:
                        return
                    text = decoder.decode(chunk)
                    if text:
                        result = callback(text)
                        if asyncio.iscoroutine(result):
                            await result

            await asyncio.gather(follow("stdout", on_stdout), follow("stderr", on_stderr))

        def delete_session(self, session_id: str, request_timeout: float | None = None) -> None:
            for process, _ in self._sessions.pop(session_id, {}).values():
                process.kill()

    class Sandbox:
        def __init__(self, env: dict[str, str]) -> None:
            self.id = f"dt-{uuid.uuid4().hex[:8]}"
            self.env = env
            self.process = Process(self)
            self._echo: dict[str, list[str]] = {}

        def delete(self, timeout: float | None = 60, wait: bool = False) -> None:
            for session in list(self.process._sessions):
                self.process.delete_session(session)
            rec.live.discard(self.id)
            rec.record("Sandbox.delete", id=self.id)

    class Daytona:
        def __init__(self, config: DaytonaConfig | None = None) -> None:
            self.config = config

        def create(self, params: CreateSandboxFromSnapshotParams | CreateSandboxFromImageParams | None = None, *,
                   timeout: float = 60, on_snapshot_create_logs: Callable[[str], None] | None = None) -> Sandbox:
            rec.record("Daytona.create", **(params.model_dump() if params else {}))
            sandbox = Sandbox(dict((params.env_vars if params else None) or {}))
            rec.live.add(sandbox.id)
            return sandbox

        def delete(self, sandbox: Sandbox, timeout: float = 60, wait: bool = False) -> None:
            sandbox.delete()

    for cls in (DaytonaConfig, CreateSandboxFromSnapshotParams, CreateSandboxFromImageParams, SessionExecuteRequest,
                SessionExecuteResponse, Daytona):
        setattr(mod, cls.__name__, cls)
    mod.recorder = rec  # type: ignore[attr-defined]
    mod.Process, mod.Sandbox = Process, Sandbox  # type: ignore[attr-defined]
    return mod


# ---------------------------------------------------------------------- prime
def _prime() -> types.ModuleType:
    mod = types.ModuleType("prime_sandboxes")
    rec = Recorder()

    class SandboxNotRunningError(RuntimeError):
        pass

    class CreateSandboxRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        docker_image: str | None = None
        cpu_cores: float = 1.0
        memory_gb: float = 1.0
        network_denylist: list[str] | None = None
        timeout_minutes: int = 60
        environment_vars: dict[str, str] | None = None
        labels: list[str] = []

    class Sandbox(BaseModel):  # the fields the SDK's model requires, and the ones the adapter reads
        id: str
        name: str
        docker_image: str
        cpu_cores: float
        memory_gb: float
        disk_size_gb: float
        disk_mount_path: str
        gpu_count: int
        status: str
        timeout_minutes: int
        created_at: datetime.datetime
        updated_at: datetime.datetime

    class SandboxEgressPolicy(BaseModel):
        allowlist: list[str] | None = None
        denylist: list[str] | None = None

    class EgressPolicyStatus(BaseModel):
        policy: SandboxEgressPolicy
        generation: int
        applied_generation: int
        applied: bool

    class _Stream:
        def __init__(self, process: LocalProcess, which: str) -> None:
            self._chunks = process.chunks(which)

        def __aiter__(self) -> AsyncIterator[bytes]:
            return self

        async def __anext__(self) -> bytes:
            chunk = await asyncio.get_running_loop().run_in_executor(None, next, self._chunks, None)
            if chunk is None:
                raise StopAsyncIteration
            return chunk

    class AsyncSandboxProcess:
        """Stdin stays open until the process exits: there is no stdin-EOF operation."""

        def __init__(self, process: LocalProcess) -> None:
            self._process = process
            self.stdout = _Stream(process, "stdout")
            self.stderr = _Stream(process, "stderr")

        @property
        def pid(self) -> int:
            return self._process.proc.pid

        @property
        def returncode(self) -> int | None:
            return self._process.proc.poll()

        async def write_stdin(self, data: bytes) -> None:
            if not isinstance(data, bytes | bytearray):
                raise TypeError("write_stdin takes bytes")
            if not data:
                return
            if self._process.proc.poll() is not None:
                raise BrokenPipeError("process has exited")
            self._process.write(bytes(data))

        async def wait(self) -> int:
            return await asyncio.get_running_loop().run_in_executor(None, self._process.proc.wait)

        async def terminate(self) -> None:
            self._process.proc.terminate()

        async def kill(self) -> None:
            self._process.kill()

        async def aclose(self) -> None:
            if self._process.proc.poll() is None:
                self._process.kill()

    class AsyncSandboxClient:
        def __init__(self, api_key: str | None = None, max_connections: int = 1000,
                     max_keepalive_connections: int = 200) -> None:
            asyncio.get_running_loop()  # the real client binds httpx to the running loop
            self._running: dict[str, list[LocalProcess]] = {}
            self._created: set[str] = set()

        async def create(self, request: CreateSandboxRequest) -> Sandbox:
            rec.record("create", **request.model_dump())
            now = datetime.datetime.now(datetime.timezone.utc)
            sandbox = Sandbox(id=f"pr-{uuid.uuid4().hex[:8]}", name=request.name, docker_image=request.docker_image or "",
                              cpu_cores=request.cpu_cores, memory_gb=request.memory_gb, disk_size_gb=10.0,
                              disk_mount_path="/", gpu_count=0, status="PENDING",
                              timeout_minutes=request.timeout_minutes, created_at=now, updated_at=now)
            self._created.add(sandbox.id)
            rec.live.add(sandbox.id)
            return sandbox

        async def wait_for_creation(self, sandbox_id: str, max_attempts: int = 60, stability_checks: int = 1,
                                    image_build_timeout_seconds: int = 3000) -> None:
            if sandbox_id not in self._created:
                raise SandboxNotRunningError(sandbox_id)
            self._running.setdefault(sandbox_id, [])

        async def set_network(self, sandbox_id: str, *, allow: list[str] | None = None,
                              deny: list[str] | None = None) -> EgressPolicyStatus:
            if (allow is None) == (deny is None):
                raise ValueError("exactly one of allow or deny must be provided")
            entries = list(allow if allow is not None else deny or [])
            if not entries or ("*" in entries and entries != ["*"]):
                raise ValueError("allow or deny must contain at least one destination; '*' must be the only one")
            rec.record("set_network", sandbox_id=sandbox_id, allow=allow, deny=deny)
            # As the SDK maps it: deny ["*"] is an empty allowlist, allow ["*"] an empty denylist.
            policy = (SandboxEgressPolicy(allowlist=[]) if deny == ["*"] else SandboxEgressPolicy(denylist=[])
                      if allow == ["*"] else SandboxEgressPolicy(allowlist=allow, denylist=deny))
            return EgressPolicyStatus(policy=policy, generation=1, applied_generation=1, applied=True)

        async def open_process(self, sandbox_id: str, command: str, working_dir: str | None = None,
                               env: dict[str, str] | None = None, user: str | None = None) -> AsyncSandboxProcess:
            if sandbox_id not in self._running:
                raise SandboxNotRunningError(f"sandbox {sandbox_id} is not running")
            rec.record("open_process", sandbox_id=sandbox_id, command=command, working_dir=working_dir, env=env)
            process = LocalProcess(command, cwd=working_dir, env=env)
            self._running[sandbox_id].append(process)
            return AsyncSandboxProcess(process)

        async def delete(self, sandbox_id: str) -> dict[str, Any]:
            for process in self._running.pop(sandbox_id, []):
                if process.proc.poll() is None:
                    process.kill()
            rec.live.discard(sandbox_id)
            rec.record("delete", sandbox_id=sandbox_id)
            return {"deleted": True}

        async def aclose(self) -> None:
            return None

    mod.AsyncSandboxClient, mod.CreateSandboxRequest, mod.recorder = AsyncSandboxClient, CreateSandboxRequest, rec  # type: ignore[attr-defined]
    mod.AsyncSandboxProcess, mod.Sandbox = AsyncSandboxProcess, Sandbox  # type: ignore[attr-defined]
    mod.EgressPolicyStatus, mod.SandboxEgressPolicy = EgressPolicyStatus, SandboxEgressPolicy  # type: ignore[attr-defined]
    return mod


BUILDERS = {"modal": _modal, "e2b_code_interpreter": _e2b, "daytona": _daytona, "prime_sandboxes": _prime}
MODULE_FOR = {"modal": "modal", "e2b": "e2b_code_interpreter", "daytona": "daytona", "prime": "prime_sandboxes"}


def install(monkeypatch: pytest.MonkeyPatch, environment: str) -> Any:
    """Put the stand-in for ``environment``'s SDK into ``sys.modules``; returns the module."""
    import sys

    name = MODULE_FOR[environment]
    module = BUILDERS[name]()
    monkeypatch.setitem(sys.modules, name, module)
    return module
