"""DeepRecall's error tree. Every error a user can see is one of these.

    DeepRecallError
    ├── ConfigError            bad config or arguments; the message names the fix
    │   └── MissingDependencyError   an optional extra is not installed
    ├── ProviderError          an LLM backend failed (auth, network, bad response)
    │   ├── MissingAPIKeyError       no key for a backend that needs one
    │   └── ContextWindowExceeded    the prompt does not fit the model's context window
    ├── SandboxError           the sandbox could not start or broke its protocol
    │   └── SandboxHung              a cell ignored its timeout and its worker was killed
    ├── VectorStoreError       the store failed or does not fit (dimension, schema)
    │   ├── FilterError              a filter is not in DeepRecall's filter language
    │   ├── ReadOnlyStoreError       a write (ingest) to a store opened read-only
    │   └── StoreFullError           the disk holding the store is full (a re-run after freeing space completes)
    ├── QueryLimitExceeded     a per-query limit tripped (internal; surfaces as result.error)
    └── QueryEndedEarly        a query ended early, raised where a caller asked (raise_on_error=True)

Vendor errors are mapped at each adapter's edge with ``raise ... from e`` so that
callers catch one tree. Messages never contain secrets: see ``redact``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deeprecall.results import QueryResult

_SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{10,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
]


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove known secrets and anything shaped like an API key from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


class DeepRecallError(Exception):
    """Base of every error DeepRecall raises on purpose."""


class ConfigError(DeepRecallError, ValueError):
    """The configuration or an argument is wrong. The message says how to fix it."""


class MissingDependencyError(ConfigError, ImportError):
    """An optional dependency is missing; the message names the pip extra."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package. Install it with: pip install 'deeprecall[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ProviderError(DeepRecallError):
    """An LLM backend call failed. ``retryable`` tells pools whether to fail over."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.retryable = retryable
        self.status = status


class MissingAPIKeyError(ProviderError, ConfigError):
    """A backend needs a key that is not set. The message names the env var."""


class ContextWindowExceeded(ProviderError):
    """The prompt is longer than the model's context window. Not retryable as is:
    the engine compacts the history and tries once more, else ends the query
    with ``error="context_window"``."""

    def __init__(self, message: str, *, prompt_tokens: int | None = None, window: int | None = None) -> None:
        super().__init__(message, retryable=False, status=400)
        self.prompt_tokens = prompt_tokens
        self.window = window


class SandboxError(DeepRecallError):
    """The sandbox failed to start, died, or broke the worker protocol."""


class SandboxHung(SandboxError):
    """The worker gave no sign of life within its cell's timeout plus grace (or by the
    query's deadline) and was killed. Not a crash to recover from by restarting: the
    engine ends the query as ``cell_timeout``."""


class VectorStoreError(DeepRecallError):
    """The vector store failed or does not match what DeepRecall was told."""


class FilterError(VectorStoreError, ConfigError):
    """A filter is not in DeepRecall's filter language."""


class ReadOnlyStoreError(VectorStoreError):
    """A write to a store opened read-only (the default for a store DeepRecall did not create).

    Its own type so a caller (the CLI, a server) can tell "you said not to write here" from a store that failed."""

    def __init__(self, store: str) -> None:
        super().__init__(
            f"{store} is open read-only, so DeepRecall will not write to it. To ingest into it, set "
            f"`writable: true` in the store section of deeprecall.yaml (CLI: --writable; Python: writable=True)."
        )


class StoreFullError(VectorStoreError):
    """The disk holding the store is full, so a write failed.

    Its own type so a caller can tell "free space and run again" from a broken store: every store writes a batch
    whole or not at all and ingestion ids are content hashes, so the same ingestion re-run after freeing space
    adds exactly the documents that are missing."""

    def __init__(self, store: str, action: str, cause: str) -> None:
        super().__init__(
            f"{store}: {action} failed: the disk holding the store is full ({cause}). Free space there and run the "
            "same ingestion again: what was written stays, and the re-run adds only the documents still missing."
        )


class QueryLimitExceeded(DeepRecallError):
    """A per-query limit tripped. The engine turns this into ``result.error``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QueryEndedEarly(DeepRecallError):
    """A query ended before the model finished (``result.error``: a limit, ``llm_error``...). Raised only where
    the caller asked for it (the framework adapters' ``raise_on_error=True``); ``query()`` returns the result
    instead. ``result`` is the whole ``QueryResult``, with its best partial answer."""

    def __init__(self, result: QueryResult) -> None:
        super().__init__(f"the query ended early ({result.error}): {result.error_message or 'no message'}")
        self.result = result
