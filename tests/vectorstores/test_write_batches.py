"""Writes within each store's limits: one ``add_documents`` call of 20,000 documents lands whole in every
store (Chroma alone refuses more than 5,461 per upsert; PostgreSQL 65,535 bind parameters per statement), and
Pinecone's requests stay within its 1,000 vectors / 2 MB per upsert."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from deeprecall.errors import VectorStoreError
from deeprecall.vectorstores.write_batches import WriteLimits, document_bytes, write_slices
from tests.vectorstores.conftest import DIM, embedder
from tests.vectorstores.pinecone_standin import MAX_REQUEST_BYTES, MAX_UPSERT_VECTORS, StandInIndex
from tests.vectorstores.test_spec import chroma_server  # noqa: F401  (a real `chroma run` on a free port)

N = 20_000


def _docs(n: int) -> tuple[list[str], list[dict[str, Any]]]:
    texts = [f"document number {i} about topic {i % 97}" for i in range(n)]
    return texts, [{"n": i, "topic": f"t{i % 97}"} for i in range(n)]


def test_twenty_thousand_documents_in_one_call(make_store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store()
    texts, metas = _docs(N)
    start = time.perf_counter()
    ids = store.add_documents(texts, metas)
    took = time.perf_counter() - start
    assert len(ids) == N
    assert store.count() == N
    hit = store.search(texts[12_345], top_k=1)[0]
    assert hit.content == texts[12_345] and hit.metadata["n"] == 12_345
    with capsys.disabled():  # the figure docs/vectorstores.md quotes: `pytest -s -k twenty_thousand`
        print(f"\n{store.kind}: {N:,} documents in one add_documents call: {took:.2f} s")


def test_chroma_server_takes_twenty_thousand_in_one_call(
    chroma_server: str, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    """Over HTTP the limit is the server's own (its pre-flight max_batch_size), asked of the client; the
    embedding function is a plain lambda, wrapped for Chroma on this path too."""
    import chromadb

    from deeprecall.vectorstores.chroma import ChromaStore

    host, port = chroma_server.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    store = ChromaStore("docs", client=client, embedding_fn=lambda t: embedder()(t))
    texts, metas = _docs(N)
    start = time.perf_counter()
    store.add_documents(texts, metas)
    took = time.perf_counter() - start
    assert store.count() == N and store.write_limits().max_count == client.get_max_batch_size() < N
    with capsys.disabled():
        print(f"\nchroma server (max_batch_size {client.get_max_batch_size()}): {N:,} documents: {took:.2f} s")


def test_pinecone_requests_stay_within_its_limits() -> None:
    from deeprecall.vectorstores.pinecone import PineconeStore

    index = StandInIndex(DIM)
    store = PineconeStore("docs", index=index, embedding_fn=_dense, writable=True)
    texts = [f"{i} " + "long text " * 120 for i in range(3_000)]  # ~1.2 KB text + 128 floats: bytes bind first
    store.add_documents(texts, [{"n": i} for i in range(3_000)])
    assert store.count() == 3_000
    sizes = index.upsert_requests
    assert all(n <= MAX_UPSERT_VECTORS and body <= MAX_REQUEST_BYTES for n, body in sizes), sizes
    assert sum(n for n, _ in sizes) == 3_000
    assert max(body for _, body in sizes) > MAX_REQUEST_BYTES // 2  # requests are filled, not one per vector


def _dense(texts: list[str]) -> list[list[float]]:
    """Vectors whose every float prints long in JSON, as a real model's do (HashingEmbedding's are mostly 0.0)."""
    return [[-0.123456789012345 + (len(t) % 7 + j) * 1e-9 for j in range(DIM)] for t in texts]


def test_pinecone_splits_by_count_when_documents_are_small() -> None:
    from deeprecall.vectorstores.pinecone import PineconeStore

    index = StandInIndex(8)
    store = PineconeStore("docs", index=index, embedding_fn=embedder_of(8), writable=True)
    store.add_documents([f"d{i}" for i in range(2_500)])
    assert [n for n, _ in index.upsert_requests] == [1_000, 1_000, 500]


def embedder_of(dim: int) -> Any:
    from deeprecall.embeddings import HashingEmbedding

    return HashingEmbedding(dim)


def test_slices_respect_count_and_bytes_and_keep_order() -> None:
    ids, texts, metas = [str(i) for i in range(10)], ["x" * 100] * 10, [{}] * 10
    one = document_bytes("0", "x" * 100, {}, 4, 4)
    limits = WriteLimits(max_count=4, max_bytes=3 * one)
    parts = list(write_slices(ids, texts, metas, 4, limits, "store"))
    assert [ids[p] for p in parts] == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"], ["9"]]
    by_count = list(write_slices(ids, texts, metas, 4, WriteLimits(max_count=4), "store"))
    assert [len(ids[p]) for p in by_count] == [4, 4, 2]


def test_a_document_too_big_for_one_write_fails_before_anything_is_written() -> None:
    from deeprecall.vectorstores.pinecone import PineconeStore

    index = StandInIndex(DIM)
    store = PineconeStore("docs", index=index, embedding_fn=embedder(), writable=True)
    with pytest.raises(VectorStoreError, match="smaller chunks"):
        store.add_documents(["small", "huge " * 500_000])
    assert index.upsert_requests == [] and store.count() == 0


@pytest.mark.postgres
def test_a_failed_write_keeps_the_earlier_ones_and_a_rerun_completes(pg_dsn: str) -> None:
    """What docs/vectorstores.md promises for a failure mid-way, on a store whose writes are transactions:
    write 1 (16,383 rows, the bind-parameter cap) stays, write 2 is all or nothing, and the same call again
    completes without duplicates. The second write is made to fail by a CHECK constraint, a real refusal."""
    from deeprecall.vectorstores.pgvector import PgVectorStore

    table = "t_split_" + uuid.uuid4().hex[:8]
    store = PgVectorStore(table, dsn=pg_dsn, embedding_fn=embedder_of(8), create=True)
    try:
        per_write = store.write_limits().max_count
        store._exec(f"DROP INDEX IF EXISTS {table}_hnsw")  # speed only: HNSW upkeep is most of a 20k insert
        store._exec(f"ALTER TABLE {table} ADD CONSTRAINT no_poison CHECK (content <> 'poison')")
        texts = [f"row {i}" for i in range(per_write + 1_000)]
        texts[per_write + 500] = "poison"
        with pytest.raises(VectorStoreError, match="no_poison"):
            store.add_documents(texts)
        assert per_write == 65_535 // 4 and store.count() == per_write
        store._exec(f"ALTER TABLE {table} DROP CONSTRAINT no_poison")
        store.add_documents(texts)
        assert store.count() == len(texts)
    finally:
        store._exec(f"DROP TABLE IF EXISTS {table}")
        store.close()


def test_attached_chroma_collection_embedding_itself_is_split_too(tmp_path: Any) -> None:
    """The path where Chroma embeds with the collection's own function (no embedding_fn on attach)."""
    from deeprecall.vectorstores.chroma import ChromaStore

    ChromaStore("docs", persist_directory=str(tmp_path), embedding_fn=embedder_of(16)).add_documents(["seed"])
    attached = ChromaStore.attach("docs", path=str(tmp_path), writable=True)
    assert attached.embedding_fn is None
    attached.add_documents([f"doc {i}" for i in range(6_000)])
    assert attached.count() == 6_001
