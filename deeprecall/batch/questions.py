"""Reading a batch's questions file and checking every line before any model call.

One JSON object per line: ``{"id": ..., "question": "...", "filters": {...}}`` (``filters`` optional, in
DeepRecall's filter language). Everything that can be wrong with a line is found here, up front, with
its line number, so a run of thousands of questions never stops at question 4,000 on a typo in line 3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError, FilterError
from deeprecall.vectorstores import filters as filter_language

FIELDS = frozenset({"id", "question", "filters"})


@dataclass(frozen=True)
class BatchQuestion:
    """One question to answer; ``key`` identifies its id across runs (1 and "1" are different ids)."""

    line: int
    id: str | int
    question: str
    filters: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return id_key(self.id)


@dataclass(frozen=True)
class InputProblem:
    """A line that cannot be answered. ``cause`` is one of: malformed_line, missing_id, bad_id,
    duplicate_id, missing_question, unknown_field, bad_filter."""

    line: int
    cause: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.cause}: {self.message}"


class BatchInputError(ConfigError):
    """The questions file has bad lines and ``--on-error stop`` was asked for: nothing was run."""

    def __init__(self, path: str, problems: list[InputProblem]) -> None:
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} bad line(s); nothing was run. Fix them, or pass --on-error skip "
                         f"to answer the other lines:\n{shown}{more}")
        self.problems = problems


def id_key(value: Any) -> str:
    """The id as the answers file and the duplicate check compare it: its JSON text."""
    return json.dumps(value, ensure_ascii=True)


def read_questions(path: str | Path) -> tuple[list[BatchQuestion], list[InputProblem]]:
    """Every good question in file order, and every bad line with its line number. Blank lines are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the questions file {path}: {e}") from None
    questions: list[BatchQuestion] = []
    problems: list[InputProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        checked = parse_line(number, raw)
        if isinstance(checked, InputProblem):
            problems.append(checked)
        elif checked.key in seen:
            problems.append(InputProblem(number, "duplicate_id",
                                         f"id {checked.key} is already used on line {seen[checked.key]}; ids must be unique"))
        else:
            seen[checked.key] = number
            questions.append(checked)
    return questions, problems


def parse_line(number: int, raw: str) -> BatchQuestion | InputProblem:
    """One line, checked: JSON object, known fields, an id, a question, filters the filter language accepts."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as e:
        return InputProblem(number, "malformed_line", f"not valid JSON ({e.msg} at column {e.colno})")
    if not isinstance(row, dict):
        return InputProblem(number, "malformed_line", f"a line must be a JSON object; got {type(row).__name__}")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        return InputProblem(number, "unknown_field", f"unknown field(s) {unknown}; a line has id, question and "
                                                      "optionally filters")
    if "id" not in row or row["id"] is None:
        return InputProblem(number, "missing_id", 'every line needs an "id" (a string or an integer)')
    if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)) or row["id"] == "":
        return InputProblem(number, "bad_id", f"id must be a non-empty string or an integer; got {row['id']!r}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return InputProblem(number, "missing_question", 'every line needs a non-empty "question" string')
    try:
        filters = filter_language.validate(row.get("filters"))
    except FilterError as e:
        return InputProblem(number, "bad_filter", str(e))
    return BatchQuestion(number, row["id"], question, filters)
