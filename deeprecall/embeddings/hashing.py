"""A deterministic, dependency-free lexical embedding.

It hashes word unigrams and bigrams into a fixed number of buckets and
L2-normalises the counts. It knows no synonyms, so it is no substitute for a
real model, but it needs no download: it serves tests, offline demos, and
machines with no internet. Chroma accepts it as an embedding function.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

from deeprecall.embeddings.base import ChromaCompatible

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedding(ChromaCompatible):
    """``HashingEmbedding(dim=256)(["text", ...]) -> [[float, ...], ...]``."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError("HashingEmbedding needs dim >= 8")
        self.dim = dim

    def __call__(self, input: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(text) for text in input]

    def embed_one(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        words = _WORD.findall(text.lower())
        for token in words + [a + " " + b for a, b in itertools.pairwise(words)]:
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            vec[int.from_bytes(digest[:4], "little") % self.dim] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    # What Chroma's EmbeddingFunction protocol asks beyond ChromaCompatible's defaults.
    @staticmethod
    def name() -> str:
        return "deeprecall-hashing"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashingEmbedding:
        return HashingEmbedding(int(config.get("dim", 256)))
