"""Shared fixtures. The LLM is the only fake, and it lives here: a scripted
OpenAI-compatible server on loopback (deeprecall.testing.scripted_server).

    def test_x(llm, make_engine):
        server = llm({"root": by_turn(T1, T2), "sub": lambda r: "ok"})
        engine = make_engine(server, docs=DOCS)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.testing.scripted_server import ChatRequest, Script, ScriptedLLMServer
from deeprecall.vectorstores.chroma import ChromaStore

DOCS = [
    ("Acme's revenue grew 12% in 2023, driven by the widget line.", {"tenant": "acme", "year": 2023, "topic": "finance"}),
    ("Acme opened a new factory in Lyon in 2022.", {"tenant": "acme", "year": 2022, "topic": "operations"}),
    ("Globex's revenue fell 3% in 2023 after a recall.", {"tenant": "globex", "year": 2023, "topic": "finance"}),
    ("Globex hired a new CEO, Hank Scorpio, in 2021.", {"tenant": "globex", "year": 2021, "topic": "people"}),
    ("The Acme widget line uses recycled aluminium.", {"tenant": "acme", "year": 2021, "topic": "product"}),
]

ROOT, SUB = "root-model", "sub-model"

# Under DEEPRECALL_REQUIRE_ISOLATION=1 (make test), a skipped security/isolation test fails (tests/skip_guard.py).
pytest_plugins = ["tests.skip_guard"]


@pytest.fixture(autouse=True)
def _no_real_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach a real provider: provider keys are removed from the environment."""
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def llm() -> Iterator[Callable[..., ScriptedLLMServer]]:
    """Start scripted LLM servers; they stop at the end of the test."""
    servers: list[ScriptedLLMServer] = []

    def start(scripts: Script | dict[str, Script], **kwargs: Any) -> ScriptedLLMServer:
        server = ScriptedLLMServer(scripts, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def make_store(name: str = "docs", docs: list[tuple[str, dict[str, Any]]] | None = None) -> ChromaStore:
    store = ChromaStore(f"{name}-{os.urandom(4).hex()}", persist_directory=None, embedding_fn=HashingEmbedding())
    docs = DOCS if docs is None else docs
    if docs:
        store.add_documents([d for d, _ in docs], [m for _, m in docs], ids=[f"doc{i}" for i in range(len(docs))])
    return store


@pytest.fixture
def store() -> ChromaStore:
    return make_store()


def engine_config(server: ScriptedLLMServer, *, subs: tuple[str, ...] = (SUB,), **overrides: Any) -> DeepRecallConfig:
    values: dict[str, Any] = {
        "backend": "vllm",
        "backend_kwargs": {"model_name": ROOT, "base_url": server.base_url, "max_retries": 0},
        "other_backends": ["vllm"] * len(subs),
        "other_backend_kwargs": [{"model_name": s, "base_url": server.base_url, "max_retries": 0} for s in subs],
        "environment_kwargs": {"pool_size": 1},
    }
    values.update(overrides)
    return DeepRecallConfig(**values)


@pytest.fixture
def make_engine(store: ChromaStore) -> Iterator[Callable[..., DeepRecall]]:
    """``make_engine(server, store=None, **config_overrides)``; engines close after the test."""
    engines: list[DeepRecall] = []

    def build(server: ScriptedLLMServer, *, vectorstore: Any = None, **overrides: Any) -> DeepRecall:
        engine = DeepRecall(vectorstore=vectorstore if vectorstore is not None else store,
                            config=engine_config(server, **overrides))
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def max_in_flight(requests: list[ChatRequest]) -> int:
    """The most requests the scripted server was serving at one moment (from their recorded timestamps)."""
    events = sorted([(r.received_at, 1) for r in requests] + [(r.replied_at, -1) for r in requests])
    busiest = current = 0
    for _, step in events:  # at equal times a reply (-1) sorts first: touching intervals do not overlap
        current += step
        busiest = max(busiest, current)
    return busiest
