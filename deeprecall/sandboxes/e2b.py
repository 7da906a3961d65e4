"""``environment="e2b"``: one E2B sandbox per worker, internet access off.

The worker is a background command started with ``stdin=True`` and no
command timeout (``timeout=0``: E2B's default of 60 s would cut the stream
mid-query). ``send_stdin`` carries the protocol in; iterating the handle
yields decoded stdout/stderr strings, which is fine because the protocol is
ASCII. The API key stays on the host (``E2B_API_KEY`` or ``api_key`` here).
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import Field

from deeprecall.errors import SandboxError
from deeprecall.sandboxes.base import SandboxSettings
from deeprecall.sandboxes.streams import StreamChannel, Teardowns, import_sdk, shell_command


class E2BSettings(SandboxSettings):
    """``environment_kwargs`` for ``environment="e2b"``."""

    template: str | None = Field(None, description="sandbox template; default: the code-interpreter template")
    python: str = Field("python3", description="interpreter inside the template")
    sandbox_timeout: int = Field(900, ge=10, description="lifetime of one sandbox, seconds")
    api_key: str | None = Field(None, description="E2B API key (default: E2B_API_KEY)")
    start_timeout: float = Field(120.0, gt=0, description="seconds to wait for a sandbox and its worker")


class E2BSandbox:
    name = "e2b"

    def __init__(self, **kwargs: Any) -> None:
        self.settings = E2BSettings(**kwargs)
        self._sdk = import_sdk("e2b_code_interpreter", "e2b-code-interpreter", "e2b", "environment='e2b'")
        self._teardowns = Teardowns("deeprecall-e2b-stop")

    def start_worker(self) -> StreamChannel:
        s = self.settings
        opts = {"api_key": s.api_key} if s.api_key else {}
        try:
            sandbox = self._sdk.Sandbox.create(template=s.template, timeout=s.sandbox_timeout,
                                               allow_internet_access=False, **opts)
        except Exception as e:
            raise SandboxError(f"e2b could not create a sandbox: {e}") from e
        try:
            handle = sandbox.commands.run(shell_command(s.python), background=True, stdin=True, timeout=0,
                                          cwd="/tmp", envs={})
        except Exception as e:
            self._teardowns.run(sandbox.kill)
            raise SandboxError(f"e2b could not start the worker: {e}") from e

        channel = StreamChannel(send=handle.send_stdin, stop=lambda: self._teardowns.run(handle.kill, sandbox.kill))

        def read() -> None:
            try:
                for out, err, _pty in handle:
                    if out is not None:
                        channel.feed(out)
                    elif err is not None:
                        channel.feed_stderr(err)
            except Exception as e:
                channel.feed_stderr(f"e2b stream ended: {e}\n")
            finally:
                channel.end()

        threading.Thread(target=read, name="deeprecall-e2b-read", daemon=True).start()
        return channel

    def close(self) -> None:
        self._teardowns.wait()
