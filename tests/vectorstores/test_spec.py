"""open_store(spec): every kind from a plain mapping, against the real store, read-only unless writable.

PostgreSQL is the running service (DEEPRECALL_TEST_PG_DSN, scripts/services.sh); Qdrant runs in local mode
(its engine in-process: no Qdrant server is among the test services), Chroma, FAISS, LanceDB and Milvus Lite
as local files.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from deeprecall.errors import ConfigError, ReadOnlyStoreError, VectorStoreError
from deeprecall.vectorstores.spec import StoreSpec, open_store
from tests.vectorstores.conftest import DIM, embedder

EMBEDDING = f"hashing:{DIM}"
DOCS = ["Acme opened a factory in Lyon in 2022.", "Globex hired a new CEO in 2021.", "Initech moved to Austin."]
METAS = [{"source": "lyon.md", "year": 2022}, {"source": "globex.md", "year": 2021}, {"source": "initech.md", "year": 2020}]


def _section(kind: str, tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    name = "t_" + uuid.uuid4().hex[:10]
    where: dict[str, Any] = {
        "chroma": {"path": str(tmp / "chroma")}, "qdrant": {"path": str(tmp / "qdrant")},
        "faiss": {"path": str(tmp / "faiss")}, "lancedb": {"uri": str(tmp / "lance")},
        "milvus": {"uri": str(tmp / "milvus.db")},
    }.get(kind) or {"dsn": request.getfixturevalue("pg_dsn")}
    if kind == "pgvector":
        request.addfinalizer(lambda: _drop_table(where["dsn"], name))
    return {"type": kind, "collection": name, "embedding": EMBEDDING, **where}


def _drop_table(dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def _close(store: Any) -> None:
    """Qdrant local mode and Milvus Lite hold their file until closed."""
    if hasattr(store, "close"):
        store.close()


KINDS = ["chroma", "qdrant", "faiss", "lancedb", "milvus", pytest.param("pgvector", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", KINDS)
def test_read_only_by_default_writable_creates_and_writes(kind, tmp_path, request):
    section = _section(kind, tmp_path, request)
    with pytest.raises(VectorStoreError, match="writable: true"):  # read-only never creates a missing collection
        open_store(StoreSpec.from_mapping(section))

    writer = open_store(StoreSpec.from_mapping({**section, "writable": True}))
    assert writer.writable is True
    writer.add_documents(DOCS, METAS)
    _close(writer)

    reader = open_store(StoreSpec.from_mapping(section))
    try:
        assert reader.writable is False  # even though DeepRecall created it: the section did not say writable
        assert reader.count() == 3
        hits = reader.search("Acme factory Lyon", top_k=1, filters={"year": {"$gte": 2021}})
        assert hits[0].metadata["source"] == "lyon.md"
        with pytest.raises(ReadOnlyStoreError, match="writable: true"):
            reader.add_documents(["one more"])
        assert reader.count() == 3
    finally:
        _close(reader)


def test_qdrant_field_mapping_reads_a_langchain_layout(tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("kb", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    vectors = embedder()(DOCS)
    client.upsert("kb", [models.PointStruct(id=i, vector=list(map(float, v)), payload={
        "page_content": text, "metadata": meta}) for i, (text, v, meta) in enumerate(zip(DOCS, vectors, METAS, strict=True))])
    client.close()

    spec = StoreSpec.from_mapping({"type": "qdrant", "path": str(tmp_path / "q"), "collection": "kb",
                                   "embedding": EMBEDDING, "text_field": "page_content",
                                   "metadata_field": "metadata", "id_field": None})
    store = open_store(spec)
    try:
        hit = store.search("Globex CEO", top_k=1, filters={"year": 2021})[0]
        assert hit.content == DOCS[1] and hit.metadata["source"] == "globex.md" and hit.id == "1"
        assert store.writable is False
    finally:
        store.close()


@pytest.mark.postgres
def test_pgvector_plain_columns_mapping(pg_dsn, request):
    import psycopg

    table = "t_" + uuid.uuid4().hex[:10]
    request.addfinalizer(lambda: _drop_table(pg_dsn, table))
    vectors = embedder()(DOCS)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (doc_key text, body text, emb vector({DIM}), lang text, year int)")
        for i, (text, v, meta) in enumerate(zip(DOCS, vectors, METAS, strict=True)):
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s::vector, 'en', %s)",
                         [f"k{i}", text, str(list(map(float, v))), meta["year"]])
    store = open_store(StoreSpec.from_mapping({
        "type": "pgvector", "dsn": pg_dsn, "table": table, "embedding": EMBEDDING, "id_column": "doc_key",
        "text_column": "body", "vector_column": "emb", "metadata_columns": ["lang", "year"], "timeout": 12}))
    hit = store.search("Initech Austin", top_k=1, filters={"year": {"$lt": 2021}})[0]
    assert (hit.id, hit.content, hit.metadata) == ("k2", DOCS[2], {"lang": "en", "year": 2020})
    assert store.timeout == 12.0  # a config file bounds a hung server's calls too
    store.close()


def test_faiss_index_and_docstore_files_attach_read_only(tmp_path):
    import faiss
    import numpy as np

    vectors = np.asarray(embedder()(DOCS), dtype="float32")
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    faiss.write_index(index, str(tmp_path / "my.index"))
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"body": t, "doc_id": f"d{i}", **m})
                                                    for i, (t, m) in enumerate(zip(DOCS, METAS, strict=True))))
    section = {"type": "faiss", "index": str(tmp_path / "my.index"), "documents": str(tmp_path / "docs.jsonl"),
               "text_field": "body", "id_field": "doc_id", "metadata_field": None, "embedding": EMBEDDING}
    hit = open_store(StoreSpec.from_mapping(section)).search("Globex CEO", top_k=1)[0]
    assert (hit.id, hit.content, hit.metadata["source"]) == ("d1", DOCS[1], "globex.md")
    with pytest.raises(ConfigError, match="read-only"):
        open_store(StoreSpec.from_mapping({**section, "writable": True}))


def test_secrets_never_in_repr_or_errors(pg_dsn):
    spec = StoreSpec.from_mapping({"type": "qdrant", "url": "http://localhost:6333", "api_key": "qd-Sekr3tKey"})
    assert "Sekr3t" not in repr(spec) and "Sekr3t" not in str(spec.redacted())
    for dsn in ("host=db user=app password=Sekr3tPass dbname=x", "postgresql://app:Sekr3t@Pass@db/x"):
        keyword = StoreSpec.from_mapping({"type": "pgvector", "dsn": dsn})
        assert "Sekr3t" not in repr(keyword) and "Pass" not in repr(keyword) and keyword.secrets()
    dsn = pg_dsn.replace("postgres@", "postgres:Sekr3tPass@")
    spec = StoreSpec.from_mapping({"type": "pgvector", "dsn": dsn, "embedding": EMBEDDING})
    assert "Sekr3t" not in repr(spec) and "postgres:***@" in repr(spec)
    # psycopg's error quotes a bad sslmode: make it the password, so the driver's message carries the secret
    spec = StoreSpec.from_mapping({"type": "pgvector", "dsn": dsn + "?sslmode=Sekr3tPass", "embedding": EMBEDDING})
    with pytest.raises(VectorStoreError) as caught:
        open_store(spec)
    assert "sslmode" in str(caught.value) and "Sekr3t" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None  # chain not shown: from None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(("section", "message"), [
    ({"type": "weaviate"}, "must be one of chroma, qdrant"),
    ({"type": "qdrant", "uri": "x"}, r"qdrant does not take \['uri'\]; it takes .*url"),
    ({"type": "chroma", "writable": "maybe"}, "writable must be true or false"),
    ({"type": "pgvector"}, "needs dsn"),
    ({"type": "faiss"}, "needs path"),
])
def test_bad_sections_name_the_fix(section, message):
    with pytest.raises(ConfigError, match=message):
        open_store(StoreSpec.from_mapping({**section, "embedding": EMBEDDING}))


def test_pinecone_without_a_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    spec = StoreSpec.from_mapping({"type": "pinecone", "collection": "kb", "api_key": "", "embedding": EMBEDDING})
    with pytest.raises(ConfigError, match="PINECONE_API_KEY"):
        open_store(spec)


def test_from_config_file_interpolates_and_the_writable_flag_parses(tmp_path, monkeypatch):
    monkeypatch.setenv("QDRANT_KEY_FOR_TEST", "qd-Sekr3tKey")
    monkeypatch.setenv("STORE_WRITABLE", "true")
    cfg = tmp_path / "deeprecall.toml"
    cfg.write_text('[store]\ntype = "qdrant"\nurl = "http://q:6333"\napi_key = "${QDRANT_KEY_FOR_TEST}"\n'
                   'collection = "kb"\nwritable = "${STORE_WRITABLE}"\n')
    spec = StoreSpec.from_config_file(cfg)
    assert spec is not None and spec.writable is True and spec.options["api_key"] == "qd-Sekr3tKey"
    assert spec.secrets() == ["qd-Sekr3tKey"] and "Sekr3t" not in repr(spec)
    (tmp_path / "none.yaml").write_text("top_k: 3\n")
    assert StoreSpec.from_config_file(tmp_path / "none.yaml") is None


@pytest.fixture
def chroma_server(tmp_path: Path) -> Any:
    """A real Chroma server (`chroma run`, shipped with chromadb) on a free loopback port."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp_path / "srv"),
                             "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "chroma run did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_chroma_server_by_url(chroma_server):
    """The HTTP client path: writable creates over the wire, a read-only attach searches it."""
    section = {"type": "chroma", "host": chroma_server, "collection": "kbase", "embedding": EMBEDDING}
    with pytest.raises(VectorStoreError, match="writable: true"):
        open_store(StoreSpec.from_mapping(section))
    open_store(StoreSpec.from_mapping({**section, "writable": True})).add_documents(DOCS, METAS)
    reader = open_store(StoreSpec.from_mapping(section))
    assert reader.writable is False and reader.count() == 3
    assert reader.search("Globex CEO", top_k=1, filters={"year": 2021})[0].content == DOCS[1]


def test_a_spec_pickles_for_workers_that_open_it_themselves():
    """Batch runs on Ray ship the spec to each actor, which opens the store there."""
    import pickle

    spec = StoreSpec.from_mapping({"type": "lancedb", "uri": "/data/lance", "table": "kb", "writable": True})
    assert pickle.loads(pickle.dumps(spec)) == spec
