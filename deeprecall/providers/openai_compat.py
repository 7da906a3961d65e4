"""Chat over the OpenAI chat-completions API: OpenAI itself and every compatible server.

vLLM, SGLang, LM Studio, Ollama, OpenRouter, Portkey, Vercel's gateway, Azure and
most hosted labs speak this shape; they differ only in base URL, key, headers
and (Azure) the URL layout, which ``factory`` supplies from the registry row.
The call is one JSON POST, sent by ``json_http`` rather than the ``openai`` SDK:
the SDK cost ~5x the CPU per call (see json_http's docstring), and an RLM query
makes several calls while other queries wait for the interpreter.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

from deeprecall._version import __version__
from deeprecall.errors import ConfigError, ContextWindowExceeded, ProviderError
from deeprecall.providers.base import Completion, Message
from deeprecall.providers.json_http import JsonHttpClient
from deeprecall.providers.pricing import CostModel, parse_pricing

OPENAI_URL = "https://api.openai.com/v1"
# How OpenAI, vLLM, llama.cpp's server, Ollama and most gateways word a prompt over the window (HTTP 400).
_CONTEXT_ERROR = re.compile(r"context[_ ]length|maximum context|context window|exceeds? the (?:available )?context|"
                            r"too many tokens|prompt is too long", re.IGNORECASE)


class OpenAIChatModel:
    """A model served over ``/chat/completions``.

    One instance is shared by all queries of an engine, so the HTTP connection
    pool is reused; the HTTP client is thread-safe and this class keeps no
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
        self.model_name = model_name
        self.base_url = base_url
        self.provider = provider
        self._secrets = [s for s in [api_key, *(default_headers or {}).values()] if s]
        self._sampling = dict(sampling_args or {})
        self._extra_body = dict(extra_body or {})
        self._cost = cost or CostModel(parse_pricing(pricing) if pricing is not None else None)
        self.has_price = self._cost.has_price
        if azure_api_version is not None:
            # Azure routes by deployment in the path and takes the key in ``api-key``.
            url = f"{(base_url or '').rstrip('/')}/openai/deployments/{urllib.parse.quote(model_name, safe='')}"
            self._path = f"/chat/completions?api-version={urllib.parse.quote(azure_api_version, safe='')}"
            auth = {"api-key": api_key} if api_key else {}
        else:
            url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
            self._path = "/chat/completions"
            auth = {"Authorization": f"Bearer {api_key or 'not-needed'}"}
            if organization:
                auth["OpenAI-Organization"] = organization
        headers = {"User-Agent": f"deeprecall/{__version__}", **auth, **(default_headers or {})}
        try:
            self._http = JsonHttpClient(url, headers=headers, timeout=timeout, max_retries=max_retries,
                                        where=f"{provider}:{model_name}", secrets=self._secrets)
        except ValueError as e:
            raise ConfigError(f"{provider}: base_url must be an http(s) URL such as {OPENAI_URL!r}; got "
                              f"{url!r}") from e

    def __repr__(self) -> str:
        return (
            f"OpenAIChatModel(provider={self.provider!r}, model_name={self.model_name!r}, base_url={self.base_url!r})"
        )

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        body: dict[str, Any] = {"model": self.model_name, "messages": messages, **self._sampling, **self._extra_body}
        try:
            response = self._http.post(self._path, body, timeout=timeout)
        except ProviderError as e:
            if e.status == 400 and _CONTEXT_ERROR.search(str(e)):
                raise ContextWindowExceeded(str(e)) from e
            raise
        return self._to_completion(response)

    def _to_completion(self, response: dict[str, Any]) -> Completion:
        choices = response.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise ProviderError(f"{self.provider}:{self.model_name}: the server returned no choices", retryable=True)
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        inp = int(usage.get("prompt_tokens") or 0)
        out = int(usage.get("completion_tokens") or 0)
        return Completion(
            text=_text(message.get("content")),
            model=self.model_name,
            input_tokens=inp,
            output_tokens=out,
            cost_usd=self._cost.cost(inp, out, usage),
            finish_reason=_finish_reason(first),
        )

    def close(self) -> None:
        self._http.close()


def _finish_reason(choice: Any) -> str | None:
    reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    return reason if isinstance(reason, str) else None


def _text(content: Any) -> str:
    """The reply text: a string, or (Mistral's reasoning models, some gateways) a list of
    typed parts, of which the ``text`` ones are the answer; ``None`` when the model sent none."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)
