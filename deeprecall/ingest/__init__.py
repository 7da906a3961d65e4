"""Ingestion: ``ingest_path(store, "docs/")`` chunks files and writes them, content-addressed,
so running it again (even after ``kill -9``) adds nothing twice."""

from deeprecall.ingest.chunking import Chunk, chunk_text
from deeprecall.ingest.loaders import SUPPORTED, html_to_text, iter_files, load_text
from deeprecall.ingest.pipeline import IngestReport, ingest_documents, ingest_path

__all__ = [
    "SUPPORTED",
    "Chunk",
    "IngestReport",
    "chunk_text",
    "html_to_text",
    "ingest_documents",
    "ingest_path",
    "iter_files",
    "load_text",
]
