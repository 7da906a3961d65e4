"""Embedding functions from a short string, for the CLI and config files.

    hashing            HashingEmbedding(256); hashing:64 for another dimension
    default            Chroma's default model (downloads once; see ChromaDefaultEmbedding)
    sentence-transformers:NAME_OR_PATH
    openai:MODEL       OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server
    litellm:MODEL      e.g. litellm:cohere/embed-english-v3.0
"""

from __future__ import annotations

import os
from typing import Any

from deeprecall.errors import ConfigError


def embedding_from_spec(spec: str) -> Any:
    kind, _, arg = spec.partition(":")
    if kind == "hashing":
        from deeprecall.embeddings.hashing import HashingEmbedding

        return HashingEmbedding(int(arg) if arg else 256)
    if kind in ("default", "chroma-default"):
        from deeprecall.embeddings.chroma_default import ChromaDefaultEmbedding

        return ChromaDefaultEmbedding()
    if kind in ("sentence-transformers", "st") and arg:
        from deeprecall.embeddings.sentence_transformers import SentenceTransformerEmbedding

        return SentenceTransformerEmbedding(arg)
    if kind == "openai" and arg:
        from deeprecall.embeddings.openai import OpenAIEmbedding

        return OpenAIEmbedding(arg, base_url=os.environ.get("OPENAI_BASE_URL"))
    if kind == "litellm" and arg:
        from deeprecall.embeddings.litellm import LiteLLMEmbedding

        return LiteLLMEmbedding(arg)
    raise ConfigError(
        f"unknown embedding {spec!r}; use hashing[:DIM], default, sentence-transformers:PATH, openai:MODEL "
        f"or litellm:MODEL"
    )
