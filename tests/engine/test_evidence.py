"""Which retrieved documents back an answer: a word check, no LLM call (deeprecall/engine/evidence.py)."""

from __future__ import annotations

from deeprecall.engine.evidence import connected, question_names, says_not_found, supporting, words
from deeprecall.results import Source

DOCS = [
    Source("sandboxes", "Every query runs in a worker process or a Docker container; the local sandbox uses "
                        "Linux namespaces.", score=0.9),
    Source("rivers", "Togrin is a city in Krothaear on the river Vecer. It has 238,000 residents.", score=0.8),
    Source("other", "Zialt is a river in the north.", score=0.7),
]


def test_the_answer_must_add_words_that_a_document_contains():
    assert [s.id for s in supporting("Vecer", "Which river flows through Togrin?", DOCS)] == ["rivers"]
    assert [s.id for s in supporting("238000 people", "How many live in Togrin?", DOCS)] == ["rivers"]
    assert supporting("Rome", "Which river flows through Togrin?", DOCS) == []  # from memory

def test_an_answer_that_picks_a_name_from_the_question_is_backed_by_the_documents_naming_it():
    assert [s.id for s in supporting("Zialt", "Which is longer, Vecer or Zialt?", DOCS)] == ["other"]


def test_a_long_prose_answer_is_backed_when_most_of_what_it_adds_is_in_the_documents():
    answer = "It keeps the model's code in worker processes or containers, and can use the local and docker sandboxes."
    assert [s.id for s in supporting(answer, "How does DeepRecall keep code away from the host?", DOCS)] == ["sandboxes"]
    assert "container" in words("containers") and "process" in words("processes") and "s" not in words("model's")


def test_several_documents_are_chosen_when_the_answer_needs_them_all_and_no_more():
    chosen = supporting("Vecer and Zialt", "Name two rivers.", DOCS)
    assert sorted(s.id for s in chosen) == ["other", "rivers"]


def test_not_found_answers_are_recognised_and_back_nothing():
    for answer in ("not in the documents", "The documents do not mention a mayor.", "Unknown.",
                   "I cannot find this in the documents."):
        assert says_not_found(answer) and supporting(answer, "Who is the mayor?", DOCS) == []
    assert not says_not_found("Vecer")


CHAIN = [
    Source("org-025", "Trizous Holdings is an insurance company headquartered in Houcelt, founded by Vond Stakran.", score=0.9),
    Source("org-081", "Triafan Works is a printing company headquartered in Kuzet.", score=0.8),
    Source("org-090", "Brel Holdings is a mining company headquartered in Kuzet.", score=0.7),
    Source("org-091", "Dour Holdings is a shipping company headquartered in Temt.", score=0.7),
    Source("city-x", "Kuzet is a city in Stikeand on the river Zialt.", score=0.5),
    Source("city-003", "Houcelt is a city in Stikeand on the river Draciand.", score=0.4),
]
TWO_HOP = "Which river flows through the city where Trizous Holdings is headquartered?"


def test_an_answer_from_another_chain_is_not_connected_to_the_question():
    right, wrong = supporting("Draciand", TWO_HOP, CHAIN), supporting("Zialt", TWO_HOP, CHAIN)
    assert [s.id for s in right] == ["city-003"] and connected(right, TWO_HOP, CHAIN)
    # Zialt's city shares only a country (Stikeand, two links away) and, through Brel Holdings, the
    # word "Holdings" (in 3 documents: common, it links nothing) with Trizous Holdings.
    assert [s.id for s in wrong] == ["city-x"] and not connected(wrong, TWO_HOP, CHAIN)
    assert question_names(TWO_HOP) == ["Trizous", "Holdings"]


def test_a_one_hop_answer_is_connected_directly():
    backing = supporting("Vecer", "Which river flows through Togrin?", DOCS)
    assert connected(backing, "Which river flows through Togrin?", DOCS)
