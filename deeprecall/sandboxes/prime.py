"""``environment="prime"``: one Prime Intellect VM sandbox per worker, egress denied.

The SDK is async only, so an event loop runs on its own thread. The worker is
a live process from ``open_process``: ``write_stdin(bytes)`` in, async byte
iterators out. The SDK has no stdin EOF; the worker never needs one, because
the host kills the process and deletes the sandbox at query end. Egress is
set to ``deny=["*"]`` before the worker starts.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future
from typing import Any

from pydantic import Field

from deeprecall.errors import SandboxError
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.streams import AsyncRunner, StreamChannel, import_sdk, shell_command


class PrimeSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="prime"``."""

    image: str = Field("python:3.12-slim", description="docker image with python3")
    python: str = Field("python3", description="interpreter inside the image")
    cpu_cores: float = Field(1.0, gt=0, description="CPU cores per sandbox")
    timeout_minutes: int = Field(30, ge=1, description="lifetime of one sandbox")
    api_key: str | None = Field(None, description="Prime API key (default: the prime CLI's config)")
    start_timeout: float = Field(300.0, gt=0, description="seconds to wait for a VM and its worker")


class PrimeSandbox:
    name = "prime"

    def __init__(self, **kwargs: Any) -> None:
        self.settings = PrimeSettings(**kwargs)
        self._sdk = import_sdk("prime_sandboxes", "prime-sandboxes", "prime", "environment='prime'")
        self._runner = AsyncRunner("deeprecall-prime")
        self._client: Any = None
        self._teardowns: list[Future[None]] = []
        self._lock = threading.Lock()

    async def _make_client(self) -> Any:
        return self._sdk.AsyncSandboxClient(api_key=self.settings.api_key)

    def _client_now(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._runner.run(self._make_client())
            return self._client

    async def _start(self, client: Any) -> tuple[str, Any]:
        s = self.settings
        memory_gb = max(0.5, (s.memory_mb or 1024) / 1024)
        request = self._sdk.CreateSandboxRequest(name=f"deeprecall-{uuid.uuid4().hex[:12]}", docker_image=s.image,
                                                 cpu_cores=s.cpu_cores, memory_gb=memory_gb,
                                                 timeout_minutes=s.timeout_minutes, environment_vars={})
        sandbox = await client.create(request)
        try:
            await client.wait_for_creation(sandbox.id)
            await client.set_network(sandbox.id, deny=["*"])
            process = await client.open_process(sandbox.id, shell_command(s.python), working_dir="/tmp", env={})
        except BaseException:
            await client.delete(sandbox.id)
            raise
        return sandbox.id, process

    def start_worker(self) -> StreamChannel:
        client = self._client_now()
        try:
            sandbox_id, process = self._runner.run(self._start(client), timeout=self.settings.start_timeout)
        except Exception as e:
            raise SandboxError(f"prime could not start a sandbox worker: {e}") from e

        async def teardown() -> None:
            try:
                await process.kill()
                await process.aclose()
            finally:
                await client.delete(sandbox_id)

        def send(data: bytes) -> None:
            self._runner.run(process.write_stdin(data), timeout=60)

        def stop() -> None:
            with self._lock:
                self._teardowns = [f for f in self._teardowns if not f.done()] + [self._runner.spawn(teardown())]

        channel = StreamChannel(send=send, stop=stop)

        async def pump(stream: Any, feed: Any, last: bool) -> None:
            try:
                async for chunk in stream:
                    feed(chunk)
            except Exception as e:
                channel.feed_stderr(f"prime stream ended: {e}\n")
            finally:
                if last:
                    channel.end()

        self._runner.spawn(pump(process.stdout, channel.feed, True))
        self._runner.spawn(pump(process.stderr, channel.feed_stderr, False))
        return channel

    def close(self) -> None:
        """Wait for sandboxes being deleted, then close the client and the loop."""
        with self._lock:
            pending = list(self._teardowns)
        for future in pending:
            try:
                future.result(timeout=30)
            except Exception:
                pass
        if self._client is not None:
            try:
                self._runner.run(self._client.aclose(), timeout=30)
            except Exception:
                pass
        self._runner.close()
