"""Embedding functions. Each takes a list of texts and returns a list of vectors.

Only HashingEmbedding is imported eagerly; the others load their SDK on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deeprecall._lazy import lazy_exports
from deeprecall.embeddings.base import EmbeddingFunction
from deeprecall.embeddings.hashing import HashingEmbedding
from deeprecall.embeddings.spec import embedding_from_spec

if TYPE_CHECKING:
    from deeprecall.embeddings.chroma_default import ChromaDefaultEmbedding
    from deeprecall.embeddings.litellm import LiteLLMEmbedding
    from deeprecall.embeddings.minilm import MiniLMEmbedding
    from deeprecall.embeddings.openai import OpenAIEmbedding
    from deeprecall.embeddings.sentence_transformers import SentenceTransformerEmbedding

_LAZY = {
    "ChromaDefaultEmbedding": "deeprecall.embeddings.chroma_default",
    "MiniLMEmbedding": "deeprecall.embeddings.minilm",
    "LiteLLMEmbedding": "deeprecall.embeddings.litellm",
    "OpenAIEmbedding": "deeprecall.embeddings.openai",
    "SentenceTransformerEmbedding": "deeprecall.embeddings.sentence_transformers",
}

__all__ = [
    "ChromaDefaultEmbedding",
    "EmbeddingFunction",
    "HashingEmbedding",
    "LiteLLMEmbedding",
    "MiniLMEmbedding",
    "OpenAIEmbedding",
    "SentenceTransformerEmbedding",
    "embedding_from_spec",
]


__getattr__ = lazy_exports(__name__, _LAZY)
