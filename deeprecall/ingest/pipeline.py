"""Ingestion: files to chunks to batched, content-addressed writes.

Why it survives ``kill -9``: every chunk's id is a hash of its text and source
(``content_id``), every write is an upsert by id, and a batch is written only
after it is embedded. A killed run leaves whole batches (the stores write a
batch atomically, or for FAISS drop a torn tail on load); the next run finds
those ids already present (``existing_ids``), skips their embedding, and adds
the rest. So a re-run converges to every chunk exactly once. (A store that
starts empty is not asked: only this run can have written its ids.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeprecall.errors import MissingDependencyError, ReadOnlyStoreError
from deeprecall.ingest.chunking import chunk_text
from deeprecall.ingest.loaders import iter_files, load_text
from deeprecall.ingest.progress import Progress
from deeprecall.vectorstores._support import content_id
from deeprecall.vectorstores.base import Metadata

Document = tuple[str, Metadata]


@dataclass
class IngestReport:
    files: int = 0
    chunks: int = 0
    added: int = 0
    already_present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    seconds: float = 0.0

    def __str__(self) -> str:
        line = (f"ingested {self.files} files: {self.chunks} chunks, {self.added} added, "
                f"{self.already_present} already present ({self.seconds:.1f} s)")
        if self.skipped:
            line += f"; skipped {len(self.skipped)} files: " + ", ".join(f"{f} ({r})" for f, r in self.skipped[:5])
        return line


def ingest_path(
    store: Any,
    path: str | os.PathLike[str],
    *,
    chunk_size: int = 1000,
    overlap: int = 200,
    batch_size: int = 64,
    progress: bool | None = None,
    extensions: Iterable[str] | None = None,
    metadata: Metadata | None = None,
) -> IngestReport:
    """Ingest a file or a folder (recursively) into ``store``; returns what happened.

    ``progress=None`` shows a bar only when stderr is a terminal. ``metadata``
    is added to every chunk (a tenant, say). Each chunk also gets ``source``
    (the file's absolute path), ``chunk`` (its index in the file) and ``title``
    (the file name). A file that cannot be read is skipped and reported, not fatal.
    """
    _check_writable(store)
    started = time.monotonic()
    files = list(iter_files(path, extensions))
    report = IngestReport()
    bar = Progress(len(files), progress)
    try:
        docs = _file_chunks(files, chunk_size, overlap, metadata or {}, report, bar)
        _write(store, docs, batch_size, report, bar)
    finally:
        bar.close()
    report.seconds = time.monotonic() - started
    return report


def ingest_documents(
    store: Any,
    documents: Iterable[Document],
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> IngestReport:
    """Ingest ready-made ``(text, metadata)`` pairs with the same ids and batching as ``ingest_path``."""
    _check_writable(store)
    started = time.monotonic()
    report = IngestReport()
    bar = Progress(0, progress)
    try:
        _write(store, _counted(documents, report), batch_size, report, bar)
    finally:
        bar.close()
    report.seconds = time.monotonic() - started
    return report


def _check_writable(store: Any) -> None:
    if getattr(store, "writable", True) is False:
        raise ReadOnlyStoreError(repr(store))


def _counted(documents: Iterable[Document], report: IngestReport) -> Iterator[Document]:
    for doc in documents:
        report.chunks += 1
        yield doc


def _file_chunks(
    files: list[Path], chunk_size: int, overlap: int, extra: Metadata, report: IngestReport, bar: Progress
) -> Iterator[Document]:
    for file in files:
        try:
            text = load_text(file)
        except MissingDependencyError:
            raise  # a missing extra (PDF) is the user's to fix, not a bad file
        except Exception as e:  # parsers (pypdf) raise their own types; one bad file must not stop the rest
            report.skipped.append((str(file), f"{type(e).__name__}: {e}"))
            bar.update(files=1)
            continue
        source = str(file.resolve())
        chunks = chunk_text(text, chunk_size, overlap)
        report.files += 1
        report.chunks += len(chunks)
        bar.update(files=1, chunks=len(chunks))
        for c in chunks:
            yield c.text, {**extra, "source": source, "chunk": c.index, "title": file.name}


def _write(store: Any, docs: Iterable[Document], batch_size: int, report: IngestReport, bar: Progress) -> None:
    """Batches of ``batch_size``. A store that starts empty is not asked which ids it has: only this
    run can have written them, and ``seen`` remembers those. That saves one lookup per batch."""
    ask_store = hasattr(store, "existing_ids") and store.count() > 0
    seen: set[str] = set()
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= batch_size:
            _flush(store, batch, seen, ask_store, report, bar)
            batch = []
    if batch:
        _flush(store, batch, seen, ask_store, report, bar)


def _flush(store: Any, batch: list[Document], seen: set[str], ask_store: bool, report: IngestReport,
           bar: Progress) -> None:
    """Write one batch: drop ids already stored or already written by this run, embed and upsert the rest."""
    ids = [content_id(text, {"source": meta.get("source", "")}) for text, meta in batch]
    fresh = [i for i in ids if i not in seen]
    present = store.existing_ids(fresh) if ask_store and fresh else set()
    todo: list[tuple[str, str, Metadata]] = []
    for doc_id, (text, meta) in zip(ids, batch, strict=True):
        if doc_id not in seen and doc_id not in present:
            todo.append((doc_id, text, meta))
        seen.add(doc_id)
    if todo:
        store.add_documents([t for _, t, _ in todo], [m for _, _, m in todo], ids=[i for i, _, _ in todo])
    report.added += len(todo)
    report.already_present += len(batch) - len(todo)
    bar.update(added=len(todo))
