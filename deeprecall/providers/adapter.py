"""The skeleton every remote adapter shares: ``ChatAdapter``.

An adapter subclass supplies only what differs between API shapes:

    _complete(messages, timeout) -> Completion          the call (raise anything; see _map_error)
    _stream(messages, timeout, deltas) -> Completion    the streaming call: each text piece to ``deltas``
    _map_error(error) -> ProviderError | None           this shape's errors; None re-raises the original

and this base holds the rest, once: the model name and ``where`` label that
every error starts with, the secrets redacted from error text (the key and
every header value) and kept out of ``repr``, sampling arguments, the
``CostModel`` and ``has_price``, the ``Completion`` built from token counts,
and the rule that a vendor error leaves ``complete`` as a ``ProviderError``
(``raise ... from None``, so no traceback carries a key).

Streaming (``complete(..., on_delta=f)``) goes through ``Deltas``, which
remembers whether a piece was delivered: an error after the first piece is
raised non-retryable (nothing may retry a reply the consumer has half seen), and
an exception raised by ``f`` itself is re-raised untouched, never mapped. A
subclass without ``_stream`` delivers its whole reply as one piece.
"""

from __future__ import annotations

from typing import Any

from deeprecall.errors import ProviderError
from deeprecall.providers.base import Completion, Message, OnDelta
from deeprecall.providers.pricing import CostModel


class Deltas:
    """Hands a streamed reply's pieces to the caller's ``on_delta`` and keeps the text so far."""

    __slots__ = ("_on_delta", "error", "parts")

    def __init__(self, on_delta: OnDelta) -> None:
        self._on_delta = on_delta
        self.parts: list[str] = []
        self.error: BaseException | None = None  # raised by on_delta: propagates unchanged

    def __call__(self, piece: str) -> None:
        if not piece:
            return
        self.parts.append(piece)
        try:
            self._on_delta(piece)
        except BaseException as e:
            self.error = e
            raise

    @property
    def started(self) -> bool:
        return bool(self.parts)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def fail(self, error: ProviderError) -> ProviderError:
        """``error`` as it must leave a stream: not retryable once a piece was delivered."""
        if not self.started or not error.retryable:
            return error
        text = f"{error} (after {len(self.text)} characters of the reply were streamed; not retried)"
        return ProviderError(text, retryable=False, status=error.status)


def stream_once(model: Any, messages: list[Message], timeout: float | None, on_delta: OnDelta) -> Completion:
    """The fallback for a model that cannot stream: the plain call, then its whole text as one piece."""
    completion: Completion = model.complete(messages, timeout=timeout)
    if completion.text:
        on_delta(completion.text)
    return completion


class ChatAdapter:
    """Shared set-up and error handling of the adapters in this package; see the module docstring."""

    provider = "openai"

    def __init__(self, model_name: str, *, provider: str, base_url: str | None = None, api_key: str | None = None,
                 default_headers: dict[str, str] | None = None, sampling_args: dict[str, Any] | None = None,
                 cost: CostModel | None = None) -> None:
        self.model_name = model_name
        self.base_url = base_url
        self.provider = provider
        self._where = f"{provider}:{model_name}"
        self._secrets = [s for s in [api_key, *(default_headers or {}).values()] if s]
        self._sampling = dict(sampling_args or {})
        self._cost = cost or CostModel(None)
        self.has_price = self._cost.has_price

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_name={self.model_name!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message], *, timeout: float | None = None,
                 on_delta: OnDelta | None = None) -> Completion:
        if on_delta is None:  # the hot path: exactly the plain call
            try:
                return self._complete(messages, timeout)
            except ProviderError:
                raise
            except Exception as e:
                mapped = self._map_error(e)
                if mapped is None:
                    raise
                raise mapped from None
        deltas = Deltas(on_delta)
        try:
            return self._stream(messages, timeout, deltas)
        except ProviderError as e:
            failed = deltas.fail(e)
            if failed is e:
                raise
            raise failed from None
        except Exception as e:
            if e is deltas.error:
                raise
            mapped = self._map_error(e)
            if mapped is None:
                raise
            raise deltas.fail(mapped) from None

    def _complete(self, messages: list[Message], timeout: float | None) -> Completion:
        raise NotImplementedError

    def _stream(self, messages: list[Message], timeout: float | None, deltas: Deltas) -> Completion:
        """Override to stream; this default delivers the whole reply as one piece."""
        completion = self._complete(messages, timeout)
        deltas(completion.text)
        return completion

    def _map_error(self, error: Exception) -> ProviderError | None:
        return None

    def _completion(self, text: str, input_tokens: int, output_tokens: int, usage: Any = None,
                    finish_reason: str | None = None, model: str | None = None) -> Completion:
        """A ``Completion`` priced by this model's ``CostModel`` (``usage`` may carry a reported cost)."""
        return Completion(text=text, model=model or self.model_name, input_tokens=input_tokens,
                          output_tokens=output_tokens, cost_usd=self._cost.cost(input_tokens, output_tokens, usage),
                          finish_reason=finish_reason)

    def _streamed(self, deltas: Deltas, input_tokens: int, output_tokens: int, usage: Any = None,
                  finish_reason: str | None = None, model: str | None = None) -> Completion:
        """The ``Completion`` of a finished stream: its text is what ``deltas`` delivered."""
        return self._completion(deltas.text, input_tokens, output_tokens, usage, finish_reason, model)

    def close(self) -> None:
        return None

