"""Chunking, loaders and the ingestion pipeline (the kill -9 test is in test_kill.py)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

from deeprecall.embeddings import HashingEmbedding
from deeprecall.errors import ConfigError, VectorStoreError
from deeprecall.ingest import chunk_text, html_to_text, ingest_documents, ingest_path, iter_files, load_text
from deeprecall.ingest.progress import Progress
from deeprecall.vectorstores.faiss import FaissStore

TEXT = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(200))


def test_chunks_fit_overlap_and_cover() -> None:
    chunks = chunk_text(TEXT, chunk_size=300, overlap=80)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.start + len(a.text)  # they overlap
        assert TEXT[b.start - 1] == " "  # and start on a word
    words = set(TEXT.split())
    assert words == set(" ".join(c.text for c in chunks).split())
    assert chunks[0].text.endswith(".")  # ends at a sentence break


def test_chunking_edge_cases() -> None:
    assert chunk_text("") == []
    assert [c.text for c in chunk_text("  short  ")] == ["short"]
    assert all(len(c.text) <= 10 for c in chunk_text("x" * 95, chunk_size=10, overlap=3))
    with pytest.raises(ConfigError, match="overlap"):
        chunk_text("x", chunk_size=10, overlap=10)
    with pytest.raises(ConfigError, match="chunk_size"):
        chunk_text("x", chunk_size=0)


def test_html_to_text_drops_scripts_and_keeps_blocks() -> None:
    html = ("<html><head><title>Widgets</title><style>p{}</style></head><body><script>alert(1)</script>"
            "<h1>Specs</h1><p>Weight: 2&nbsp;kg</p><p>Colour: red</p></body></html>")
    text = html_to_text(html)
    assert "alert" not in text and "p{}" not in text
    assert text.splitlines()[0] == "Widgets"
    assert "Specs\n" in text and "Weight: 2\xa0kg\n" in text


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with one line of text, with a correct xref table."""
    stream = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.txt").write_text(TEXT)
    (root / "b.md").write_text("# Title\n\nMarkdown body about widgets.")
    (root / "sub" / "c.html").write_text("<p>HTML body about gadgets</p><script>x()</script>")
    (root / "sub" / "d.pdf").write_bytes(minimal_pdf("PDF body about sprockets"))
    (root / "e.bin").write_bytes(b"\0\1\2")
    (root / ".git" / "f.txt").write_text("never read")
    return root


def test_iter_files_finds_supported_and_skips_hidden(corpus: Path) -> None:
    names = [p.name for p in iter_files(corpus)]
    assert names == ["a.txt", "b.md", "c.html", "d.pdf"]
    assert [p.name for p in iter_files(corpus, extensions=["md"])] == ["b.md"]
    assert [p.name for p in iter_files(corpus / "a.txt")] == ["a.txt"]
    with pytest.raises(ConfigError, match="no such file"):
        list(iter_files(corpus / "missing"))


def test_pdf_text(corpus: Path) -> None:
    assert "PDF body about sprockets" in load_text(corpus / "sub" / "d.pdf")


def test_ingest_then_rerun_adds_nothing(corpus: Path) -> None:
    store = FaissStore(embedding_fn=HashingEmbedding(64))
    first = ingest_path(store, corpus, chunk_size=400, overlap=50, batch_size=4, metadata={"tenant": "acme"})
    assert first.files == 4 and first.added == first.chunks == store.count() and first.already_present == 0
    again = ingest_path(store, corpus, chunk_size=400, overlap=50, batch_size=4, metadata={"tenant": "acme"})
    assert again.added == 0 and again.already_present == first.chunks and store.count() == first.chunks
    hit = store.search("sprockets", top_k=1, filters={"title": "d.pdf"})[0]
    assert "sprockets" in hit.content and hit.metadata["tenant"] == "acme"
    assert hit.metadata["source"] == str((corpus / "sub" / "d.pdf").resolve()) and hit.metadata["chunk"] == 0
    assert "4 files" in str(first)


def test_unreadable_file_is_skipped_and_reported(corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    report = ingest_path(FaissStore(embedding_fn=HashingEmbedding(64)), corpus, progress=False)
    assert [Path(f).name for f, _ in report.skipped] == ["broken.pdf"] and report.files == 4


def test_read_only_store_refuses_before_reading(tmp_path: Path) -> None:
    import faiss

    store = FaissStore.attach(faiss.IndexFlatIP(64), [], embedding_fn=HashingEmbedding(64))
    with pytest.raises(VectorStoreError, match="writable=True"):
        ingest_path(store, tmp_path / "does-not-matter")


def test_ingest_documents() -> None:
    store = FaissStore(embedding_fn=HashingEmbedding(64))
    docs = [(f"document {i}", {"n": i}) for i in range(10)] + [("document 3", {"n": 3})]
    report = ingest_documents(store, docs, batch_size=4)
    assert (report.chunks, report.added, report.already_present) == (11, 10, 1) and store.count() == 10


def test_ingest_batches_larger_than_chroma_takes_are_split() -> None:
    """A batch_size above Chroma's max_batch_size (5,461) used to fail the run with "Batch size ... is greater
    than max batch size"; add_documents now splits each batch to what the store accepts."""
    from deeprecall.vectorstores.chroma import ChromaStore

    store = ChromaStore(f"ingest_big_{id(object())}", persist_directory=None, embedding_fn=HashingEmbedding(16))
    docs = [(f"document {i}", {"n": i}) for i in range(6_000)]
    report = ingest_documents(store, docs, batch_size=6_000)
    assert report.added == 6_000 and store.count() == 6_000


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_silent_off_a_terminal_unless_asked() -> None:
    quiet = FakeStream(tty=False)
    bar = Progress(3, None, quiet)
    bar.update(files=3, chunks=9, added=9)
    bar.close()
    assert quiet.getvalue() == ""
    loud = FakeStream(tty=False)
    bar = Progress(3, True, loud)
    bar.update(files=3, chunks=9, added=9)
    assert "3/3 files, 9 chunks, 9 added" in loud.getvalue()


def test_progress_uses_tqdm_on_a_terminal() -> None:
    import tqdm  # noqa: F401  (in the test extra; without it Progress would fall back and this would test nothing)
    tty = FakeStream(tty=True)
    bar = Progress(2, None, tty)
    bar.update(files=2, chunks=4, added=4)
    bar.close()
    assert "2/2" in tty.getvalue()
