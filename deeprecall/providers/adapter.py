"""The skeleton every remote adapter shares: ``ChatAdapter``.

An adapter subclass supplies only what differs between API shapes:

    _complete(messages, timeout) -> Completion   the call (raise anything; see _map_error)
    _map_error(error) -> ProviderError | None    this shape's errors; None re-raises the original

and this base holds the rest, once: the model name and ``where`` label that
every error starts with, the secrets redacted from error text (the key and
every header value) and kept out of ``repr``, sampling arguments, the
``CostModel`` and ``has_price``, the ``Completion`` built from token counts,
and the rule that a vendor error leaves ``complete`` as a ``ProviderError``
(``raise ... from None``, so no traceback carries a key).
"""

from __future__ import annotations

from typing import Any

from deeprecall.errors import ProviderError
from deeprecall.providers.base import Completion, Message
from deeprecall.providers.pricing import CostModel


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

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        try:
            return self._complete(messages, timeout)
        except ProviderError:
            raise
        except Exception as e:
            mapped = self._map_error(e)
            if mapped is None:
                raise
            raise mapped from None

    def _complete(self, messages: list[Message], timeout: float | None) -> Completion:
        raise NotImplementedError

    def _map_error(self, error: Exception) -> ProviderError | None:
        return None

    def _completion(self, text: str, input_tokens: int, output_tokens: int, usage: Any = None,
                    finish_reason: str | None = None, model: str | None = None) -> Completion:
        """A ``Completion`` priced by this model's ``CostModel`` (``usage`` may carry a reported cost)."""
        return Completion(text=text, model=model or self.model_name, input_tokens=input_tokens,
                          output_tokens=output_tokens, cost_usd=self._cost.cost(input_tokens, output_tokens, usage),
                          finish_reason=finish_reason)

    def close(self) -> None:
        return None
