"""Embedding functions. Each takes a list of texts and returns a list of vectors."""

from deeprecall.embeddings.hashing import HashingEmbedding

__all__ = ["HashingEmbedding"]
