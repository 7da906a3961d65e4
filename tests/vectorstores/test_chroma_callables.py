"""Any callable embeds for Chroma on every path: create, reopen and attach, with a plain function and a
lambda. chromadb 1.x asks an embedding function for ``name()`` and ``is_legacy()``; a plain function used
to fail creation with "'function' object has no attribute 'name'"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.vectorstores.chroma import ChromaStore

_HASH = HashingEmbedding(64)


def plain_function(texts: list[str]) -> list[list[float]]:
    return _HASH(texts)


CALLABLES = {"function": plain_function, "lambda": lambda texts: _HASH(texts)}
TEXTS = ["the cat sat on the mat", "quarterly revenue grew", "rust borrow checker"]


@pytest.mark.parametrize("kind", sorted(CALLABLES))
def test_create_reopen_and_attach_with_a_plain_callable(tmp_path: Path, kind: str) -> None:
    fn: Any = CALLABLES[kind]
    created = ChromaStore("docs", persist_directory=str(tmp_path), embedding_fn=fn)
    assert created.created and created.writable
    created.add_documents(TEXTS)
    assert created.search("revenue grew", top_k=1)[0].content == "quarterly revenue grew"

    reopened = ChromaStore("docs", persist_directory=str(tmp_path), embedding_fn=fn)
    assert not reopened.created and reopened.writable and reopened.count() == 3
    reopened.add_documents(["a fourth document"])
    assert reopened.search("borrow checker", top_k=1)[0].content == "rust borrow checker"

    attached = ChromaStore.attach("docs", path=str(tmp_path), embedding_fn=fn)
    assert attached.count() == 4
    assert attached.search("cat on the mat", top_k=1)[0].content == "the cat sat on the mat"


def test_reopen_with_another_plain_callable_of_the_same_model(tmp_path: Path) -> None:
    """A re-created function (a new lambda after a restart) is no embedding conflict."""
    ChromaStore("docs", persist_directory=str(tmp_path), embedding_fn=plain_function).add_documents(TEXTS)
    again = ChromaStore("docs", persist_directory=str(tmp_path), embedding_fn=lambda t: _HASH(t))
    assert again.search("revenue", top_k=1)[0].content == "quarterly revenue grew"


def test_ephemeral_store_with_a_lambda_and_chroma_embedding_through_it() -> None:
    """Without persist_directory, and with Chroma itself calling the function (a query by text)."""
    store = ChromaStore("docs", persist_directory=None, embedding_fn=lambda t: _HASH(t))
    store.add_documents(TEXTS)
    got = store.collection.query(query_texts=["quarterly revenue"], n_results=1)
    assert got["documents"][0][0] == "quarterly revenue grew"
