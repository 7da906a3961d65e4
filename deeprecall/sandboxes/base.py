"""What a sandbox provides: a fresh worker process behind a byte stream.

Lifecycle: ``Sandbox.start_worker()`` launches ``python3 -c BOOTSTRAP N`` (see
``protocol.launch_command``) somewhere isolated and returns a ``WorkerChannel``
wired to its stdin and stdout. ``WorkerSession`` (protocol.py) then does the
rest, identically for every sandbox. A channel is used by exactly one query
and killed when that query ends; a worker is never reused.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class SandboxSettings(BaseModel):
    """Per-query limits every sandbox honours; ``environment_kwargs`` sets them.

    Each sandbox subclasses this with its own fields (image, API key ...).
    Unknown keys are rejected so a typo does not silently drop a limit.
    """

    model_config = ConfigDict(extra="forbid")
    cell_timeout: float = Field(30.0, gt=0, le=3600, description="seconds one cell may run (host calls excluded)")
    output_cap: int = Field(20_000, ge=100, le=10_000_000, description="characters of stdout/stderr kept per cell")
    memory_mb: int | None = Field(1024, ge=32, description="address-space limit of the worker")
    cpu_seconds: int | None = Field(120, ge=1, description="CPU-time limit of the worker")
    max_file_mb: int | None = Field(64, ge=1, description="largest file the worker may write")
    pool_size: int = Field(2, ge=0, le=256, description="workers kept started and idle")
    start_timeout: float = Field(30.0, gt=0, description="seconds to wait for a worker to start")

    def limits(self) -> dict[str, Any]:
        """Limits the worker applies to itself with setrlimit."""
        return {"memory_mb": self.memory_mb, "cpu_seconds": self.cpu_seconds, "max_file_mb": self.max_file_mb}


@runtime_checkable
class WorkerChannel(Protocol):
    """A duplex byte stream to one worker process.

    ``readline(limit)`` returns one line including its newline, at most ``limit``
    bytes (a longer line comes back cut, without its newline), or ``b""`` at EOF.
    ``kill`` must end the worker and everything it started, and must make a
    blocked ``readline`` return. Both ``kill`` and ``close`` are idempotent.
    """

    def write(self, data: bytes) -> None: ...

    def readline(self, limit: int = -1) -> bytes: ...

    def kill(self) -> None: ...

    def diagnostics(self) -> str:
        """The tail of the worker's stderr, for error messages when it dies."""
        ...


@runtime_checkable
class Sandbox(Protocol):
    """A place to run workers. ``name`` is the ``environment`` value."""

    name: str
    settings: SandboxSettings

    def start_worker(self) -> WorkerChannel: ...

    def close(self) -> None: ...
