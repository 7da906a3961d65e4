"""Chat over Anthropic's messages API (``POST /v1/messages``) with the ``anthropic`` SDK.

Why the SDK and not raw HTTP: it is already installed (rlms depends on it), it
sets the version header, honours ``Retry-After`` in its retries, and its typed
errors map cleanly onto ``ProviderError``. ``base_url`` points it at any server
speaking the same protocol (a proxy, or DeepRecall's scripted test server).

The messages API differs from chat completions in three ways this file handles:
the system prompt is a separate field, ``max_tokens`` is required, and the
conversation must start with a user turn and alternate. ``SHAPE`` at the end is
everything the registry, the factory and the pool need to know about this shape.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from deeprecall.errors import ProviderError, redact
from deeprecall.providers.adapter import ChatAdapter, Deltas
from deeprecall.providers.base import Completion, Message, is_transport_error, map_sdk_error
from deeprecall.providers.pricing import CostModel
from deeprecall.providers.shapes import ApiShape

if TYPE_CHECKING:
    from deeprecall.providers.base import ChatModel
    from deeprecall.providers.endpoint import Endpoint

DEFAULT_MAX_TOKENS = 4096  # every Claude model accepts this; raise it with backend_kwargs["max_tokens"]


def to_anthropic(messages: list[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """Split out the system prompt and make the turns start with a user turn and alternate."""
    system = "\n\n".join(m.get("content", "") for m in messages if m.get("role") == "system") or None
    turns: list[dict[str, str]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        role = "assistant" if role == "assistant" else "user"
        content = m.get("content", "") or ""
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n\n" + content}
        else:
            turns.append({"role": role, "content": content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(continue)"})
    return system, turns


class AnthropicChatModel(ChatAdapter):
    """A Claude model (or any server speaking Anthropic's messages API)."""

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        default_headers: dict[str, str] | None = None,
        sampling_args: dict[str, Any] | None = None,
        cost: CostModel | None = None,
    ) -> None:
        import anthropic

        super().__init__(model_name, provider="anthropic", base_url=base_url, api_key=api_key,
                         default_headers=default_headers, sampling_args=sampling_args, cost=cost)
        self.max_tokens = int(max_tokens)
        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )

    def _request(self, messages: list[Message], timeout: float | None) -> dict[str, Any]:
        system, turns = to_anthropic(messages)
        request: dict[str, Any] = {"model": self.model_name, "max_tokens": self.max_tokens, "messages": turns,
                                   **self._sampling}
        if system:
            request["system"] = system
        if timeout is not None:
            request["timeout"] = timeout
        return request

    def _complete(self, messages: list[Message], timeout: float | None) -> Completion:
        response = self._client.messages.create(**self._request(messages, timeout))
        blocks = getattr(response, "content", None)
        if not isinstance(blocks, list):
            raise ProviderError(f"{self._where}: the server returned no content", retryable=True)
        text = "".join(getattr(b, "text", "") or "" for b in blocks if getattr(b, "type", "") == "text")
        usage = getattr(response, "usage", None)
        return self._completion(text, _input_tokens(usage), int(getattr(usage, "output_tokens", 0) or 0), usage,
                                _finish_reason(getattr(response, "stop_reason", None)))

    def _stream(self, messages: list[Message], timeout: float | None, deltas: Deltas) -> Completion:
        """The messages stream's raw events: input tokens in ``message_start``, text in ``text_delta``s,
        the stop reason and output tokens (cumulative) in ``message_delta``. The SDK's ``timeout`` bounds
        each read; the call's own is checked after every event."""
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        inp = out = 0
        usage: Any = None
        finish: str | None = None
        with self._client.messages.create(**self._request(messages, timeout), stream=True) as events:
            for event in events:
                kind = getattr(event, "type", "")
                if kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
                    deltas(event.delta.text)
                elif kind == "message_start":
                    usage = event.message.usage
                    inp, out = _input_tokens(usage), int(getattr(usage, "output_tokens", 0) or 0)
                elif kind == "message_delta":
                    usage = event.usage
                    inp = max(inp, _input_tokens(usage))
                    out = int(getattr(usage, "output_tokens", 0) or 0) or out
                    finish = _finish_reason(getattr(event.delta, "stop_reason", None))
                if time.monotonic() > deadline:
                    raise ProviderError(f"{self._where}: timed out: the stream outlasted the call's {timeout}s",
                                        retryable=True)
        return self._streamed(deltas, inp, out, usage, finish)

    def _map_error(self, error: Exception) -> ProviderError | None:
        import anthropic

        if is_transport_error(error):  # raised while reading a stream, where the SDK does not wrap it
            return ProviderError(f"{self._where}: the stream broke ({type(error).__name__})", retryable=True)
        if not isinstance(error, (anthropic.AnthropicError, ValueError)):
            return None
        if isinstance(error, anthropic.APIStatusError) and error.status_code == 200:
            # an ``error`` event inside a 200 stream (overloaded, api_error): transient
            message = redact(str(error.message), self._secrets)
            return ProviderError(f"{self._where}: error in the stream: {message}", retryable=True)
        return map_sdk_error(anthropic, error, self._where, self.base_url or "Anthropic", self._secrets)

    def close(self) -> None:
        self._client.close()


def _finish_reason(stop_reason: Any) -> str | None:
    """Anthropic's stop reason in the engine's terms: ``max_tokens`` is a cut reply (``length``)."""
    if stop_reason in ("end_turn", "stop_sequence"):
        return "stop"
    if stop_reason == "max_tokens":
        return "length"
    return stop_reason if isinstance(stop_reason, str) else None


def _input_tokens(usage: Any) -> int:
    """Input tokens, cache reads and writes included (each is billed as input)."""
    return (int(getattr(usage, "input_tokens", 0) or 0) + int(getattr(usage, "cache_read_input_tokens", 0) or 0)
            + int(getattr(usage, "cache_creation_input_tokens", 0) or 0))


def _build(ep: Endpoint) -> ChatModel:
    o = ep.options
    return AnthropicChatModel(ep.model, api_key=ep.api_key, base_url=ep.base_url, timeout=ep.timeout,
                              max_retries=ep.max_retries, max_tokens=int(o.get("max_tokens") or DEFAULT_MAX_TOKENS),
                              default_headers=o.get("default_headers"), sampling_args=o.get("sampling_args"),
                              cost=ep.cost)


def _litellm_params(ep: Endpoint) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"anthropic/{ep.model}", "api_key": ep.api_key, "api_base": ep.base_url,
                              "max_tokens": int(ep.options.get("max_tokens") or DEFAULT_MAX_TOKENS)}
    if ep.options.get("default_headers"):
        params["extra_headers"] = dict(ep.options["default_headers"])
    return params


SHAPE = ApiShape("anthropic", build=_build, litellm_params=_litellm_params, options=frozenset({"max_tokens"}),
                 knows_url=True)
