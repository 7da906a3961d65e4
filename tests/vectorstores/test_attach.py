"""Attaching to a store its own client built, with its own field names.

Each test creates the collection with the vendor SDK only, as a user's
pipeline would have, then attaches DeepRecall to it and checks: the schema
mapping (text, id, metadata), a filter, read-only by default, and a clear
error for an embedding function of the wrong dimension.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.errors import VectorStoreError
from tests.vectorstores.conftest import DIM, embedder

ROWS = [
    (101, "Quarterly revenue rose on widget sales", "finance", 2023),
    (102, "The gizmo ships with a titanium hinge", "product", 2022),
    (103, "Auditors flagged inventory write downs", "finance", 2021),
]


def vectors() -> list[list[float]]:
    return embedder()([r[1] for r in ROWS])


def check_attached(store: Any, expected_ids: tuple[str, str] = ("101", "103")) -> None:
    """The shared checks: mapping, a native filter, read-only, describe."""
    hit = store.search("Auditors flagged inventory", top_k=1)[0]
    assert (hit.id, hit.content) == (expected_ids[1], ROWS[2][1])
    assert hit.metadata["category"] == "finance" and hit.metadata["year"] == 2021
    found = store.search("revenue", top_k=5, filters={"category": "finance", "year": {"$gte": 2022}})
    assert [h.id for h in found] == [expected_ids[0]]
    assert store.count() == 3
    with pytest.raises(VectorStoreError, match="read-only"):
        store.add_documents(["new text"], [{"category": "x"}])
    assert store.count() == 3
    assert store.describe()["documents"] == 3


def test_chroma_attach(tmp_path: Path) -> None:
    import chromadb

    from deeprecall.vectorstores.chroma import ChromaStore

    client = chromadb.PersistentClient(path=str(tmp_path))
    col = client.create_collection("their_docs", embedding_function=embedder())
    col.add(ids=[str(r[0]) for r in ROWS], documents=[""] * 3, embeddings=vectors(),
            metadatas=[{"body": r[1], "category": r[2], "year": r[3]} for r in ROWS])
    store = ChromaStore.attach("their_docs", path=str(tmp_path), embedding_fn=embedder(), text_key="body")
    check_attached(store)
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        ChromaStore.attach("their_docs", path=str(tmp_path), embedding_fn=HashingEmbedding(32))
    with pytest.raises(VectorStoreError, match="their_docs"):
        ChromaStore.attach("nope_docs", path=str(tmp_path), embedding_fn=embedder())
    writable = ChromaStore.attach("their_docs", path=str(tmp_path), embedding_fn=embedder(), writable=True)
    writable.add_documents(["added later"], [{"category": "x"}])
    assert writable.count() == 4


def test_chroma_zero_config_reopens_writable(tmp_path: Path) -> None:
    from deeprecall.vectorstores.chroma import ChromaStore

    ChromaStore("mine", persist_directory=str(tmp_path), embedding_fn=embedder()).add_documents(["one"])
    again = ChromaStore("mine", persist_directory=str(tmp_path), embedding_fn=embedder())
    assert again.writable and again.add_documents(["two"]) and again.count() == 2


def test_qdrant_attach_langchain_layout(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    from deeprecall.vectorstores.qdrant import QdrantStore

    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("kb", vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)})
    client.upsert("kb", points=[
        models.PointStruct(id=r[0], vector={"dense": v}, payload={"page_content": r[1], "metadata": {"category": r[2], "year": r[3]}})
        for r, v in zip(ROWS, vectors(), strict=True)
    ])
    store = QdrantStore("kb", client=client, embedding_fn=embedder(), text_field="page_content",
                        metadata_field="metadata", id_field=None)
    assert store.vector_name == "dense"
    check_attached(store)
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        QdrantStore("kb", client=client, embedding_fn=HashingEmbedding(32))
    with pytest.raises(VectorStoreError, match="create=True"):
        QdrantStore("nope", client=client, embedding_fn=embedder())
    client.close()


def test_faiss_attach_own_index_and_docstore(tmp_path: Path) -> None:
    import faiss
    import numpy as np

    from deeprecall.vectorstores.faiss import FaissStore

    index = faiss.IndexFlatIP(DIM)
    index.add(np.asarray(vectors(), dtype="float32"))
    faiss.write_index(index, str(tmp_path / "their.index"))
    docstore = [{"doc_id": str(r[0]), "body": r[1], "category": r[2], "year": r[3]} for r in ROWS]
    store = FaissStore.attach(str(tmp_path / "their.index"), docstore, embedding_fn=embedder(),
                              text_field="body", id_field="doc_id", metadata_field=None)
    check_attached(store)
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        FaissStore.attach(index, docstore, embedding_fn=HashingEmbedding(32))


def test_faiss_save_and_load(tmp_path: Path) -> None:
    from deeprecall.vectorstores.faiss import FaissStore

    mem = FaissStore(embedding_fn=embedder())
    mem.add_documents([r[1] for r in ROWS], [{"category": r[2], "year": r[3]} for r in ROWS], ids=[str(r[0]) for r in ROWS])
    mem.save(tmp_path / "saved")
    loaded = FaissStore.load(tmp_path / "saved", embedding_fn=embedder())
    assert loaded.count() == 3 and loaded.search(ROWS[1][1], top_k=1)[0].id == "102"
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        FaissStore.load(tmp_path / "saved", embedding_fn=HashingEmbedding(32))
    with pytest.raises(VectorStoreError):
        FaissStore.load(tmp_path / "nothing-here", embedding_fn=embedder())


def test_faiss_torn_tail_is_dropped(tmp_path: Path) -> None:
    """A kill mid-append leaves a short vectors file or a cut JSON line; load keeps whole rows only."""
    from deeprecall.vectorstores.faiss import FaissStore

    store = FaissStore(embedding_fn=embedder(), path=tmp_path / "f")
    store.add_documents(["first doc"], ids=["one"])
    store.add_documents(["second doc"], ids=["two"])
    with open(tmp_path / "f" / "vectors.f32", "ab") as f:
        f.write(b"\0" * 100)  # a torn vector
    with open(tmp_path / "f" / "docs.jsonl", "a") as f:
        f.write('{"id": "three", "te')  # a torn line
    again = FaissStore(embedding_fn=embedder(), path=tmp_path / "f")
    assert again.count() == 2
    again.add_documents(["third doc"], ids=["three"])
    assert FaissStore.load(tmp_path / "f", embedding_fn=embedder()).count() == 3


def test_lancedb_attach(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    from deeprecall.vectorstores.lancedb import LanceDBStore

    db = lancedb.connect(str(tmp_path / "l"))
    schema = pa.schema([("uid", pa.string()), ("body", pa.string()), ("emb", pa.list_(pa.float32(), DIM)),
                        ("category", pa.string()), ("year", pa.int64())])
    db.create_table("articles", schema=schema, data=[
        {"uid": str(r[0]), "body": r[1], "emb": v, "category": r[2], "year": r[3]} for r, v in zip(ROWS, vectors(), strict=True)
    ])
    store = LanceDBStore("articles", uri=str(tmp_path / "l"), embedding_fn=embedder(), text_field="body",
                         id_field="uid", vector_field="emb")
    check_attached(store)
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        LanceDBStore("articles", db=db, embedding_fn=HashingEmbedding(32), vector_field="emb")
    with pytest.raises(VectorStoreError, match="create=True"):
        LanceDBStore("nope", db=db, embedding_fn=embedder())


def test_milvus_attach_reopened_lite_file(tmp_path: Path) -> None:
    """Built and closed by pymilvus, then reopened: the reopened file needs load_collection."""
    import pymilvus
    from pymilvus import DataType

    from deeprecall.vectorstores.milvus import MilvusStore

    uri = str(tmp_path / "their.db")
    client = pymilvus.MilvusClient(uri)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("passage", DataType.VARCHAR, max_length=512)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("category", DataType.VARCHAR, max_length=64)
    schema.add_field("year", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection("passages", schema=schema, index_params=index)
    client.insert("passages", [{"pk": r[0], "passage": r[1], "embedding": v, "category": r[2], "year": r[3]}
                               for r, v in zip(ROWS, vectors(), strict=True)])
    client.close()
    store = MilvusStore("passages", uri=uri, embedding_fn=embedder(), id_field="pk", text_field="passage",
                        vector_field="embedding")
    check_attached(store)
    assert {h.id for h in store.search("revenue", top_k=5, filters={"nope": {"$ne": 1}})} == {"101", "102", "103"}  # no such field: $ne passes
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        MilvusStore("passages", client=store.client, embedding_fn=HashingEmbedding(32), vector_field="embedding")
    store.close()


@pytest.mark.postgres
def test_pgvector_attach_plain_columns(pg_dsn: str) -> None:
    import psycopg

    from deeprecall.vectorstores.pgvector import PgVectorStore, vector_literal

    table = "kb_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (doc_key bigint PRIMARY KEY, body text, emb vector({DIM}), category text, year int)")
        for r, v in zip(ROWS, vectors(), strict=True):
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s::vector, %s, %s)", [r[0], r[1], vector_literal(v), r[2], r[3]])
        try:
            store = PgVectorStore(table, connection=conn, embedding_fn=embedder(), id_column="doc_key",
                                  text_column="body", vector_column="emb", metadata_columns=["category", "year"])
            check_attached(store)
            assert {h.id for h in store.search("x", top_k=5, filters={"nope": {"$ne": 1}})} == {"101", "102", "103"}
            with pytest.raises(VectorStoreError, match="128-dimensional"):
                PgVectorStore(table, connection=conn, embedding_fn=HashingEmbedding(32), vector_column="emb",
                              metadata_columns=["category"])
            with pytest.raises(VectorStoreError, match="create=True"):
                PgVectorStore("no_such_table", connection=conn, embedding_fn=embedder())
        finally:
            conn.execute(f"DROP TABLE {table}")


@pytest.mark.postgres
def test_pgvector_attach_langchain_jsonb(pg_dsn: str) -> None:
    import psycopg

    from deeprecall.vectorstores.pgvector import PgVectorStore, vector_literal

    table = "lc_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id varchar PRIMARY KEY, document text, embedding vector({DIM}), cmetadata jsonb)")
        for r, v in zip(ROWS, vectors(), strict=True):
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s::vector, %s::jsonb)",
                         [str(r[0]), r[1], vector_literal(v), f'{{"category": "{r[2]}", "year": {r[3]}}}'])
        try:
            store = PgVectorStore(table, connection=conn, embedding_fn=embedder(), text_column="document",
                                  metadata_column="cmetadata")
            check_attached(store)
            assert store.search("x", top_k=5, filters={"year": {"$gt": "2000"}}) == []  # a string never ranges over numbers
        finally:
            conn.execute(f"DROP TABLE {table}")


def test_pinecone_attach_namespace() -> None:
    """Against the stand-in of the SDK's Index (Pinecone cannot run here; see pinecone_standin.py)."""
    from deeprecall.vectorstores.pinecone import PineconeStore
    from tests.vectorstores.pinecone_standin import StandInIndex

    index = StandInIndex(DIM)
    index.upsert(vectors=[{"id": str(r[0]), "values": v, "metadata": {"chunk": r[1], "category": r[2], "year": r[3]}}
                          for r, v in zip(ROWS, vectors(), strict=True)], namespace="team-a")
    index.upsert(vectors=[{"id": "other", "values": vectors()[0], "metadata": {"chunk": "x"}}], namespace="team-b")
    store = PineconeStore(index=index, namespace="team-a", embedding_fn=embedder(), text_field="chunk")
    check_attached(store)
    with pytest.raises(VectorStoreError, match="128-dimensional"):
        PineconeStore(index=index, embedding_fn=HashingEmbedding(32))
    assert "query" in index.calls and "describe_index_stats" in index.calls


@pytest.mark.parametrize("method", ["upsert", "query", "fetch", "list", "describe_index_stats"])
def test_pinecone_standin_matches_the_installed_sdk(method: str) -> None:
    """The stand-in's methods have the SDK Index's full signatures (pinecone is pinned in the test extra)."""
    import pinecone

    from tests.signatures import signature_problems
    from tests.vectorstores.pinecone_standin import StandInIndex

    assert signature_problems(getattr(pinecone.Index, method), getattr(StandInIndex, method), owner="Index") == []


@pytest.mark.postgres
def test_pgvector_mixed_case_and_schema_qualified_names(pg_dsn: str) -> None:
    from deeprecall.vectorstores.pgvector import PgVectorStore

    table = "Docs_" + uuid.uuid4().hex[:6]
    made = PgVectorStore(f"public.{table}", dsn=pg_dsn, embedding_fn=embedder(), create=True)
    try:
        made.add_documents(["mixed case table"], [{"k": 1}], ids=["x"])
        again = PgVectorStore(f"public.{table}", dsn=pg_dsn, embedding_fn=embedder())
        assert again.writable and again.count() == 1  # reopened by its quoted name, recognised as DeepRecall's
        again.close()
    finally:
        made._exec(f'DROP TABLE IF EXISTS public."{table}"')
        made.close()
