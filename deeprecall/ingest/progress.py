"""A progress bar that never gets in the way: tqdm when it is installed and
stderr is a terminal, a one-line text bar otherwise, nothing when turned off."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    def __init__(self, total: int, enabled: bool | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.done, self.chunks, self.added = total, 0, 0, 0
        self._bar: Any = None
        self._last = 0.0
        if self.enabled and self.stream.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="file", file=self.stream, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, files: int = 0, chunks: int = 0, added: int = 0) -> None:
        self.done += files
        self.chunks += chunks
        self.added += added
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(files)
            self._bar.set_postfix(chunks=self.chunks, added=self.added, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= 1.0 or self.done == self.total:
            self._last = now
            self.stream.write(f"ingest: {self.done}/{self.total} files, {self.chunks} chunks, {self.added} added\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
