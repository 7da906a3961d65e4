"""The answers file: one JSON record a line, appended, flushed and fsynced one by one.

Why append + fsync per line: a batch killed at any moment (kill -9, a lost machine) keeps every answer it
had written, and a re-run reads the file to skip the ids already answered. The only damage a kill can do
is a last line cut mid-write; ``AnswersFile`` finds it (no newline at the end, or not JSON) and cuts it off
before appending, so the re-run answers that id again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from deeprecall.batch.questions import id_key
from deeprecall.errors import ConfigError, redact
from deeprecall.results import QueryResult

# Outcomes that are not an answer: a re-run asks these ids again (the newer line supersedes the older).
# A query limit (max_iterations, max_tokens, ...) is an answer: the engine's best within the limits set.
FAILED = frozenset({"llm_error", "sandbox_failed", "exception", "cancelled"})


def answer_record(qid: str | int, result: QueryResult) -> dict[str, Any]:
    """The line written for one answered question."""
    usage = result.usage
    sources = [{"id": s.id, "score": s.score, "metadata": s.metadata, "content": s.content} for s in result.sources]
    return {"id": qid, "answer": result.answer, "sources": sources,
            "usage": {"root_calls": usage.root_calls, "sub_calls": usage.sub_calls, "search_calls": usage.search_calls,
                      "input_tokens": sum(u.input_tokens for u in [*usage.root.values(), *usage.sub.values()]),
                      "output_tokens": sum(u.output_tokens for u in [*usage.root.values(), *usage.sub.values()]),
                      "total_tokens": usage.total_tokens, "cost_usd": usage.total_cost_usd},
            "error": result.error, "error_message": result.error_message, "seconds": round(result.seconds, 3)}


def failure_record(qid: str | int, error: BaseException, seconds: float) -> dict[str, Any]:
    """The line written when ``query()`` raised instead of returning a result."""
    return {"id": qid, "answer": "", "sources": [], "usage": {}, "error": "exception",
            "error_message": redact(f"{type(error).__name__}: {error}"), "seconds": round(seconds, 3)}


class AnswersFile:
    """``--out``: read what earlier runs wrote, then append new records durably. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}  # id key -> the newest record for it
        self.dropped_torn_line: int | None = None  # the line number of a torn last line that was cut off
        self._lock = threading.Lock()
        self._load()
        self._file = self.path.open("ab")

    @property
    def answered(self) -> set[str]:
        """Id keys a re-run skips: their newest record is an answer, not a failure."""
        return {key for key, record in self.records.items() if record.get("error") not in FAILED}

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            raise ConfigError(f"cannot read the answers file {self.path}: {e}") from None
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline (b"" when the file ends well)
        for number, raw in enumerate(complete, start=1):
            record = _parse(raw)
            if record is None and number == len(complete) and not tail:
                tail = raw + b"\n"  # a last line that has its newline but is cut JSON: torn all the same
                complete = complete[:-1]
                break
            if record is None:
                if raw.strip():
                    raise ConfigError(f"{self.path} line {number} is not an answer record this command wrote; "
                                      "pass another --out, or fix or remove that line")
                continue
            self.records[id_key(record["id"])] = record
        if tail:
            self.dropped_torn_line = len(complete) + 1
            with self.path.open("r+b") as f:  # cut the torn line off, so the next record starts a line of its own
                f.truncate(len(data) - len(tail))
                os.fsync(f.fileno())

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            if self._file.closed:  # a query cancelled by Ctrl-C finishing after the run ended: asked again next run
                return
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.records[id_key(record["id"])] = record

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "id" in record else None
