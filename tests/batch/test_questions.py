"""Checking a questions file: every cause, with its line number; good lines kept in order."""

from __future__ import annotations

import json
from pathlib import Path

from deeprecall.batch.questions import read_questions


def test_every_bad_line_is_found_with_its_number_and_cause(tmp_path: Path) -> None:
    lines = ['{"id": "a", "question": "q1"}', "[1, 2]", '{"id": true, "question": "q"}', '{"id": "b"}',
             "", '{"id": "c", "question": "q", "filters": {"year": {"$gt": [1]}}}', '{"id": 1, "question": "q"}',
             '{"id": "1", "question": "a string id, not a duplicate of 1"}', '{"id": 1, "question": "again"}']
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n")
    questions, problems = read_questions(path)
    assert [(q.line, q.id) for q in questions] == [(1, "a"), (7, 1), (8, "1")]
    assert [(p.line, p.cause) for p in problems] == [(2, "malformed_line"), (3, "bad_id"), (4, "missing_question"),
                                                     (6, "bad_filter"), (9, "duplicate_id")]
    assert "$gt needs a number or string" in problems[3].message and "on line 7" in problems[4].message


def test_filters_are_kept_as_given(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "q", "filters": {"$or": [{"t": "x"}, {"y": {"$in": [1, 2]}}]}}))
    (question,), problems = read_questions(path)
    assert problems == [] and question.filters == {"$or": [{"t": "x"}, {"y": {"$in": [1, 2]}}]}
