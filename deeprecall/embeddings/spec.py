"""Embedding functions from a short string, for the CLI and config files.

    hashing            HashingEmbedding(256); hashing:64 for another dimension
    default            all-MiniLM-L6-v2 from a copy already on disk, else Chroma's download (MiniLMEmbedding)
    chroma-default     Chroma's own ONNX copy of the same model only (downloads once; ChromaDefaultEmbedding)
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
    if kind == "default":
        from deeprecall.embeddings.minilm import MiniLMEmbedding

        return MiniLMEmbedding()
    if kind == "chroma-default":
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
        f"unknown embedding {spec!r}; use hashing[:DIM], default, chroma-default, sentence-transformers:PATH, openai:MODEL "
        f"or litellm:MODEL"
    )


# Recorded embedding name (Chroma collection configuration) -> how to ask for that embedding again.
_SPEC_OF_NAME = {
    "deeprecall-chroma-default": lambda c: "default",
    "deeprecall-hashing": lambda c: "hashing" if int(c.get("dim", 256)) == 256 else f"hashing:{c['dim']}",
    "deeprecall-sentence-transformers": lambda c: f"sentence-transformers:{c['model_name_or_path']}",
    "deeprecall-openai": lambda c: f"openai:{c['model']}",
    "deeprecall-litellm": lambda c: f"litellm:{c['model']}",
}


def spec_for(name: str, config: dict[str, Any] | None = None) -> str | None:
    """The spec string that rebuilds a recorded embedding, or None if no spec can (a function of yours).

    Why: an embedding conflict is fixed by reopening with the recorded embedding, so
    the error should say exactly which ``--embedding`` that is.
    """
    make = _SPEC_OF_NAME.get(name)
    try:
        return make(config or {}) if make else None
    except (KeyError, TypeError, ValueError):
        return None
