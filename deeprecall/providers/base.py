"""The Protocol every LLM backend implements.

A ``ChatModel`` is stateless with respect to usage: it returns token counts and
cost on each ``Completion`` and the engine's per-query meter adds them up. That
is what keeps concurrent queries on one engine from mixing their usage.
Implementations must be safe to call from several threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, runtime_checkable

from deeprecall.errors import ProviderError, redact

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """One chat completion. ``cost_usd`` is None when nobody knows the price.

    ``finish_reason`` is ``"length"`` when the reply was cut at the output-token
    limit (the engine must not run a half-written code block), ``"stop"`` when the
    model ended it, None when the backend does not say.
    """

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None


OnDelta = Callable[[str], None]


@runtime_checkable
class ChatModel(Protocol):
    """One configured LLM: a backend, a model name, its credentials.

    ``model_name`` is the name ``llm_query(model=...)`` selects it by.
    ``has_price`` is True when every ``Completion`` will carry ``cost_usd``
    (provider-reported cost, litellm's price table, or user ``pricing``); the
    engine refuses ``max_cost_usd`` when a model cannot be priced.
    ``complete`` raises ``ProviderError`` (with ``retryable`` set for 408/429/5xx/timeouts).

    Streaming is a keyword of ``complete``, not a second method, because the
    caller always wants the same thing back (one ``Completion``: text, tokens,
    cost, finish reason, metered exactly as before) and only sometimes wants
    to watch it arrive:

    - ``on_delta=None`` (the default) is the plain, non-streaming call, at no
      extra cost: most calls have nobody watching, and this is the hot path.
    - ``on_delta`` given: the model makes a streaming call and calls
      ``on_delta(text)`` with each piece of reply text as it arrives, in order,
      on the calling thread; the pieces join to ``Completion.text``. Retries
      and pool failover happen only before the first piece is delivered;
      after it an error is raised as a non-retryable ``ProviderError`` (a retry
      would send the consumer the reply twice). An exception raised by
      ``on_delta`` itself propagates unchanged and ends the call. A model that
      cannot stream calls ``on_delta(text)`` once with the whole reply.

    A method rather than ``stream()`` returning an iterator keeps every wrapper
    (pools, hybrid, the engine's metering) one call deep, and lets a provider
    that cannot stream satisfy the contract with one line.
    """

    model_name: str
    has_price: bool

    def complete(
        self, messages: list[Message], *, timeout: float | None = None, on_delta: OnDelta | None = None
    ) -> Completion: ...

    def close(self) -> None: ...


_watchers = threading.local()


@contextmanager
def rate_limit_watcher(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` for each 429 a call made on this thread meets, also those its provider retries
    itself (the engine's adaptive sub-call limit backs off on them; it would otherwise see only the last)."""
    previous = getattr(_watchers, "callback", None)
    _watchers.callback = callback
    try:
        yield
    finally:
        _watchers.callback = previous


def rate_limited() -> None:
    """A provider met a 429 on this thread: tell the watcher, if any (``rate_limit_watcher``)."""
    callback = getattr(_watchers, "callback", None)
    if callback is not None:
        callback()


def is_transport_error(error: BaseException) -> bool:
    """A timeout or connection failure from httpx or its successor httpx2 (google-genai uses either)."""
    return any(
        cls.__name__ == "TransportError" and cls.__module__.split(".")[0] in ("httpx", "httpx2")
        for cls in type(error).__mro__
    )


def retryable_status(status: int | None) -> bool:
    """The HTTP statuses worth retrying or failing over on: timeouts, conflicts, rate limits, server errors."""
    return status is not None and (status in (408, 409, 429) or status >= 500)


def map_sdk_error(sdk: ModuleType, error: Exception, where: str, service: str, secrets: list[str]) -> ProviderError:
    """Map an error from the openai or anthropic SDK (both Stainless-generated, same error tree).

    Status errors keep their status and are retryable per ``retryable_status``;
    timeouts, connection failures and malformed 200s are retryable; keys are redacted."""
    if isinstance(error, sdk.APIStatusError):
        return ProviderError(f"{where}: HTTP {error.status_code}: {redact(str(error.message), secrets)}",
                             retryable=retryable_status(error.status_code), status=error.status_code)
    if isinstance(error, (sdk.APITimeoutError, sdk.APIConnectionError)):
        return ProviderError(f"{where}: {type(error).__name__}: cannot reach {service}", retryable=True)
    if isinstance(error, ValueError):  # a 200 whose body is not JSON
        return ProviderError(f"{where}: malformed response ({type(error).__name__})", retryable=True)
    return ProviderError(f"{where}: {type(error).__name__}: {redact(str(error), secrets)}", retryable=True)
