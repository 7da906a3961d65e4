"""One factory per store for the shared contract suite.

Every factory returns a fresh, empty, writable store that embeds with the
deterministic HashingEmbedding. The stores are real: Chroma, Qdrant local mode,
FAISS, LanceDB and Milvus Lite run in-process or as a local file; PostgreSQL
runs when DEEPRECALL_TEST_PG_DSN is set (scripts/services.sh postgres prints
one). Only Pinecone, a hosted service, is a stand-in (see pinecone_standin.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deeprecall.embeddings import HashingEmbedding

DIM = 128
Factory = Callable[[], Any]


def embedder() -> HashingEmbedding:
    return HashingEmbedding(DIM)


def _name() -> str:
    return "t_" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def milvus_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Milvus Lite server for the session: starting one takes about a second.

    pymilvus and milvus-lite are in the test extra, so they are imported plainly: a broken install fails the
    Milvus contract tests instead of skipping them."""
    import milvus_lite  # noqa: F401  (MilvusClient needs it for a local file; import it so its failure is plain)
    import pymilvus

    client = pymilvus.MilvusClient(str(tmp_path_factory.mktemp("milvus") / "contract.db"))
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("DEEPRECALL_TEST_PG_DSN")
    if not dsn:
        pytest.skip("DEEPRECALL_TEST_PG_DSN is not set (scripts/services.sh postgres starts one)")
    return dsn


def make_chroma(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.chroma import ChromaStore

    return ChromaStore(_name(), persist_directory=None, embedding_fn=embedder())


def make_qdrant(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.qdrant import QdrantStore

    return QdrantStore("docs", location=":memory:", embedding_fn=embedder(), create=True)


def make_faiss(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.faiss import FaissStore

    return FaissStore(embedding_fn=embedder(), path=tmp / "faiss")


def make_lancedb(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.lancedb import LanceDBStore

    return LanceDBStore("docs", uri=str(tmp / "lance"), embedding_fn=embedder(), create=True)


def make_milvus(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.milvus import MilvusStore

    client = request.getfixturevalue("milvus_client")
    return MilvusStore(_name(), client=client, embedding_fn=embedder(), create=True)


def make_pgvector(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.pgvector import PgVectorStore

    store = PgVectorStore(_name(), dsn=request.getfixturevalue("pg_dsn"), embedding_fn=embedder(), create=True)
    request.addfinalizer(lambda: (store._exec(f"DROP TABLE IF EXISTS {store.name}"), store.close()))
    return store


def make_pinecone(tmp: Path, request: pytest.FixtureRequest) -> Any:
    from deeprecall.vectorstores.pinecone import PineconeStore
    from tests.vectorstores.pinecone_standin import StandInIndex

    return PineconeStore("docs", index=StandInIndex(DIM), embedding_fn=embedder(), writable=True)


FACTORIES: dict[str, Callable[[Path, pytest.FixtureRequest], Any]] = {
    "chroma": make_chroma,
    "qdrant": make_qdrant,
    "faiss": make_faiss,
    "lancedb": make_lancedb,
    "milvus": make_milvus,
    "pgvector": make_pgvector,
    "pinecone": make_pinecone,
}
STORE_PARAMS = [pytest.param(n, marks=[pytest.mark.postgres] if n == "pgvector" else []) for n in FACTORIES]


@pytest.fixture(params=STORE_PARAMS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory, so a test can open the same kind of store more than once."""
    return lambda: FACTORIES[request.param](tmp_path, request)
