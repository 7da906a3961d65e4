"""The batch's progress on stderr: a tqdm bar on a terminal when tqdm is installed, else a plain line
at most every few seconds (a log file or CI output stays readable), nothing when turned off."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

PLAIN_EVERY = 5.0


class BatchMeter:
    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total, self.done, self.errors = total, 0, 0
        self._started = self._last = time.monotonic()
        self._bar: Any = None
        if enabled and self.stream.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="q", file=self.stream, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, error: str | None) -> None:
        self.done += 1
        self.errors += error is not None
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(errors=self.errors, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= PLAIN_EVERY or self.done == self.total:
            self._last = now
            rate = self.done / max(now - self._started, 1e-9)
            self.stream.write(f"batch: {self.done}/{self.total} answered, {self.errors} errors, {rate:.2f}/s\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
