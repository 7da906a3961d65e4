"""Chroma's fingerprint (the server's answer cache keys on it): it changes with every write, an in-place
update included, and a second client of the same folder (another process's view) sees the change."""

from __future__ import annotations

from pathlib import Path

from deeprecall.embeddings.hashing import HashingEmbedding
from deeprecall.vectorstores.chroma import ChromaStore


def test_fingerprint_changes_with_each_write_as_another_client_sees_it(tmp_path: Path) -> None:
    writer = ChromaStore("fp-docs", persist_directory=str(tmp_path), embedding_fn=HashingEmbedding())
    writer.add_documents(["Acme grew 12% in 2023."], ids=["acme"])
    reader = ChromaStore.attach("fp-docs", path=str(tmp_path), embedding_fn=HashingEmbedding())
    before = reader.fingerprint()
    assert before is not None and before == reader.fingerprint()  # stable while nothing changes

    writer.add_documents(["Acme grew 15% in 2023."], ids=["acme"])  # same id: the count stays 1
    assert reader.count() == 1
    after_update = reader.fingerprint()
    assert after_update not in (None, before)

    writer.add_documents(["Globex shrank."], ids=["globex"])
    assert reader.fingerprint() not in (None, before, after_update)
    assert writer.collection.configuration_json["hnsw"]["space"] == "cosine"  # the marker left the space alone
    assert reader.search("Acme growth", top_k=1)[0].content == "Acme grew 15% in 2023."
