"""FAISS: an index in memory, saved to a folder DeepRecall can reopen, or one you built.

``faiss`` and ``numpy`` are imported here only (``pip install 'deeprecall[faiss]'``).

FAISS stores vectors, not text, so a FAISS store is an index plus a docstore.
DeepRecall's folder format is append-only so that ``kill -9`` loses at most the
batch being written, never the store:

    meta.json     dimension and metric, written once (atomically)
    vectors.f32   float32 rows, appended
    docs.jsonl    one {"id", "text", "metadata"} line per row, appended

On load the shorter of the two wins (a torn last batch is dropped) and a later
row with the same id replaces an earlier one. The index is rebuilt from the
vectors, which takes a moment even at 100k rows for a flat index.

Filters run in Python over the docstore and reach FAISS as an ``IDSelector``,
so a filtered search is still exact, with no over-fetch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError, MissingDependencyError, VectorStoreError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores._adapter import StoreAdapter
from deeprecall.vectorstores._support import (
    MARKER,
    EmbeddingFn,
    check_dimension,
    embedding_dim,
    id_to_int64,
    split_metadata,
    vendor_errors,
)
from deeprecall.vectorstores.base import Filter, Hit, Metadata
from deeprecall.vectorstores.write_batches import WriteLimits

Row = tuple[str, str, Metadata]  # doc id, text, metadata


def _faiss() -> tuple[Any, Any]:
    try:
        import faiss
        import numpy
    except ImportError as e:
        raise MissingDependencyError("faiss-cpu", "faiss", "FaissStore") from e
    return faiss, numpy


class FaissStore(StoreAdapter):
    """``FaissStore(embedding_fn=fn, path="./faiss-store")`` creates or reopens a store.

    Without ``path`` it lives in memory until ``save(path)``. Use ``attach`` for
    an index you built yourself.
    """

    kind = "faiss"
    # In-process, no request limit: writes are bounded so one append to the files (and a torn tail a kill
    # can leave, dropped on load) stays small.
    WRITE_LIMITS = WriteLimits(max_count=10_000, max_bytes=64 * 2**20)

    def __init__(self, *, embedding_fn: EmbeddingFn | None, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(str(path or "memory"), embedding_fn, True)
        faiss, _ = _faiss()
        self._rows: dict[int, Row] = {}
        self._selections: dict[str, Any] = {}
        self._path = Path(path) if path is not None else None
        self.normalize = True
        if self._path is not None and (self._path / "meta.json").exists():
            self._load()
        else:
            self.dim = embedding_dim(embedding_fn, repr(self))
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            if self._path is not None:
                self._write_meta()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, embedding_fn: EmbeddingFn | None) -> FaissStore:
        """Reopen a folder written by DeepRecall; fails if there is none."""
        if not (Path(path) / "meta.json").exists():
            raise VectorStoreError(f"{path} is not a DeepRecall FAISS folder (no meta.json)")
        return cls(embedding_fn=embedding_fn, path=path)

    @classmethod
    def attach(
        cls,
        index: Any,
        documents: Mapping[int, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
        *,
        embedding_fn: EmbeddingFn | None,
        text_field: str = "text",
        id_field: str | None = "id",
        metadata_field: str | None = "metadata",
        normalize: bool = False,
    ) -> FaissStore:
        """Attach read-only to your own index (or a path to one) and its docstore.

        ``documents`` maps each FAISS id to a record, or is a list whose position
        is the FAISS id (the usual ``index.add`` numbering). The field names say
        which record fields hold the text, the id and the metadata; with
        ``metadata_field=None`` every other field is metadata.
        """
        faiss, _np = _faiss()
        if isinstance(index, (str, os.PathLike)):
            with vendor_errors("FaissStore", f"reading {index}"):
                index = faiss.read_index(str(index))
        store = cls.__new__(cls)
        StoreAdapter.__init__(store, "attached", embedding_fn, False)
        store._path, store.index, store.dim, store.normalize = None, index, int(index.d), normalize
        store._selections = {}
        items = documents.items() if isinstance(documents, Mapping) else enumerate(documents)
        store._rows = {int(k): _row(int(k), rec, text_field, id_field, metadata_field) for k, rec in items}
        check_dimension(store.dim, embedding_fn, repr(store))
        return store

    # -- search ------------------------------------------------------------------
    def _translate(self, conjunct: Filter) -> Filter:
        return conjunct  # evaluated in Python over the docstore, handed to FAISS as an IDSelector

    def _search(self, query: str, vector: list[float] | None, k: int, native: list[Any]) -> list[Hit]:
        faiss, np = _faiss()
        q = np.asarray([vector], dtype="float32")
        if self.normalize:
            faiss.normalize_L2(q)
        params = None
        if native:
            allowed = self._allowed(native)
            if not len(allowed):
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        k = min(k, int(self.index.ntotal))
        if k <= 0:
            return []
        with vendor_errors(repr(self), "search"):
            scores, ids = self.index.search(q, k, params=params)
        l2 = self.index.metric_type == faiss.METRIC_L2
        pairs = zip(scores[0].tolist(), ids[0].tolist(), strict=True)
        return [self._hit(i, -s if l2 else s) for s, i in pairs if i >= 0 and i in self._rows]

    def _allowed(self, native: list[Filter]) -> Any:
        """FAISS ids passing the filter, cached per filter until the next write: a tenant filter
        repeats on every query, and evaluating it over a large docstore is the slow part."""
        _, np = _faiss()
        key = json.dumps(native, sort_keys=True, default=str)
        if key not in self._selections:
            if len(self._selections) >= 64:
                self._selections.clear()
            ids = [i for i, (_, _, meta) in self._rows.items() if all(fl.matches(c, meta) for c in native)]
            self._selections[key] = np.asarray(ids, dtype="int64")
        return self._selections[key]

    def _hit(self, fid: int, score: float) -> Hit:
        doc_id, text, meta = self._rows[fid]
        return Hit(id=doc_id, content=text, metadata=dict(meta), score=score)

    # -- writes --------------------------------------------------------------------
    def _upsert(self, ids: list[str], texts: list[str], metas: list[Metadata], vectors: list[list[float]]) -> None:
        faiss, np = _faiss()
        fids = np.asarray([id_to_int64(i) for i in ids], dtype="int64")
        vecs = np.asarray(vectors, dtype="float32")
        if self.normalize:
            faiss.normalize_L2(vecs)
        if self._path is not None:  # the files first: a write that fails (a full disk) leaves the index as it was
            self._append(vecs, ids, texts, metas)
        with vendor_errors(repr(self), "add"):
            replaced = [f for f in fids.tolist() if f in self._rows]
            if replaced:
                self.index.remove_ids(np.asarray(replaced, dtype="int64"))
            self.index.add_with_ids(vecs, fids)
        self._rows.update({int(f): (i, t, m) for f, i, t, m in zip(fids.tolist(), ids, texts, metas, strict=True)})
        self._selections.clear()

    def _append(self, vecs: Any, ids: list[str], texts: list[str], metas: list[Metadata]) -> None:
        """Vectors first, then docs; each file is fsynced, so a kill leaves at worst a torn tail (dropped on load).
        A write that fails (a full disk) is cut back off both files at once: the next append in this process
        would otherwise start after a torn tail, pairing later documents with the wrong vectors."""
        assert self._path is not None
        records = zip(ids, texts, metas, strict=True)
        lines = "".join(json.dumps({"id": i, "text": t, "metadata": m}) + "\n" for i, t, m in records)
        with vendor_errors(repr(self), "writing"):
            sizes = {name: (self._path / name).stat().st_size for name in ("vectors.f32", "docs.jsonl")}
            try:
                for name, data in (("vectors.f32", vecs.tobytes()), ("docs.jsonl", lines.encode())):
                    with open(self._path / name, "ab") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
            except OSError:
                for name, size in sizes.items():
                    os.truncate(self._path / name, size)  # needs no free space
                raise

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole store to a new folder that ``FaissStore.load`` reopens."""
        _, np = _faiss()
        target = Path(path)
        if (target / "meta.json").exists():
            raise ConfigError(f"{target} already holds a store; choose a new folder")
        fids = list(self._rows)
        with vendor_errors(repr(self), "reading vectors"):
            vecs = np.vstack([self.index.reconstruct(f) for f in fids]) if fids else np.zeros((0, self.dim), "float32")
        self._path = target
        self.name = str(target)
        self._write_meta()
        rows = [self._rows[f] for f in fids]
        self._append(vecs.astype("float32"), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    # -- the folder format -------------------------------------------------------------
    def _write_meta(self) -> None:
        assert self._path is not None
        self._path.mkdir(parents=True, exist_ok=True)
        tmp = self._path / "meta.json.tmp"
        tmp.write_text(json.dumps({"dim": self.dim, "metric": "cosine", "created_by": MARKER}))
        os.replace(tmp, self._path / "meta.json")
        for name in ("vectors.f32", "docs.jsonl"):
            (self._path / name).touch()

    def _load(self) -> None:
        assert self._path is not None
        faiss, np = _faiss()
        meta = json.loads((self._path / "meta.json").read_text())
        self.dim = int(meta["dim"])
        check_dimension(self.dim, self.embedding_fn, repr(self))
        vecs = np.fromfile(self._path / "vectors.f32", dtype="float32")
        docs, good_bytes = _read_lines(self._path / "docs.jsonl")
        n = min(len(vecs) // self.dim, len(docs))
        vecs = vecs[: n * self.dim].reshape(n, self.dim)
        latest = {docs[i]["id"]: i for i in range(n)}  # a later row with the same id wins
        keep = sorted(latest.values())
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        fids = [id_to_int64(docs[i]["id"]) for i in keep]
        if keep:
            self.index.add_with_ids(np.ascontiguousarray(vecs[keep]), np.asarray(fids, dtype="int64"))
        self._rows = {f: (docs[i]["id"], docs[i]["text"], docs[i]["metadata"]) for f, i in zip(fids, keep, strict=True)}
        self._truncate(n, docs, good_bytes)

    def _truncate(self, n: int, docs: list[dict[str, Any]], good_bytes: list[int]) -> None:
        """Drop a torn tail, so the next append starts on a row boundary."""
        assert self._path is not None
        os.truncate(self._path / "vectors.f32", n * self.dim * 4)
        os.truncate(self._path / "docs.jsonl", good_bytes[n - 1] if n else 0)

    # -- the rest of the Protocol ------------------------------------------------------
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if id_to_int64(i) in self._rows and self._rows[id_to_int64(i)][0] == i}

    def scan(self, batch_size: int = 512) -> Iterator[Hit]:
        for fid in list(self._rows):
            yield self._hit(fid, 0.0)

    def count(self) -> int:
        return len(self._rows)


def _row(fid: int, rec: Mapping[str, Any], text_field: str, id_field: str | None, metadata_field: str | None) -> Row:
    doc_id = str(rec.get(id_field, fid)) if id_field else str(fid)
    if metadata_field:
        meta = dict(rec.get(metadata_field) or {})
    else:
        meta = split_metadata(dict(rec), (text_field, id_field or ""), None)
    return doc_id, str(rec.get(text_field, "")), meta


def _read_lines(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """Complete JSON lines only (a line cut short by a kill ends the list), with the byte offset after each."""
    out: list[dict[str, Any]] = []
    ends: list[int] = []
    pos = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                out.append(json.loads(raw))
            except ValueError:
                break
            pos += len(raw)
            ends.append(pos)
    return out, ends
