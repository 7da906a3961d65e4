"""Finding files and turning each into plain text: text, Markdown, HTML, and PDF (optional extra).

HTML goes through the standard library's parser: scripts, styles and other
non-content elements are dropped and block elements end lines, which is what
chunking needs. PDF needs ``pypdf`` (``pip install 'deeprecall[pdf]'``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path

from deeprecall.errors import ConfigError, MissingDependencyError

TEXT = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".org", ".adoc"})
HTML = frozenset({".html", ".htm", ".xhtml"})
PDF = frozenset({".pdf"})
SUPPORTED = TEXT | HTML | PDF
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".deeprecall"})


def iter_files(path: str | os.PathLike[str], extensions: Iterable[str] | None = None) -> Iterator[Path]:
    """Supported files under ``path`` (or ``path`` itself), in a stable order; hidden and tool folders skipped."""
    root = Path(path)
    wanted = frozenset(e if e.startswith(".") else "." + e for e in extensions) if extensions else SUPPORTED
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise ConfigError(f"nothing to ingest at {str(root)!r}: no such file or folder")
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                yield Path(folder) / name


def load_text(path: Path) -> str:
    """The text of one file, by extension; unknown extensions are read as UTF-8 text."""
    suffix = path.suffix.lower()
    if suffix in PDF:
        return _pdf_text(path)
    raw = path.read_text(encoding="utf-8", errors="replace")
    return html_to_text(raw) if suffix in HTML else raw


class _TextExtractor(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
                       "pre", "blockquote", "table", "ul", "ol", "title", "header", "footer", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    body = "".join(parser.parts)
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in body.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = parser.title.strip()
    return f"{title}\n\n{text}" if title and not text.startswith(title) else text


def _pdf_text(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError as e:
        raise MissingDependencyError("pypdf", "pdf", "PDF ingestion") from e
    reader = PdfReader(str(path))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
