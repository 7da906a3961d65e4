"""``environment="daytona"``: one ephemeral Daytona sandbox per worker, all network blocked.

Daytona has no exec call with a live stdin *stream*, so this uses the
narrowest channel it offers: an async session command. Input goes through
``send_session_command_input`` (one HTTP request per protocol message, str
only, which the ASCII protocol satisfies) with input echo suppressed; output
comes back from the async log stream ``get_session_command_logs_async``,
demultiplexed into stdout and stderr, run on our own event loop thread.
There is no stdin EOF; the session and the sandbox are deleted at query end.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from pydantic import Field

from deeprecall.errors import SandboxError
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.streams import AsyncRunner, StreamChannel, Teardowns, import_sdk, shell_command


class DaytonaSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="daytona"``."""

    snapshot: str | None = Field(None, description="snapshot with python3 (default: Daytona's default)")
    image: str | None = Field(None, description="image with python3, instead of a snapshot")
    python: str = Field("python3", description="interpreter inside the sandbox")
    api_key: str | None = Field(None, description="Daytona API key (default: DAYTONA_API_KEY)")
    api_url: str | None = Field(None, description="Daytona API URL")
    target: str | None = Field(None, description="Daytona target (region)")
    start_timeout: float = Field(120.0, gt=0, description="seconds to wait for a sandbox and its worker")


class DaytonaSandbox:
    name = "daytona"

    def __init__(self, **kwargs: Any) -> None:
        self.settings = DaytonaSettings(**kwargs)
        self._sdk = import_sdk("daytona", "daytona", "daytona", "environment='daytona'")
        self._client: Any = None
        self._runner: AsyncRunner | None = None
        self._lock = threading.Lock()
        self._teardowns = Teardowns("deeprecall-daytona-stop")

    def _setup(self) -> tuple[Any, AsyncRunner]:
        with self._lock:
            if self._client is None:
                s, sdk = self.settings, self._sdk
                given = {k: v for k, v in {"api_key": s.api_key, "api_url": s.api_url, "target": s.target}.items() if v}
                self._client = sdk.Daytona(sdk.DaytonaConfig(**given)) if given else sdk.Daytona()
                self._runner = AsyncRunner("deeprecall-daytona-logs")
            assert self._runner is not None
            return self._client, self._runner

    def _params(self) -> Any:
        s, sdk = self.settings, self._sdk
        common = {"network_block_all": True, "ephemeral": True, "env_vars": {}, "labels": {"deeprecall": "sandbox"}}
        if s.image:
            return sdk.CreateSandboxFromImageParams(image=s.image, **common)
        return sdk.CreateSandboxFromSnapshotParams(snapshot=s.snapshot, **common)

    def start_worker(self) -> StreamChannel:
        s, sdk = self.settings, self._sdk
        client, runner = self._setup()
        try:
            sandbox = client.create(self._params(), timeout=s.start_timeout)
        except Exception as e:
            raise SandboxError(f"daytona could not create a sandbox: {e}") from e
        session = f"deeprecall-{uuid.uuid4().hex[:12]}"
        try:
            sandbox.process.create_session(session)
            request = sdk.SessionExecuteRequest(command=shell_command(s.python), run_async=True, suppress_input_echo=True)
            command_id = sandbox.process.execute_session_command(session, request).cmd_id
        except Exception as e:
            self._teardowns.run(sandbox.delete)
            raise SandboxError(f"daytona could not start the worker: {e}") from e

        def send(data: bytes) -> None:
            sandbox.process.send_session_command_input(session, command_id, data.decode("ascii"))

        channel = StreamChannel(send=send, stop=lambda: self._teardowns.run(
            lambda: sandbox.process.delete_session(session), sandbox.delete))
        logs = runner.spawn(sandbox.process.get_session_command_logs_async(
            session, command_id, channel.feed, channel.feed_stderr))
        logs.add_done_callback(lambda _: channel.end())
        return channel

    def close(self) -> None:
        self._teardowns.wait()
        if self._runner is not None:
            self._runner.close()
