"""Embeddings through litellm, for the providers it knows (``pip install 'deeprecall[litellm]'``).

``LiteLLMEmbedding("openai/text-embedding-3-small")``, ``"cohere/embed-english-v3.0"``,
``"ollama/nomic-embed-text"``... litellm reads each provider's key from its usual env var.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deeprecall.embeddings.base import ChromaCompatible, batched
from deeprecall.errors import MissingDependencyError, ProviderError


class LiteLLMEmbedding(ChromaCompatible):
    def __init__(
        self, model: str, *, api_base: str | None = None, api_key: str | None = None, batch_size: int = 256,
        **kwargs: Any,
    ) -> None:
        try:
            import litellm
        except ImportError as e:
            raise MissingDependencyError("litellm", "litellm", "LiteLLMEmbedding") from e
        self._litellm = litellm
        self.model, self.batch_size = model, batch_size
        self.kwargs = {k: v for k, v in {"api_base": api_base, "api_key": api_key, **kwargs}.items() if v is not None}

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for batch in batched(input, self.batch_size):
            try:
                res = self._litellm.embedding(model=self.model, input=batch, **self.kwargs)
            except Exception as e:
                status = getattr(e, "status_code", None)
                raise ProviderError(f"litellm embeddings from {self.model!r} failed: {type(e).__name__}: {e}",
                                    retryable=status is None or status == 429 or status >= 500, status=status) from e
            rows = sorted(res.data, key=lambda d: d["index"])
            out.extend(list(row["embedding"]) for row in rows)
        return out

    @staticmethod
    def name() -> str:
        return "deeprecall-litellm"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model}
