"""Chat over the OpenAI chat-completions API: OpenAI itself and every compatible server.

vLLM, SGLang, LM Studio, OpenRouter, Vercel's gateway and most hosted labs speak
this shape; they differ only in base URL, key and headers, which the caller
supplies. The ``openai`` SDK is a core dependency (rlms needs it anyway).
"""

from __future__ import annotations

from typing import Any

from deeprecall.errors import ProviderError, redact
from deeprecall.providers.base import Completion, Message


class OpenAIChatModel:
    """A model served over ``/v1/chat/completions``.

    One instance is shared by all queries of an engine, so the HTTP connection
    pool is reused; the openai client is thread-safe.
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
        pricing: tuple[float, float] | None = None,
    ) -> None:
        import openai

        self.model_name = model_name
        self.base_url = base_url
        self._secret = api_key or ""
        self._sampling = dict(sampling_args or {})
        self._pricing = pricing
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            organization=organization,
        )

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model_name={self.model_name!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message], *, timeout: float | None = None) -> Completion:
        import openai

        options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            response = self._client.chat.completions.create(
                model=self.model_name, messages=messages, **self._sampling, **options  # type: ignore[arg-type]
            )
        except openai.APIStatusError as e:
            raise ProviderError(
                f"{self.model_name}: HTTP {e.status_code}: {redact(str(e.message), [self._secret])}",
                retryable=e.status_code in (408, 409, 429) or e.status_code >= 500,
                status=e.status_code,
            ) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            raise ProviderError(f"{self.model_name}: {type(e).__name__}: cannot reach {self.base_url or 'OpenAI'}", retryable=True) from None
        except openai.OpenAIError as e:
            raise ProviderError(f"{self.model_name}: {redact(str(e), [self._secret])}") from None
        return self._to_completion(response)

    def _to_completion(self, response: Any) -> Completion:
        choices = getattr(response, "choices", None)
        if not choices:
            raise ProviderError(f"{self.model_name}: the server returned no choices", retryable=True)
        text = choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        inp = int(getattr(usage, "prompt_tokens", 0) or 0)
        out = int(getattr(usage, "completion_tokens", 0) or 0)
        return Completion(text=text, model=self.model_name, input_tokens=inp, output_tokens=out, cost_usd=self._cost(usage, inp, out))

    def _cost(self, usage: Any, inp: int, out: int) -> float | None:
        reported = getattr(usage, "cost", None) or (getattr(usage, "model_extra", None) or {}).get("cost")
        if reported:
            return float(reported)
        if self._pricing:
            return inp * self._pricing[0] + out * self._pricing[1]
        return None

    def close(self) -> None:
        self._client.close()
