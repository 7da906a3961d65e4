"""The store goes away mid-query and comes back: a private PostgreSQL stopped with ``pg_ctl stop -m immediate``,
a private ``chroma run`` SIGKILLed, between two searches of one query. The model's next prompt holds a clean
``ToolError`` naming the store (no host traceback, no DSN password), the query answers, and once the store is
back the next query on the same engine searches it again. Real parts: the scripted LLM server, the namespace
sandbox, PostgreSQL with pgvector, a Chroma server. (No Qdrant server is installed on this machine: Qdrant's
adapter is tested in local mode only, so a Qdrant server going away is not covered here.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.testing.scripted_server import ChatRequest, by_turn
from tests.conftest import DOCS, ROOT
from tests.faults.private_services import (
    PrivateChroma,
    PrivatePostgres,
    chroma_problem,
    postgres_problem,
    require,
)

pytestmark = pytest.mark.timeout(120)


def repl(code: str) -> str:
    return f"Searching.\n```repl\n{code}\n```"


SEARCH_ACME = repl('print(search_db("Acme revenue")[0]["content"])')
SEARCH_GLOBEX = repl('print(search_db("Globex CEO hired")[0]["content"])')
ANSWER = repl('answer["content"] = "answered"\nanswer["ready"] = True')


def script(stop_store: Callable[[], None]) -> Callable[[ChatRequest], Any]:
    """The first query searches, the store goes away, it searches again, then answers; a later query
    (``zq-after``) searches once and answers."""
    def stop_then_search(request: ChatRequest) -> str:
        stop_store()
        return SEARCH_GLOBEX

    first = by_turn(SEARCH_ACME, stop_then_search, ANSWER)
    later = by_turn(SEARCH_GLOBEX, ANSWER)
    return lambda request: later(request) if "zq-after" in request.text else first(request)


def check_away_and_back(server: Any, engine: Any, store_name: str, restart: Callable[[], None],
                        secrets: tuple[str, ...] = ()) -> None:
    start = time.monotonic()
    result = engine.query("q")
    took = time.monotonic() - start
    assert result.error is None and result.answer == "answered", (result.error, result.error_message)
    assert took < 30, f"the query took {took:.1f}s with its store gone"
    first, after = server.calls_for(ROOT)[1].text, server.calls_for(ROOT)[2].text
    assert "widget line" in first, "the first search worked"
    seen = after.split("Globex CEO hired", 1)[-1]
    assert "ToolError: search_db:" in seen and store_name in seen, f"the model was not told cleanly: {seen[-800:]}"
    assert "site-packages" not in after and "deeprecall/" not in after, "a host traceback reached the model"
    for secret in secrets:
        assert secret not in after, "a secret reached the model"
    restart()
    again = engine.query("zq-after the store is back")
    assert again.error is None and again.answer == "answered", (again.error, again.error_message)
    assert again.retrieved, "the engine's own first search worked again"
    assert "Hank Scorpio" in server.calls_for(ROOT)[-1].text, "the model's search worked again"


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    require(postgres_problem())
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@pytest.mark.postgres
def test_postgres_stopped_mid_query_then_back(llm, make_engine, postgres):
    from deeprecall.vectorstores.pgvector import PgVectorStore

    store = PgVectorStore("faults_docs", dsn=postgres.dsn, embedding_fn=HashingEmbedding(), create=True)
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    server = llm({ROOT: script(postgres.stop_now)})
    engine = make_engine(server, vectorstore=store, subs=(), max_seconds=60,
                         environment_kwargs={"pool_size": 1, "isolation": "namespace"})
    try:
        check_away_and_back(server, engine, "faults_docs", postgres.start, secrets=(postgres.password, postgres.dsn))
    finally:
        store.close()


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[PrivateChroma]:
    require(chroma_problem())
    server = PrivateChroma(tmp_path / "chroma")
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_chroma_server_killed_mid_query_then_back(llm, make_engine, chroma):
    import chromadb

    from deeprecall.vectorstores.chroma import ChromaStore

    client = chromadb.HttpClient(host="127.0.0.1", port=chroma.port)
    store = ChromaStore("faults_docs", client=client, embedding_fn=HashingEmbedding())
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    server = llm({ROOT: script(chroma.kill)})
    engine = make_engine(server, vectorstore=store, subs=(), max_seconds=60,
                         environment_kwargs={"pool_size": 1, "isolation": "namespace"})
    check_away_and_back(server, engine, "faults_docs", chroma.start)
