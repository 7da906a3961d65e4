"""Splitting text into overlapping chunks that end at natural breaks.

Each chunk is at most ``chunk_size`` characters. It ends at the last paragraph
break, else sentence end, else space, in the second half of the window, so a
chunk rarely cuts a word or a sentence. The next chunk starts ``overlap``
characters before the previous end (moved forward to a word start), so a fact
that straddles a boundary is whole in at least one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeprecall.errors import ConfigError

_BREAKS = ("\n\n", "\n", ". ", "? ", "! ", "; ", " ")


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    text: str


def chunk_text(text: str, chunk_size: int = 1000, overlap: int = 200) -> list[Chunk]:
    if chunk_size <= 0:
        raise ConfigError(f"chunk_size must be positive; got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise ConfigError(f"overlap must be at least 0 and less than chunk_size ({chunk_size}); got {overlap}")
    chunks: list[Chunk] = []
    start, n = _skip_space(text, 0), len(text)
    while start < n:
        end = _break(text, start, min(start + chunk_size, n))
        piece = text[start:end].strip()
        if piece:
            chunks.append(Chunk(len(chunks), start, piece))
        if end >= n:
            break
        start = _skip_space(text, _word_start(text, max(end - overlap, start + 1), end))
    return chunks


def _break(text: str, start: int, end: int) -> int:
    """The best place to end a chunk in ``text[start:end]``: the last natural break in its second half."""
    if end >= len(text):
        return len(text)
    floor = start + (end - start) // 2
    for mark in _BREAKS:
        at = text.rfind(mark, floor, end)
        if at != -1:
            return at + len(mark)
    return end


def _word_start(text: str, pos: int, limit: int) -> int:
    """Move ``pos`` forward to the start of a word, but not past ``limit``."""
    while pos < limit and pos > 0 and not text[pos - 1].isspace():
        pos += 1
    return pos


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
