"""OpenAI embeddings, and any server that speaks OpenAI's ``/v1/embeddings`` (vLLM, LM Studio, Ollama...).

Uses the ``openai`` SDK, a core dependency. Inputs go in batches (the API caps
inputs per request); results are put back in input order by their ``index``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from deeprecall.embeddings.base import ChromaCompatible, batched
from deeprecall.errors import MissingAPIKeyError, ProviderError


class OpenAIEmbedding(ChromaCompatible):
    """``OpenAIEmbedding("text-embedding-3-small")`` with ``OPENAI_API_KEY`` set, or ``base_url=`` a compatible server."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        timeout: float = 60.0,
        client: Any = None,
    ) -> None:
        self.model, self.dimensions, self.batch_size = model, dimensions, batch_size
        if dimensions:
            self.dim = dimensions
        if client is None:
            import openai

            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key and base_url is None:
                raise MissingAPIKeyError("OpenAIEmbedding needs an API key: set OPENAI_API_KEY or pass api_key=")
            client = openai.OpenAI(api_key=key or "not-needed", base_url=base_url, timeout=timeout, max_retries=2)
        self.client = client

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for batch in batched(input, self.batch_size):
            out.extend(self._embed(batch))
        return out

    def _embed(self, batch: list[str]) -> list[list[float]]:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "input": batch}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        try:
            res = self.client.embeddings.create(**kwargs)
        except openai.APIStatusError as e:
            raise ProviderError(f"embeddings from {self.model!r} failed: HTTP {e.status_code}: {e.message}",
                                retryable=e.status_code in (408, 409, 429) or e.status_code >= 500,
                                status=e.status_code) from e
        except openai.OpenAIError as e:
            raise ProviderError(f"embeddings from {self.model!r} failed: {type(e).__name__}: {e}", retryable=True) from e
        rows = sorted(res.data, key=lambda d: d.index)
        if len(rows) != len(batch):
            raise ProviderError(f"embeddings from {self.model!r}: got {len(rows)} vectors for {len(batch)} inputs")
        return [list(row.embedding) for row in rows]

    @staticmethod
    def name() -> str:
        return "deeprecall-openai"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "dimensions": self.dimensions}
