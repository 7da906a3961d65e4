"""The ``litellm`` backend: one ChatModel over litellm's 100+ providers.

rlms 0.1.3 dropped its litellm client, so DeepRecall brings its own. litellm is
an optional extra (``pip install 'deeprecall[litellm]'``): it is imported only
when this backend or a pool is built, with its remote price-map fetch turned
off so that import never touches the network.
"""

from __future__ import annotations

import os
from typing import Any

from deeprecall.errors import MissingDependencyError, ProviderError, redact
from deeprecall.providers.base import Completion, Message, retryable_status
from deeprecall.providers.pricing import CostModel, Price, parse_pricing


def import_litellm(purpose: str) -> Any:
    """Import litellm quietly and offline, or raise an error naming the extra."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError as e:
        raise MissingDependencyError("litellm", "litellm", purpose) from e
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def map_litellm_error(litellm: Any, e: Exception, where: str, secrets: list[str]) -> ProviderError:
    """One litellm exception -> ``ProviderError``; timeouts and connection errors are retryable."""
    status = getattr(e, "status_code", None)
    status = status if isinstance(status, int) else None
    transient = isinstance(
        e,
        (
            litellm.Timeout,
            litellm.APIConnectionError,
            litellm.RateLimitError,
            litellm.ServiceUnavailableError,
            litellm.InternalServerError,
        ),
    )
    message = redact(str(e).splitlines()[0] if str(e) else type(e).__name__, secrets)
    return ProviderError(
        f"{where}: {type(e).__name__}: {message}", retryable=transient or retryable_status(status), status=status
    )


def litellm_price(litellm: Any, model: str) -> Price | None:
    """litellm's own lookup, which understands its ``provider/model`` names."""
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return None
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    return Price(float(inp), float(out or 0.0), source="litellm") if inp is not None else None


class LiteLLMChatModel:
    """``litellm.completion`` behind the ChatModel protocol. Keys come from each provider's env var or ``api_key``."""

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        sampling_args: dict[str, Any] | None = None,
        pricing: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._litellm = import_litellm("backend 'litellm'")
        self.model_name = model_name
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._sampling = dict(sampling_args or {})
        self._extra = dict(extra or {})
        price = parse_pricing(pricing) if pricing is not None else litellm_price(self._litellm, model_name)
        self._cost = CostModel(price)
        self.has_price = self._cost.has_price

    def __repr__(self) -> str:
        return f"LiteLLMChatModel(model_name={self.model_name!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        where = f"litellm:{self.model_name}"
        secrets = [self._api_key] if self._api_key else []
        try:
            response = self._litellm.completion(
                model=self.model_name,
                messages=messages,
                api_key=self._api_key,
                api_base=self.base_url,
                timeout=timeout or self._timeout,
                num_retries=self._max_retries,
                **self._sampling,
                **self._extra,
            )
        except Exception as e:
            raise map_litellm_error(self._litellm, e, where, secrets) from None
        return to_completion(response, self.model_name, self._cost, where)

    def close(self) -> None:
        return None


def to_completion(response: Any, model: str, cost: CostModel, where: str) -> Completion:
    """A litellm ``ModelResponse`` -> ``Completion``, priced by ``cost``."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderError(f"{where}: the server returned no choices", retryable=True)
    text = getattr(choices[0].message, "content", None) or ""
    usage = getattr(response, "usage", None)
    inp = int(getattr(usage, "prompt_tokens", 0) or 0)
    out = int(getattr(usage, "completion_tokens", 0) or 0)
    return Completion(text=text, model=model, input_tokens=inp, output_tokens=out, cost_usd=cost.cost(inp, out, usage))
