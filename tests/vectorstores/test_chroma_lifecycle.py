"""ChromaStore's first open and its failures: nothing half-made is left bound to an embedding that failed,
and an embedding conflict says which flag or folder resolves it. Real Chroma, real embedding functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.errors import ConfigError

chromadb = pytest.importorskip("chromadb")
from deeprecall.vectorstores.chroma import ChromaStore  # noqa: E402


def names(folder: Path) -> list[str]:
    return [c.name for c in chromadb.PersistentClient(path=str(folder)).list_collections()]


def not_a_model(tmp_path: Path) -> Any:
    """A real embedding function that cannot embed: sentence-transformers pointed at a folder with no model."""
    pytest.importorskip("sentence_transformers")
    from deeprecall.embeddings import SentenceTransformerEmbedding

    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return SentenceTransformerEmbedding(str(folder))


def test_an_embedding_that_fails_creates_no_collection_and_the_retry_works(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="could not load"):
        ChromaStore("docs", persist_directory=str(tmp_path / "db"), embedding_fn=not_a_model(tmp_path))
    assert names(tmp_path / "db") == []
    store = ChromaStore("docs", persist_directory=str(tmp_path / "db"), embedding_fn=HashingEmbedding(64))
    store.add_documents(["Acme opened a factory in Lyon."])
    assert store.count() == 1


def test_conflict_is_a_config_error_that_names_the_recorded_embedding_and_the_way_out(tmp_path: Path) -> None:
    from deeprecall.embeddings import OpenAIEmbedding

    folder = str(tmp_path / "db")
    ChromaStore("docs", persist_directory=folder, embedding_fn=HashingEmbedding(64)).add_documents(["kept"])
    other = OpenAIEmbedding(base_url="http://127.0.0.1:9/v1")  # never called: the conflict comes first
    with pytest.raises(ConfigError) as caught:
        ChromaStore("docs", persist_directory=folder, embedding_fn=other)
    message = str(caught.value)
    assert "'deeprecall-hashing'" in message and "`--embedding hashing:64`" in message
    assert "--collection" in message and "--persist-dir" in message and folder in message
    assert ChromaStore("docs", persist_directory=folder, embedding_fn=HashingEmbedding(64)).count() == 1


def test_discard_if_unused_removes_only_an_empty_collection_this_object_created(tmp_path: Path) -> None:
    folder = str(tmp_path / "db")
    made = ChromaStore("fresh", persist_directory=folder, embedding_fn=HashingEmbedding(64))
    assert made.created and made.discard_if_unused() and names(tmp_path / "db") == []

    ChromaStore("theirs", persist_directory=folder, embedding_fn=HashingEmbedding(64))  # an empty one, made before
    reopened = ChromaStore("theirs", persist_directory=folder, embedding_fn=HashingEmbedding(64))
    assert not reopened.created and not reopened.discard_if_unused()

    filled = ChromaStore("filled", persist_directory=folder, embedding_fn=HashingEmbedding(64))
    filled.add_documents(["one document"])
    assert filled.created and not filled.discard_if_unused()
    assert sorted(names(tmp_path / "db")) == ["filled", "theirs"]
