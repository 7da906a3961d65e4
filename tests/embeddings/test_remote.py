"""OpenAI and litellm embeddings against a loopback /v1/embeddings server (never a real provider)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deeprecall.embeddings import HashingEmbedding, LiteLLMEmbedding, OpenAIEmbedding
from deeprecall.errors import MissingAPIKeyError, ProviderError
from tests.embeddings.embedding_server import EmbeddingServer

TEXTS = ["alpha beta", "gamma delta", "epsilon", "zeta eta theta", "iota"]


def assert_same(got: list[list[float]], want: list[list[float]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w)


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dim=16) as s:
        yield s


def test_openai_batches_and_keeps_order(server: EmbeddingServer) -> None:
    fn = OpenAIEmbedding("text-embedding-3-small", api_key="sk-test-123456", base_url=server.base_url, batch_size=2)
    assert_same(fn(TEXTS), HashingEmbedding(16)(TEXTS))
    assert [len(r["input"]) for r in server.requests] == [2, 2, 1]
    assert server.requests[0]["model"] == "text-embedding-3-small"
    assert server.requests[0]["auth"] == "Bearer sk-test-123456"


def test_openai_passes_dimensions(server: EmbeddingServer) -> None:
    fn = OpenAIEmbedding("m", base_url=server.base_url, dimensions=16)
    fn(["x"])
    assert server.requests[0]["dimensions"] == 16 and fn.dim == 16


def test_openai_http_errors_are_provider_errors(server: EmbeddingServer) -> None:
    server.fail_with = 401
    fn = OpenAIEmbedding("m", api_key="sk-secretsecret", base_url=server.base_url)
    with pytest.raises(ProviderError, match="HTTP 401") as info:
        fn(["x"])
    assert not info.value.retryable and "sk-secretsecret" not in str(info.value)


def test_openai_needs_a_key_without_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        OpenAIEmbedding()


def test_openai_embeds_into_a_store(server: EmbeddingServer) -> None:
    from deeprecall.vectorstores.faiss import FaissStore

    store = FaissStore(embedding_fn=OpenAIEmbedding("m", base_url=server.base_url))
    store.add_documents(TEXTS, ids=[str(i) for i in range(len(TEXTS))])
    assert store.search("zeta eta theta", top_k=1)[0].id == "3"


def test_litellm_batches_and_keeps_order(server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    fn = LiteLLMEmbedding("openai/text-embedding-3-small", api_base=server.base_url, api_key="sk-test-abcdef", batch_size=3)
    assert_same(fn(TEXTS), HashingEmbedding(16)(TEXTS))
    assert [len(r["input"]) for r in server.requests] == [3, 2]
    assert server.requests[0]["model"] == "text-embedding-3-small"


def test_litellm_errors_are_provider_errors(server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    server.fail_with = 400
    fn = LiteLLMEmbedding("openai/m", api_base=server.base_url, api_key="sk-test-abcdef", max_retries=0)
    with pytest.raises(ProviderError, match="litellm embeddings"):
        fn(["x"])
