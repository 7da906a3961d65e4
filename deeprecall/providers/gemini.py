"""Chat over Google's Gemini API (``models/{model}:generateContent``) with the ``google-genai`` SDK.

Why the SDK and not raw HTTP: it is already installed (rlms depends on it), and
it is the one client that speaks both Google AI Studio (an ``AIza`` key) and
Vertex AI (project + location, credentials from Application Default
Credentials), which raw HTTP would have to reimplement with google-auth.
``base_url`` points it at any server speaking the same protocol.

Conversion: ``system`` messages become ``system_instruction``; ``assistant``
becomes role ``model``.
"""

from __future__ import annotations

from typing import Any

from deeprecall.errors import ProviderError, redact
from deeprecall.providers.base import Completion, Message, is_transport_error, retryable_status
from deeprecall.providers.pricing import CostModel


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


class GeminiChatModel:
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

        self.model_name = model_name
        self.base_url = base_url
        self.vertexai = vertexai
        self._secrets = [s for s in [api_key, *(default_headers or {}).values()] if s]
        self._sampling = dict(sampling_args or {})
        self._cost = cost or CostModel(None)
        self.has_price = self._cost.has_price
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

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        from google.auth.exceptions import GoogleAuthError
        from google.genai import errors, types

        system, contents = to_gemini(messages)
        config: dict[str, Any] = {**self._sampling}
        if system:
            config["system_instruction"] = system
        if timeout is not None:
            config["http_options"] = types.HttpOptions(timeout=int(timeout * 1000))
        where = f"gemini:{self.model_name}"
        try:
            response = self._client.models.generate_content(
                model=self.model_name,
                contents=contents,
                config=types.GenerateContentConfig(**config),
            )
        except errors.APIError as e:
            status = int(e.code) if isinstance(e.code, int) else None
            raise ProviderError(
                f"{where}: HTTP {status}: {redact(str(e.message or e), self._secrets)}",
                retryable=retryable_status(status),
                status=status,
            ) from None
        except GoogleAuthError as e:
            raise ProviderError(
                f"{where}: Vertex AI credentials: {type(e).__name__}; run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
        except (ValueError, TypeError) as e:  # the SDK's pydantic parsing of a malformed body
            raise ProviderError(f"{where}: malformed response: {type(e).__name__}", retryable=True) from None
        except Exception as e:
            if not is_transport_error(e):
                raise
            raise ProviderError(
                f"{where}: {type(e).__name__}: cannot reach {self.base_url or 'Google'}", retryable=True
            ) from None
        candidates = getattr(response, "candidates", None)
        if not candidates:
            raise ProviderError(f"{where}: the server returned no candidates", retryable=True)
        parts = getattr(getattr(candidates[0], "content", None), "parts", None) or []
        text = "".join(p.text or "" for p in parts if not getattr(p, "thought", False))
        usage = getattr(response, "usage_metadata", None)
        inp = int(getattr(usage, "prompt_token_count", 0) or 0)
        out = int(getattr(usage, "candidates_token_count", 0) or 0) + int(
            getattr(usage, "thoughts_token_count", 0) or 0
        )
        return Completion(
            text=text, model=self.model_name, input_tokens=inp, output_tokens=out, cost_usd=self._cost.cost(inp, out)
        )

    def close(self) -> None:
        self._client.close()
