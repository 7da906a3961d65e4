"""Scoring rules of the quality benchmark, on answers whose right score is known."""

from __future__ import annotations

import pytest

from benchmarks.quality.metrics import citations, exact_match, markdown_table, summarize, token_f1
from benchmarks.quality.systems import parse_rag_reply
from benchmarks.quality.world import ABSENT, Question


def q(answer, answer_type="text", options=(), gold_ids=("d1",)) -> Question:
    return Question("q", "f", "k", "?", answer, answer_type, list(gold_ids), list(options))


@pytest.mark.parametrize("answer, expected", [
    ("Olm", 1), ("the Olm.", 1), ("It is the river Olm.", 1), ("Olmer", 0), ("Teshe", 0),
    ("Olm or Teshe", 0),                                     # names a competing option too
    ("Olm " + "word " * 40, 0),                              # containment only in a short answer
])
def test_text_exact_match(answer, expected):
    assert exact_match(answer, q("Olm", options=["Olm", "Teshe", "Olmer"])) == expected


@pytest.mark.parametrize("answer, expected", [
    ("7", 1), ("There are seven.", 1), ("4,251 in total", 0), ("1 of them, 7 in all", 1), ("70", 0), ("unknown", 0),
    ("7 (org-014, org-021)", 1),                            # document ids are not numbers
])
def test_number_exact_match_reads_the_last_number(answer, expected):
    assert exact_match(answer, q("7", "number")) == expected


def test_list_match_is_a_set_match_over_the_names_of_that_kind():
    question = q(["Ano Works", "Bel Guild"], "list", options=["Ano Works", "Bel Guild", "Cor Mills"])
    assert exact_match("Bel Guild and Ano Works.", question) == 1
    assert exact_match("Ano Works, Bel Guild, Cor Mills", question) == 0
    assert exact_match("Ano Works", question) == 0
    assert token_f1("Ano Works", question) == pytest.approx(2 / 3)
    assert token_f1("Ano Works, Bel Guild, Cor Mills", question) == pytest.approx(0.8)


@pytest.mark.parametrize("answer, expected", [
    (ABSENT, 1), ("The documents do not mention a mayor.", 1), ("Unknown.", 1), ("I could not find it.", 1),
    ("Tamsin Orlo", 0), ("", 0),
])
def test_absent_is_correct_only_when_the_answer_says_it_is_not_there(answer, expected):
    assert exact_match(answer, q(ABSENT, "absent", gold_ids=())) == expected


def test_abstaining_on_an_answerable_question_scores_zero():
    assert exact_match("not in the documents", q("Olm")) == 0


def test_token_f1_partial_credit():
    assert token_f1("the river Olm Teshe", q("Olm Teshe")) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_citations_against_gold_ids():
    assert citations(["a", "b", "c", "d"], ["a", "x"]) == (0.25, 0.5)
    assert citations([], ["a"]) == (None, 0.0)
    assert citations(["a"], []) == (None, None)


def test_rag_reply_parsing_keeps_only_ids_it_was_given():
    answer, cited = parse_rag_reply("Answer: Olm\nSources: city-001, city-009, org-777", ["city-001", "city-009", "city-0011"])
    assert answer == "Olm" and cited == ["city-001", "city-009"]
    assert parse_rag_reply("Olm, I think.", ["city-001"]) == ("Olm, I think.", [])


def test_summary_and_table():
    rows = [{"system": "rag", "family": "f", "em": 1.0, "f1": 1.0, "citation_precision": 0.5, "citation_recall": 1.0,
             "llm_calls": 1, "tokens": 100, "seconds": 2.0, "error": None},
            {"system": "rag", "family": "f", "em": 0.0, "f1": 0.5, "citation_precision": None, "citation_recall": None,
             "llm_calls": 1, "tokens": 300, "seconds": 4.0, "error": "llm_error"}]
    summary = summarize(rows)
    assert summary["rag"]["f"]["em"] == 0.5 and summary["rag"]["f"]["citation_precision"] == 0.5
    assert summary["rag"]["all"]["failures"] == {"llm_error": 1} and summary["rag"]["all"]["tokens"] == 200
    assert "| f | rag | 2 | 0.50 | 0.75 | 0.50 | 1.00 | 1.0 | 200 | 3.0 | llm_error 1 |" in markdown_table(summary)
