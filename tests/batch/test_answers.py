"""The answers file: what a re-run skips, how a torn last line is found and cut off, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deeprecall.batch.answers import AnswersFile
from deeprecall.errors import ConfigError


def line(qid: object, error: str | None = None) -> str:
    return json.dumps({"id": qid, "answer": "x", "error": error}) + "\n"


def test_answered_ids_are_skipped_failed_ones_asked_again_the_newest_line_wins(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    out.write_text(line("a") + line(1, "max_iterations") + line("b", "llm_error") + line("c", "llm_error") + line("c"))
    answers = AnswersFile(out)
    assert answers.answered == {'"a"', "1", '"c"'}  # a limit is an answer; b failed; c failed, then was answered
    assert answers.dropped_torn_line is None
    answers.close()


@pytest.mark.parametrize("torn", ['{"id": "b", "answer": "half', '{"id": "b", "answer": "half\n'])
def test_a_torn_last_line_is_cut_off_and_the_next_record_starts_its_own_line(tmp_path: Path, torn: str) -> None:
    out = tmp_path / "a.jsonl"
    out.write_text(line("a") + torn)
    answers = AnswersFile(out)
    assert answers.dropped_torn_line == 2 and answers.answered == {'"a"'}
    answers.append({"id": "b", "answer": "whole", "error": None})
    answers.close()
    assert [json.loads(raw)["id"] for raw in out.read_text().splitlines()] == ["a", "b"]


def test_a_broken_line_before_the_last_is_not_a_file_this_command_wrote(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    out.write_text(line("a") + "not json\n" + line("b"))
    with pytest.raises(ConfigError, match=r"line 2 is not an answer record"):
        AnswersFile(out)
    assert out.read_text().count("\n") == 3  # left as it was


def test_each_record_is_on_disk_when_append_returns(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    answers = AnswersFile(out)
    answers.append({"id": "a", "answer": "é", "error": None})
    assert json.loads(out.read_text(encoding="utf-8"))["answer"] == "é"  # read back before close
    answers.close()
    answers.append({"id": "late", "answer": "", "error": "cancelled"})  # after the run ended: dropped, no error
    assert out.read_text(encoding="utf-8").count("\n") == 1
