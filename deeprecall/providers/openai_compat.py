"""Chat over the OpenAI chat-completions API: OpenAI itself and every compatible server.

vLLM, SGLang, LM Studio, Ollama, OpenRouter, Portkey, Vercel's gateway, Azure and
most hosted labs speak this shape; they differ only in base URL, key, headers
and (Azure) the URL layout. This file is the one place that says so: the ``OPENAI``
and ``AZURE`` shapes (options, per-provider headers and body fields, the adapter,
the litellm deployment a pool routes to) and ``OpenAIChatModel``.
The call is one JSON POST, sent by ``json_http`` rather than the ``openai`` SDK:
the SDK cost ~5x the CPU per call (see json_http's docstring), and an RLM query
makes several calls while other queries wait for the interpreter.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from contextlib import closing
from typing import TYPE_CHECKING, Any

from deeprecall._version import __version__
from deeprecall.errors import ConfigError, ContextWindowExceeded, ProviderError
from deeprecall.providers.adapter import ChatAdapter, Deltas
from deeprecall.providers.base import Completion, Message
from deeprecall.providers.json_http import JsonHttpClient
from deeprecall.providers.pricing import CostModel, parse_pricing
from deeprecall.providers.shapes import ApiShape

if TYPE_CHECKING:
    from deeprecall.providers.base import ChatModel
    from deeprecall.providers.endpoint import Endpoint
    from deeprecall.providers.registry import ProviderSpec

OPENAI_URL = "https://api.openai.com/v1"
AZURE_DEFAULT_API_VERSION = "2024-10-21"
# How OpenAI, vLLM, llama.cpp's server, Ollama and most gateways word a prompt over the window (HTTP 400).
_CONTEXT_ERROR = re.compile(r"context[_ ]length|maximum context|context window|exceeds? the (?:available )?context|"
                            r"too many tokens|prompt is too long", re.IGNORECASE)


class OpenAIChatModel(ChatAdapter):
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
        cost = cost or CostModel(parse_pricing(pricing) if pricing is not None else None)
        super().__init__(model_name, provider=provider, base_url=base_url, api_key=api_key,
                         default_headers=default_headers, sampling_args=sampling_args, cost=cost)
        self._extra_body = dict(extra_body or {})
        self._stream_usage = True  # ask for usage in the last chunk, until the server refuses stream_options
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
                                        where=self._where, secrets=self._secrets)
        except ValueError as e:
            raise ConfigError(f"{provider}: base_url must be an http(s) URL such as {OPENAI_URL!r}; got "
                              f"{url!r}") from e

    def __repr__(self) -> str:
        return (
            f"OpenAIChatModel(provider={self.provider!r}, model_name={self.model_name!r}, base_url={self.base_url!r})"
        )

    def _complete(self, messages: list[Message], timeout: float | None) -> Completion:
        body: dict[str, Any] = {"model": self.model_name, "messages": messages, **self._sampling, **self._extra_body}
        try:
            response = self._http.post(self._path, body, timeout=timeout)
        except ProviderError as e:  # json_http maps its own errors; one of them means "over the window"
            if _is_context_error(e):
                raise ContextWindowExceeded(str(e)) from e
            raise
        return self._to_completion(response)

    def _stream(self, messages: list[Message], timeout: float | None, deltas: Deltas) -> Completion:
        """SSE chunks; usage from the last chunk (``stream_options.include_usage``). A server that sends no
        usage leaves the tokens at 0: nothing is estimated. A server that ignores ``stream`` answers whole."""
        body: dict[str, Any] = {"model": self.model_name, "messages": messages, **self._sampling, **self._extra_body,
                                "stream": True}
        asked_usage = self._stream_usage
        if asked_usage:
            body["stream_options"] = {"include_usage": True}
        usage: dict[str, Any] = {}
        finish: str | None = None
        try:
            # closing(): a consumer that stops reading (on_delta raised: the query was cancelled) closes the
            # connection at once, not whenever the abandoned generator is collected
            with closing(self._http.stream(self._path, body, timeout=timeout)) as events:
                for event in events:
                    choices = event.get("choices")
                    choice = choices[0] if isinstance(choices, list) and choices else None
                    if isinstance(choice, dict) and isinstance(choice.get("message"), dict):  # not streamed after all
                        completion = self._to_completion(event)
                        deltas(completion.text)
                        return completion
                    if isinstance(choice, dict):
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            deltas(_text(delta.get("content")))
                        finish = _finish_reason(choice) or finish
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
        except ProviderError as e:
            if _is_context_error(e):
                raise ContextWindowExceeded(str(e)) from e
            if asked_usage and e.status == 400 and "stream_options" in str(e) and not deltas.started:
                self._stream_usage = False  # this server does not take it: stream without usage from now on
                return self._stream(messages, timeout, deltas)
            raise
        return self._streamed(deltas, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                              usage, finish)

    def _to_completion(self, response: dict[str, Any]) -> Completion:
        choices = response.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise ProviderError(f"{self._where}: the server returned no choices", retryable=True)
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return self._completion(_text(message.get("content")), int(usage.get("prompt_tokens") or 0),
                                int(usage.get("completion_tokens") or 0), usage, _finish_reason(first))

    def close(self) -> None:
        self._http.close()


def _is_context_error(error: ProviderError) -> bool:
    """A 400 saying the prompt is over the window: ``ContextWindowExceeded`` (the engine compacts)."""
    return error.status == 400 and _CONTEXT_ERROR.search(str(error)) is not None


def _finish_reason(choice: Any) -> str | None:
    reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    return reason if isinstance(reason, str) else None


def _text(content: Any) -> str:
    """The reply text: a string, or (Mistral's reasoning models, some gateways) a list of
    typed parts, of which the ``text`` ones are the answer; ``None`` when the model sent none."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


# ---- The shapes: per-provider extras, the adapter, the litellm deployment -------------------------------


def openai_headers(ep: Endpoint) -> dict[str, str]:
    """Headers a row needs on top of the key: Portkey authenticates with its own."""
    headers = dict(ep.options.get("default_headers") or {})
    if ep.spec.id == "portkey":
        if ep.api_key:
            headers["x-portkey-api-key"] = ep.api_key
        if ep.options.get("virtual_key"):
            headers["x-portkey-virtual-key"] = str(ep.options["virtual_key"])
        if ep.options.get("config"):
            headers["x-portkey-config"] = str(ep.options["config"])
    return headers


def openai_extra_body(ep: Endpoint) -> dict[str, Any]:
    """Body fields a row needs: OpenRouter reports each call's cost when asked."""
    if ep.spec.id == "openrouter":
        return {"usage": {"include": True}}
    return {}


def _build(ep: Endpoint) -> ChatModel:
    o = ep.options
    return OpenAIChatModel(
        ep.model,
        api_key=ep.api_key,
        base_url=ep.base_url,
        timeout=ep.timeout,
        max_retries=ep.max_retries,
        sampling_args=o.get("sampling_args"),
        cost=ep.cost,
        default_headers=openai_headers(ep) or None,
        organization=o.get("organization"),
        extra_body=openai_extra_body(ep),
        azure_api_version=o.get("api_version") if ep.spec.adapter == "azure" else None,
        provider=ep.spec.id,
    )


def _openai_params(ep: Endpoint) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"openai/{ep.model}", "api_key": ep.api_key or "not-needed",
                              "api_base": ep.base_url}
    if ep.options.get("organization"):
        params["organization"] = ep.options["organization"]
    body = openai_extra_body(ep)
    if body:
        params["extra_body"] = body
    headers = openai_headers(ep)
    if headers:
        params["extra_headers"] = headers
    return params


def _azure_params(ep: Endpoint) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"azure/{ep.model}", "api_key": ep.api_key, "api_base": ep.base_url,
                              "api_version": ep.options.get("api_version")}
    if ep.options.get("default_headers"):
        params["extra_headers"] = dict(ep.options["default_headers"])
    return params


def _settle_openai(spec: ProviderSpec, options: dict[str, Any]) -> None:
    if spec.id == "openai" and not options.get("organization") and os.environ.get("OPENAI_ORG_ID"):
        options["organization"] = os.environ["OPENAI_ORG_ID"]


def _settle_azure(spec: ProviderSpec, options: dict[str, Any]) -> None:
    options["api_version"] = (options.get("api_version") or os.environ.get("OPENAI_API_VERSION")
                              or os.environ.get("AZURE_OPENAI_API_VERSION") or AZURE_DEFAULT_API_VERSION)


OPENAI = ApiShape("openai", build=_build, litellm_params=_openai_params, options=frozenset({"organization"}),
                  provider_options={"portkey": frozenset({"virtual_key", "config"})}, settle=_settle_openai)
AZURE = ApiShape("azure", build=_build, litellm_params=_azure_params, options=frozenset({"api_version", "deployment"}),
                 settle=_settle_azure)
