"""Chat over the OpenAI chat-completions API: OpenAI itself and every compatible server.

vLLM, SGLang, LM Studio, Ollama, OpenRouter, Portkey, Vercel's gateway, Azure and
most hosted labs speak this shape; they differ only in base URL, key, headers
and (Azure) the client class, which ``factory`` supplies from the registry row.
The ``openai`` SDK is a core dependency (rlms needs it anyway); its own retries
honour ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from deeprecall.errors import ProviderError
from deeprecall.providers.base import Completion, Message, map_sdk_error
from deeprecall.providers.pricing import CostModel, parse_pricing


class OpenAIChatModel:
    """A model served over ``/chat/completions``.

    One instance is shared by all queries of an engine, so the HTTP connection
    pool is reused; the openai client is thread-safe and this class keeps no
    per-call state.
    """

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        default_headers: dict[str, str] | None = None,
        organization: str | None = None,
        sampling_args: dict[str, Any] | None = None,
        pricing: Any = None,
        cost: CostModel | None = None,
        extra_body: dict[str, Any] | None = None,
        azure_api_version: str | None = None,
        provider: str = "openai",
    ) -> None:
        import openai

        self.model_name = model_name
        self.base_url = base_url
        self.provider = provider
        self._secrets = [s for s in [api_key, *(default_headers or {}).values()] if s]
        self._sampling = dict(sampling_args or {})
        self._extra_body = dict(extra_body or {})
        self._cost = cost or CostModel(parse_pricing(pricing) if pricing is not None else None)
        self.has_price = self._cost.has_price
        self._client: openai.OpenAI
        if azure_api_version is not None:
            self._client = openai.AzureOpenAI(
                api_key=api_key,
                azure_endpoint=base_url or "",
                api_version=azure_api_version,
                timeout=timeout,
                max_retries=max_retries,
                default_headers=default_headers,
            )
        else:
            self._client = openai.OpenAI(
                api_key=api_key or "not-needed",
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                default_headers=default_headers,
                organization=organization,
            )

    def __repr__(self) -> str:
        return (
            f"OpenAIChatModel(provider={self.provider!r}, model_name={self.model_name!r}, base_url={self.base_url!r})"
        )

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        """POST /chat/completions with the body as we built it.

        ``chat.completions.create`` would first walk every message through the SDK's
        TypedDict transform, ~2.5 ms per call on a long RLM history; our messages are
        already plain role/content dicts, so the generic ``post`` sends them as they are
        (same retries, errors, Azure deployment routing and response model)."""
        import openai
        from openai._types import RequestOptions
        from openai.types.chat import ChatCompletion

        body: dict[str, Any] = {"model": self.model_name, "messages": messages, **self._sampling, **self._extra_body}
        options: RequestOptions = {"timeout": timeout} if timeout is not None else {}
        where = f"{self.provider}:{self.model_name}"
        try:
            response = self._client.post("/chat/completions", cast_to=ChatCompletion, body=body, options=options)
        except (openai.OpenAIError, ValueError) as e:
            raise map_sdk_error(openai, e, where, self.base_url or "OpenAI", self._secrets) from None
        return self._to_completion(response)

    def _to_completion(self, response: Any) -> Completion:
        choices = getattr(response, "choices", None)
        if not choices:
            raise ProviderError(f"{self.provider}:{self.model_name}: the server returned no choices", retryable=True)
        text = choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        inp = int(getattr(usage, "prompt_tokens", 0) or 0)
        out = int(getattr(usage, "completion_tokens", 0) or 0)
        return Completion(
            text=text,
            model=self.model_name,
            input_tokens=inp,
            output_tokens=out,
            cost_usd=self._cost.cost(inp, out, usage),
        )

    def close(self) -> None:
        self._client.close()
