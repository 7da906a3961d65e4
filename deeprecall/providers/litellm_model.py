"""The ``litellm`` backend: one ChatModel over litellm's 100+ providers.

rlms 0.1.3 dropped its litellm client, so DeepRecall brings its own. litellm is
an optional extra (``pip install 'deeprecall[litellm]'``): it is imported only
when this backend or a pool is built, with its remote price-map fetch turned
off so that import never touches the network. Its ``SHAPE`` reads its own
backend_kwargs (any litellm model string, ``extra`` passed through), for the
``litellm`` backend and for a ``litellm`` member of a pool alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from deeprecall.errors import ConfigError, MissingDependencyError, ProviderError, redact
from deeprecall.providers.adapter import ChatAdapter, Deltas
from deeprecall.providers.base import Completion, Message, retryable_status
from deeprecall.providers.pricing import CostModel, Price, parse_pricing
from deeprecall.providers.shapes import ApiShape

if TYPE_CHECKING:
    from deeprecall.providers.base import ChatModel
    from deeprecall.providers.endpoint import Endpoint
    from deeprecall.providers.registry import ProviderSpec

OPTIONS = frozenset(
    {"model", "model_name", "api_key", "base_url", "timeout", "max_retries", "sampling_args", "pricing", "extra"}
)


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


class LiteLLMChatModel(ChatAdapter):
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
        cost: CostModel | None = None,
    ) -> None:
        litellm = import_litellm("backend 'litellm'")
        if cost is None:
            cost = CostModel(parse_pricing(pricing) if pricing is not None else litellm_price(litellm, model_name))
        super().__init__(model_name, provider="litellm", base_url=base_url, api_key=api_key,
                         sampling_args=sampling_args, cost=cost)
        self._litellm = litellm
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._extra = dict(extra or {})

    def _complete(self, messages: list[Message], timeout: float | None) -> Completion:
        response = self._litellm.completion(**self._request(messages, timeout))
        return to_completion(response, self.model_name, self._cost, self._where)

    def _stream(self, messages: list[Message], timeout: float | None, deltas: Deltas) -> Completion:
        chunks = self._litellm.completion(**self._request(messages, timeout), stream=True,
                                          stream_options={"include_usage": True})
        return stream_completion(chunks, deltas, self.model_name, self._cost, self._where, timeout)

    def _request(self, messages: list[Message], timeout: float | None) -> dict[str, Any]:
        return {"model": self.model_name, "messages": messages, "api_key": self._api_key, "api_base": self.base_url,
                "timeout": timeout or self._timeout, "num_retries": self._max_retries, **self._sampling, **self._extra}

    def _map_error(self, error: Exception) -> ProviderError | None:
        return map_litellm_error(self._litellm, error, self._where, self._secrets)


def to_completion(response: Any, model: str, cost: CostModel, where: str) -> Completion:
    """A litellm ``ModelResponse`` -> ``Completion``, priced by ``cost``."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderError(f"{where}: the server returned no choices", retryable=True)
    text = getattr(choices[0].message, "content", None) or ""
    usage = getattr(response, "usage", None)
    inp = int(getattr(usage, "prompt_tokens", 0) or 0)
    out = int(getattr(usage, "completion_tokens", 0) or 0)
    return Completion(text=text, model=model, input_tokens=inp, output_tokens=out, cost_usd=cost.cost(inp, out, usage),
                      finish_reason=getattr(choices[0], "finish_reason", None) or None)


def stream_completion(chunks: Iterable[Any], deltas: Deltas, model: str, cost: CostModel, where: str,
                      timeout: float | None) -> Completion:
    """A litellm stream (``CustomStreamWrapper``) read into ``deltas``; usage from the chunk that carries it
    (``stream_options.include_usage``), priced by ``cost``. The call's ``timeout`` is checked per chunk."""
    deadline = time.monotonic() + timeout if timeout is not None else float("inf")
    usage: Any = None
    finish: str | None = None
    answered = False
    try:
        for chunk in chunks:
            choices = getattr(chunk, "choices", None)
            answered = answered or getattr(chunk, "usage", None) is not None
            if choices:
                deltas(getattr(getattr(choices[0], "delta", None), "content", None) or "")
                finish = getattr(choices[0], "finish_reason", None) or finish
            usage = getattr(chunk, "usage", None) or usage
            if time.monotonic() > deadline:
                raise ProviderError(f"{where}: timed out: the stream outlasted the call's {timeout}s", retryable=True)
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    # A 200 whose body is no event stream (an HTML page, junk) reads as litellm's made-up closing chunk alone:
    # no text, no usage. Passed on, it would be an empty answer; it is the provider's fault.
    if not answered and not deltas.text:
        raise ProviderError(f"{where}: the stream carried no reply (the server's body was not an event stream)",
                            retryable=True)
    inp = int(getattr(usage, "prompt_tokens", 0) or 0)
    out = int(getattr(usage, "completion_tokens", 0) or 0)
    return Completion(text=deltas.text, model=model, input_tokens=inp, output_tokens=out,
                      cost_usd=cost.cost(inp, out, usage), finish_reason=finish)


def _resolve(spec: ProviderSpec, kwargs: dict[str, Any]) -> Endpoint:
    """litellm's own backend_kwargs: any model string it knows, priced by its table unless ``pricing`` is given."""
    from deeprecall.providers.endpoint import Endpoint

    unknown = sorted(set(kwargs) - OPTIONS)
    if unknown:
        raise ConfigError(
            f"backend 'litellm' does not take {unknown}; allowed: {sorted(OPTIONS)} "
            "(put other litellm.completion arguments under 'extra')"
        )
    options = dict(kwargs)
    model = options.pop("model_name", None) or options.pop("model", None)
    options.pop("model", None)
    if not model:
        raise ConfigError("backend 'litellm' needs 'model_name', e.g. {'model_name': 'groq/llama-3.3-70b-versatile'}")
    model = str(model)
    pricing = options.pop("pricing", None)
    cost = CostModel(parse_pricing(pricing) if pricing is not None
                     else litellm_price(import_litellm("backend 'litellm'"), model))
    return Endpoint(spec, model, options.pop("base_url", None), options.pop("api_key", None), options, cost,
                    float(options.pop("timeout", 120.0)), int(options.pop("max_retries", 2)))


def _build(ep: Endpoint) -> ChatModel:
    return LiteLLMChatModel(ep.model, api_key=ep.api_key, base_url=ep.base_url, timeout=ep.timeout,
                            max_retries=ep.max_retries, sampling_args=ep.options.get("sampling_args"),
                            extra=ep.options.get("extra"), cost=ep.cost)


def _litellm_params(ep: Endpoint) -> dict[str, Any]:
    return {"model": ep.model, "api_key": ep.api_key, "api_base": ep.base_url, **(ep.options.get("extra") or {})}


SHAPE = ApiShape("litellm", build=_build, litellm_params=_litellm_params, knows_url=True, resolve=_resolve)
