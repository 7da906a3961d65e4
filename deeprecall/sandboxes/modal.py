"""``environment="modal"``: one Modal Sandbox per worker, network blocked.

The worker runs through ``Sandbox.exec(..., text=False)``; its ``ContainerProcess``
gives a byte stdin (``write`` + ``drain``, ``write_eof``) and byte stdout and
stderr streams, which carry the protocol unchanged. The Modal credentials stay
on the host (``~/.modal.toml``, ``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET`` or
``token_id``/``token_secret`` here); the sandbox gets no environment from us.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import Field

from deeprecall.errors import SandboxError
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.protocol import launch_command
from deeprecall.sandboxes.streams import REMOTE_ENV, REMOTE_FLAGS, StreamChannel, Teardowns, import_sdk


class ModalSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="modal"``."""

    app_name: str = Field("deeprecall-sandbox", description="Modal app the sandboxes belong to")
    image: str | None = Field(None, description="registry image with python3; default modal.Image.debian_slim()")
    python: str = Field("python3", description="interpreter inside the image")
    cpu: float = Field(1.0, gt=0, description="CPU cores per sandbox")
    sandbox_timeout: int = Field(900, ge=10, description="lifetime of one sandbox, seconds")
    region: str | None = Field(None, description="Modal region(s)")
    token_id: str | None = Field(None, description="Modal token id (default: Modal's own config)")
    token_secret: str | None = Field(None, description="Modal token secret")
    start_timeout: float = Field(180.0, gt=0, description="seconds to wait for a sandbox and its worker")


class ModalSandbox:
    name = "modal"

    def __init__(self, **kwargs: Any) -> None:
        self.settings = ModalSettings(**kwargs)
        self._modal = import_sdk("modal", "modal", "modal", "environment='modal'")
        self._app: Any = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._teardowns = Teardowns("deeprecall-modal-stop")

    def _context(self) -> tuple[Any, Any]:
        with self._lock:
            if self._app is None:
                s, modal = self.settings, self._modal
                if s.token_id and s.token_secret:
                    self._client = modal.Client.from_credentials(s.token_id, s.token_secret)
                self._app = modal.App.lookup(s.app_name, create_if_missing=True, client=self._client)
            return self._app, self._client

    def start_worker(self) -> StreamChannel:
        s, modal = self.settings, self._modal
        try:
            app, client = self._context()
            image = modal.Image.from_registry(s.image) if s.image else modal.Image.debian_slim()
            sandbox = modal.Sandbox.create(app=app, image=image, block_network=True, timeout=s.sandbox_timeout,
                                           cpu=s.cpu, memory=s.memory_mb, region=s.region, client=client)
        except Exception as e:
            raise SandboxError(f"modal could not create a sandbox: {e}") from e
        try:
            process = sandbox.exec(*launch_command(s.python, REMOTE_FLAGS), text=False, workdir="/tmp",
                                   env=dict(REMOTE_ENV))
        except Exception as e:
            self._teardowns.run(sandbox.terminate)
            raise SandboxError(f"modal could not start the worker: {e}") from e

        def send(data: bytes) -> None:
            process.stdin.write(data)
            process.stdin.drain()

        channel = StreamChannel(send=send, stop=lambda: self._teardowns.run(sandbox.terminate))
        _pump(process.stdout, channel.feed, channel.end)
        _pump(process.stderr, channel.feed_stderr, None)
        return channel

    def close(self) -> None:
        self._teardowns.wait()


def _pump(stream: Any, feed: Any, done: Any) -> None:
    def run() -> None:
        try:
            for chunk in stream:
                feed(chunk)
        except Exception:
            pass
        finally:
            if done is not None:
                done()

    threading.Thread(target=run, name="deeprecall-modal-read", daemon=True).start()
