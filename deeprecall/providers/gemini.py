"""Chat over Google's Gemini API (``models/{model}:generateContent``) with the ``google-genai`` SDK.

Why the SDK and not raw HTTP: it is already installed (rlms depends on it), and
it is the one client that speaks both Google AI Studio (an ``AIza`` key) and
Vertex AI (project + location, credentials from Application Default
Credentials), which raw HTTP would have to reimplement with google-auth.
``base_url`` points it at any server speaking the same protocol.

Conversion: ``system`` messages become ``system_instruction``; ``assistant``
becomes role ``model``. ``SHAPE`` at the end holds the rest: Vertex AI options
and their env vars, the adapter, the litellm deployment a pool routes to.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from deeprecall.errors import ConfigError, ProviderError, redact
from deeprecall.providers.adapter import ChatAdapter, Deltas
from deeprecall.providers.base import Completion, Message, is_transport_error, retryable_status
from deeprecall.providers.pricing import CostModel
from deeprecall.providers.shapes import ApiShape

if TYPE_CHECKING:
    from deeprecall.providers.base import ChatModel
    from deeprecall.providers.endpoint import Endpoint
    from deeprecall.providers.registry import ProviderSpec


def to_gemini(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """Split out the system instruction and turn messages into Gemini ``contents``."""
    system = "\n\n".join(m.get("content", "") for m in messages if m.get("role") == "system") or None
    contents: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "system":
            continue
        role = "model" if m.get("role") == "assistant" else "user"
        contents.append({"role": role, "parts": [{"text": m.get("content", "") or ""}]})
    if not contents:
        contents.append({"role": "user", "parts": [{"text": "(continue)"}]})
    return system, contents


class GeminiChatModel(ChatAdapter):
    """A Gemini model via AI Studio (API key) or Vertex AI (project, location)."""

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        vertexai: bool = False,
        project: str | None = None,
        location: str | None = None,
        default_headers: dict[str, str] | None = None,
        sampling_args: dict[str, Any] | None = None,
        cost: CostModel | None = None,
    ) -> None:
        from google import genai
        from google.genai import types

        super().__init__(model_name, provider="gemini", base_url=base_url, api_key=api_key,
                         default_headers=default_headers, sampling_args=sampling_args, cost=cost)
        self.vertexai = vertexai
        retry = types.HttpRetryOptions(attempts=max_retries + 1) if max_retries > 0 else None
        http_options = types.HttpOptions(
            base_url=base_url, timeout=int(timeout * 1000), headers=default_headers, retry_options=retry
        )
        if vertexai:
            self._client = genai.Client(vertexai=True, project=project, location=location, http_options=http_options)
        else:
            self._client = genai.Client(api_key=api_key, http_options=http_options)

    def __repr__(self) -> str:
        mode = "vertex" if self.vertexai else "ai-studio"
        return f"GeminiChatModel(model_name={self.model_name!r}, mode={mode!r}, base_url={self.base_url!r})"

    def _request(self, messages: list[Message], timeout: float | None) -> dict[str, Any]:
        from google.genai import types

        system, contents = to_gemini(messages)
        config: dict[str, Any] = {**self._sampling}
        if system:
            config["system_instruction"] = system
        if timeout is not None:
            config["http_options"] = types.HttpOptions(timeout=int(timeout * 1000))
        return {"model": self.model_name, "contents": contents, "config": types.GenerateContentConfig(**config)}

    def _complete(self, messages: list[Message], timeout: float | None) -> Completion:
        response = self._client.models.generate_content(**self._request(messages, timeout))
        candidates = getattr(response, "candidates", None)
        if not candidates:
            raise ProviderError(f"{self._where}: the server returned no candidates", retryable=True)
        usage = getattr(response, "usage_metadata", None)
        return self._completion(_text(candidates[0]), *_tokens(usage), finish_reason=_finish_reason(candidates[0]))

    def _stream(self, messages: list[Message], timeout: float | None, deltas: Deltas) -> Completion:
        """``streamGenerateContent``: each chunk's text as it comes; usage and finish reason from the last
        chunk that has them. The SDK's timeout bounds each request; the call's own is checked per chunk."""
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        usage: Any = None
        finish: str | None = None
        for chunk in self._client.models.generate_content_stream(**self._request(messages, timeout)):
            candidates = getattr(chunk, "candidates", None)
            if candidates:
                deltas(_text(candidates[0]))
                finish = _finish_reason(candidates[0]) or finish
            usage = getattr(chunk, "usage_metadata", None) or usage
            if time.monotonic() > deadline:
                raise ProviderError(f"{self._where}: timed out: the stream outlasted the call's {timeout}s",
                                    retryable=True)
        return self._streamed(deltas, *_tokens(usage), finish_reason=finish)

    def _map_error(self, error: Exception) -> ProviderError | None:
        from google.auth.exceptions import GoogleAuthError
        from google.genai import errors

        if isinstance(error, errors.APIError):
            status = int(error.code) if isinstance(error.code, int) else None
            return ProviderError(f"{self._where}: HTTP {status}: {redact(str(error.message or error), self._secrets)}",
                                 retryable=retryable_status(status), status=status)
        if isinstance(error, GoogleAuthError):
            return ProviderError(f"{self._where}: Vertex AI credentials: {type(error).__name__}; run "
                                 "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
        if isinstance(error, (ValueError, TypeError)):  # the SDK's pydantic parsing of a malformed body
            return ProviderError(f"{self._where}: malformed response: {type(error).__name__}", retryable=True)
        if is_transport_error(error):
            return ProviderError(f"{self._where}: {type(error).__name__}: cannot reach {self.base_url or 'Google'}",
                                 retryable=True)
        return None

    def close(self) -> None:
        self._client.close()


def _text(candidate: Any) -> str:
    """The answer's text: every part except the model's thoughts."""
    parts = getattr(getattr(candidate, "content", None), "parts", None) or []
    return "".join(p.text or "" for p in parts if not getattr(p, "thought", False))


def _finish_reason(candidate: Any) -> str | None:
    """Gemini's finish reason in the engine's terms: ``MAX_TOKENS`` is a cut reply (``length``)."""
    reason = getattr(candidate, "finish_reason", None)
    name = str(getattr(reason, "value", reason) or "")
    return {"STOP": "stop", "MAX_TOKENS": "length"}.get(name, name.lower() or None)


def _tokens(usage: Any) -> tuple[int, int]:
    """Input and output tokens; thinking tokens are billed as output."""
    out = int(getattr(usage, "candidates_token_count", 0) or 0) + int(getattr(usage, "thoughts_token_count", 0) or 0)
    return int(getattr(usage, "prompt_token_count", 0) or 0), out


def _vertex_mode(options: dict[str, Any]) -> bool:
    flag = options.get("vertexai")
    if flag is None:
        flag = bool(options.get("project")) or os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true")
    return bool(flag)


def _needs_key(options: dict[str, Any]) -> bool:
    return not _vertex_mode(options)  # Vertex AI authenticates with Application Default Credentials


def _settle(spec: ProviderSpec, options: dict[str, Any]) -> None:
    if not _vertex_mode(options):
        return
    options["vertexai"] = True
    options["project"] = options.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    options["location"] = options.get("location") or os.environ.get("GOOGLE_CLOUD_LOCATION") or "us-central1"
    if not options["project"]:
        raise ConfigError("Gemini on Vertex AI needs backend_kwargs['project'] or GOOGLE_CLOUD_PROJECT")


def _build(ep: Endpoint) -> ChatModel:
    o = ep.options
    vertex = bool(o.get("vertexai"))
    base_url = None if vertex and ep.base_url == ep.spec.default_base_url else ep.base_url
    return GeminiChatModel(ep.model, api_key=None if vertex else ep.api_key, base_url=base_url, timeout=ep.timeout,
                           max_retries=ep.max_retries, vertexai=vertex, project=o.get("project"),
                           location=o.get("location"), default_headers=o.get("default_headers"),
                           sampling_args=o.get("sampling_args"), cost=ep.cost)


def _litellm_params(ep: Endpoint) -> dict[str, Any]:
    o = ep.options
    params: dict[str, Any]
    if o.get("vertexai"):
        params = {"model": f"vertex_ai/{ep.model}", "vertex_project": o.get("project"),
                  "vertex_location": o.get("location")}
    else:
        params = {"model": f"gemini/{ep.model}", "api_key": ep.api_key}
        if ep.base_url and ep.base_url != ep.spec.default_base_url:
            params["api_base"] = ep.base_url
    if o.get("default_headers"):
        params["extra_headers"] = dict(o["default_headers"])
    return params


SHAPE = ApiShape("gemini", build=_build, litellm_params=_litellm_params,
                 options=frozenset({"vertexai", "project", "location"}), knows_url=True, needs_key=_needs_key,
                 settle=_settle)
