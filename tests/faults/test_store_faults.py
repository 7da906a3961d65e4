"""The store goes away mid-query and comes back: a private PostgreSQL stopped with ``pg_ctl stop -m immediate``,
or hung (every process of it SIGSTOPped: its sockets stay open and the kernel still ACKs, but nothing answers),
a private ``chroma run`` SIGKILLed, between two searches of one query. The model's next prompt holds a clean
``ToolError`` naming the store (no host traceback, no DSN password), the query answers, and once the store is
back the next query on the same engine searches it again. Real parts: the scripted LLM server, the namespace
sandbox, PostgreSQL with pgvector, a Chroma server. (No Qdrant server is installed on this machine: Qdrant's
adapter is tested in local mode only, so a Qdrant server going away is not covered here.)"""

from __future__ import annotations

import threading
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
HUNG_TIMEOUT = 3.0  # the PgVectorStore(timeout=) of the hung-server tests
MARGIN = 3.0  # what a hung call may take beyond it (the watchdog, thread wake-ups, this shared 2-core machine)


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


@pytest.mark.postgres
def test_postgres_hung_mid_query_then_back(llm, make_engine, postgres):
    """The server hangs between two searches of one query: the second search ends after the store's timeout as a
    ToolError naming the store and the setting, the query answers, and after SIGCONT the next query searches."""
    from deeprecall.vectorstores.pgvector import PgVectorStore

    store = PgVectorStore("faults_docs", dsn=postgres.dsn, embedding_fn=HashingEmbedding(), create=True,
                          timeout=HUNG_TIMEOUT)
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    marks: dict[str, float] = {}

    def pause() -> None:
        postgres.pause()
        marks["paused"] = time.monotonic()

    first = script(pause)

    def timed(request: ChatRequest) -> Any:
        if "paused" in marks:  # the turn after the hung search: its ToolError is in this prompt
            marks.setdefault("told", time.monotonic())
        return first(request)

    server = llm({ROOT: timed})
    engine = make_engine(server, vectorstore=store, subs=(), max_seconds=60,
                         environment_kwargs={"pool_size": 1, "isolation": "namespace"})
    try:
        check_away_and_back(server, engine, "faults_docs", postgres.resume,
                            secrets=(postgres.password, postgres.dsn))
        hung = marks["told"] - marks["paused"]
        print(f"\nthe search on the hung server ended the model's turn after {hung:.2f}s (timeout {HUNG_TIMEOUT}s)")
        assert HUNG_TIMEOUT * 0.9 <= hung < HUNG_TIMEOUT + MARGIN, f"the hung search took {hung:.2f}s"
        told = server.calls_for(ROOT)[2].text.split("Globex CEO hired", 1)[-1]
        assert f"did not answer within {HUNG_TIMEOUT:g} s" in told and "timeout=" in told, told[-800:]
    finally:
        postgres.resume()
        store.close()


def within(seconds: float, call: Callable[[], Any], postgres: PrivatePostgres) -> tuple[Any, float]:
    """Run ``call`` on a thread; return what it raised (or returned) and how long it took. A call still blocked
    after ``seconds`` fails the test (the server is resumed first, so the blocked call and the test can end)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            outcome["value"] = call()
        except Exception as e:
            outcome["value"] = e
        outcome["took"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        postgres.resume()
        thread.join(30)
        pytest.fail(f"a call to the hung PostgreSQL was still blocked after {seconds:.1f}s", pytrace=False)
    return outcome["value"], outcome["took"]


@pytest.mark.postgres
def test_postgres_hung_search_raises_within_timeout(postgres):
    """Adapter level: against a hung server a search, and the reconnect of the call after it, each raise
    VectorStoreError within the timeout (naming the server and the setting, never the password); resumed, the
    store serves again on a new connection."""
    from deeprecall.errors import VectorStoreError
    from deeprecall.vectorstores.pgvector import PgVectorStore

    store = PgVectorStore("hung_docs", dsn=postgres.dsn, embedding_fn=HashingEmbedding(), create=True,
                          timeout=HUNG_TIMEOUT)
    try:
        store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
        assert store.search("Acme revenue")
        postgres.pause()
        error, took = within(HUNG_TIMEOUT + MARGIN, lambda: store.search("Acme revenue"), postgres)
        print(f"\nsearch on the hung server: {type(error).__name__} after {took:.2f}s")
        assert isinstance(error, VectorStoreError), error
        assert HUNG_TIMEOUT * 0.9 <= took < HUNG_TIMEOUT + MARGIN, took
        message = str(error)
        assert f"127.0.0.1:{postgres.port}" in message and f"did not answer within {HUNG_TIMEOUT:g} s" in message
        assert "timeout=" in message and "hung_docs" in message, message
        assert postgres.password not in message and postgres.dsn not in message

        error, took = within(HUNG_TIMEOUT + MARGIN, store.count, postgres)  # reconnects: connecting is bounded too
        print(f"reconnect to the hung server: {type(error).__name__} after {took:.2f}s")
        assert isinstance(error, VectorStoreError), error
        assert f"did not complete a connection within {HUNG_TIMEOUT:g} s" in str(error), error
        assert took < HUNG_TIMEOUT + MARGIN and postgres.password not in str(error)

        postgres.resume()
        assert store.count() == len(DOCS)
        assert any("Hank Scorpio" in hit.content for hit in store.search("Globex CEO hired"))
    finally:
        postgres.resume()
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
