"""Chat over Anthropic's messages API (``POST /v1/messages``) with the ``anthropic`` SDK.

Why the SDK and not raw HTTP: it is already installed (rlms depends on it), it
sets the version header, honours ``Retry-After`` in its retries, and its typed
errors map cleanly onto ``ProviderError``. ``base_url`` points it at any server
speaking the same protocol (a proxy, or DeepRecall's scripted test server).

The messages API differs from chat completions in three ways this file handles:
the system prompt is a separate field, ``max_tokens`` is required, and the
conversation must start with a user turn and alternate.
"""

from __future__ import annotations

from typing import Any

from deeprecall.errors import ProviderError
from deeprecall.providers.base import Completion, Message, map_sdk_error
from deeprecall.providers.pricing import CostModel

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


class AnthropicChatModel:
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

        self.model_name = model_name
        self.base_url = base_url
        self.max_tokens = int(max_tokens)
        self._secrets = [s for s in [api_key, *(default_headers or {}).values()] if s]
        self._sampling = dict(sampling_args or {})
        self._cost = cost or CostModel(None)
        self.has_price = self._cost.has_price
        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )

    def __repr__(self) -> str:
        return f"AnthropicChatModel(model_name={self.model_name!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        import anthropic

        system, turns = to_anthropic(messages)
        options: dict[str, Any] = {**self._sampling}
        if system:
            options["system"] = system
        if timeout is not None:
            options["timeout"] = timeout
        where = f"anthropic:{self.model_name}"
        try:
            response = self._client.messages.create(
                model=self.model_name,
                max_tokens=self.max_tokens,
                messages=turns,  # type: ignore[arg-type]
                **options,
            )
        except (anthropic.AnthropicError, ValueError) as e:
            raise map_sdk_error(anthropic, e, where, self.base_url or "Anthropic", self._secrets) from None
        blocks = getattr(response, "content", None)
        if not isinstance(blocks, list):
            raise ProviderError(f"{where}: the server returned no content", retryable=True)
        text = "".join(getattr(b, "text", "") or "" for b in blocks if getattr(b, "type", "") == "text")
        usage = getattr(response, "usage", None)
        inp = (
            int(getattr(usage, "input_tokens", 0) or 0)
            + int(getattr(usage, "cache_read_input_tokens", 0) or 0)
            + int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        )
        out = int(getattr(usage, "output_tokens", 0) or 0)
        return Completion(
            text=text,
            model=self.model_name,
            input_tokens=inp,
            output_tokens=out,
            cost_usd=self._cost.cost(inp, out, usage),
        )

    def close(self) -> None:
        self._client.close()
