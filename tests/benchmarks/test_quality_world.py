"""The generated world: deterministic per seed, and every gold answer is what the gold documents' text says."""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict

import pytest

from benchmarks.quality.world import ABSENT, FAMILIES, Question, World, generate, select


@pytest.fixture(scope="module")
def world() -> World:
    return generate(11)


def _texts(world: World, ids: list[str]) -> list[str]:
    by_id = {d.id: d.text for d in world.documents}
    return [by_id[i] for i in ids]


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate(11)
    assert [asdict(d) for d in again.documents] == [asdict(d) for d in world.documents]
    assert {f: [asdict(q) for q in qs] for f, qs in again.questions.items()} == \
           {f: [asdict(q) for q in qs] for f, qs in world.questions.items()}
    assert [d.text for d in generate(12).documents] != [d.text for d in world.documents]


def test_documents_are_short_and_ids_unique(world):
    assert len({d.id for d in world.documents}) == len(world.documents) > 200
    assert all(len(re.findall(r"\.(?:\s|$)", d.text)) <= 3 and len(d.text) < 260 for d in world.documents)


def test_near_duplicate_names_with_different_facts(world):
    cities = list(world.cities.values())
    pairs = [(cities[i], cities[24 + i]) for i in range(10)]
    for a, b in pairs:
        assert a.name != b.name and a.name[:3] == b.name[:3] and a.river != b.river


def test_selection_is_balanced_and_deterministic(world):
    picked = select(world, 14, FAMILIES, seed=5)
    counts = {f: sum(q.family == f for q in picked) for f in FAMILIES}
    assert counts == {"single_hop": 3, "two_hop": 3, "three_hop": 2, "comparison": 2, "aggregation": 2, "absent": 2}
    assert [q.id for q in select(world, 14, FAMILIES, seed=5)] == [q.id for q in picked]
    assert len({q.kind for q in picked if q.family == "single_hop"}) == 3  # spread over kinds
    assert [q.family for q in select(world, 4, ["absent"], seed=5)] == ["absent"] * 4


def _number_forms(value: str) -> list[str]:
    return [value, f"{int(value):,}"]


# Where each kind's answer stands in its last gold document: the answer must be the fact asked for,
# not merely a name that document contains.
RELATION = {
    **dict.fromkeys(["river", "hq_river", "capital_river", "founder_river", "employer_river"], r"on the river {a}\."),
    "residents": r"has {a} residents",
    **dict.fromkeys(["founded", "employer_founded"], r"founded in {a}\b"),
    "revenue": r"revenue of {a} million",
    **dict.fromkeys(["birthplace", "founder_birthplace"], r"born in {a} in"),
    **dict.fromkeys(["capital", "birth_capital"], r"(?:capital is|city of) {a}\."),
    **dict.fromkeys(["birth_country", "employer_country"], r"is a city in {a} on"),
}


@pytest.mark.parametrize("family", ["single_hop", "two_hop", "three_hop"])
def test_lookup_and_bridge_answers_are_in_the_last_gold_document(world, family):
    """The question names what the first gold document is about, each next document is reached through a
    name the previous one gives, and the last one states the answer."""
    for q in world.questions[family]:
        docs = _texts(world, q.gold_ids)
        assert len(docs) == {"single_hop": 1, "two_hop": 2, "three_hop": 3}[family]
        forms = _number_forms(str(q.answer)) if q.answer_type == "number" else [str(q.answer)]
        assert any(re.search(RELATION[q.kind].format(a=re.escape(f)), docs[-1]) for f in forms), (q, docs)
        subject = docs[0].split(" is ")[0].split(" was ")[0]
        if subject not in q.text:  # country documents are phrased "The capital of X is ..."
            assert re.search(r"capital of (\w+)", docs[0]).group(1) in q.text, (q, docs)
        for before, after in itertools.pairwise(docs):
            assert _names(before) & _names(after), (q, docs)


def _names(text: str) -> set[str]:
    return set(re.findall(r"\b[A-Z][a-z]{3,}\b", text)) - {"It", "The"}


def test_comparison_gold_is_what_the_numbers_in_the_documents_say(world):
    for q in world.questions["comparison"]:
        a, b = _texts(world, q.gold_ids)
        assert a.startswith(q.options[0]) and b.startswith(q.options[1])
        if q.kind == "city_bigger":
            va, vb = (int(re.search(r"has ([\d,]+) residents", t).group(1).replace(",", "")) for t in (a, b))
            winner = q.options[0] if va > vb else q.options[1]
        else:
            key = r"founded in (\d{4})" if q.kind == "org_older" else r"born in \w+ in (\d{4})"
            va, vb = (int(re.search(key, t).group(1)) for t in (a, b))
            winner = q.options[0] if va < vb else q.options[1]
        assert q.answer == winner, (q, a, b)


def test_aggregation_needs_more_documents_than_top_k_and_gold_is_complete(world):
    everything = {d.id: d.text for d in world.documents}
    for q in world.questions["aggregation"]:
        assert len(q.gold_ids) > 5, q
        target = re.search(r"(?:headquartered in|work(?:s)? at) ([A-Z][\w ]*?)[?.]", q.text).group(1)
        phrase = f"headquartered in {target}." if "headquartered" in q.text else f"works at {target} as"
        assert sorted(i for i, t in everything.items() if phrase in t) == sorted(q.gold_ids), q
        docs = _texts(world, q.gold_ids)
        if q.kind.startswith("count"):
            assert q.answer == str(len(docs))
        elif q.kind == "sum_revenue":
            assert q.answer == str(sum(int(re.search(r"revenue of (\d+) million", t).group(1)) for t in docs))
        else:
            assert sorted(q.answer) == sorted(t.split(" is ")[0].split(" was ")[0] for t in docs)


def test_absent_answers_are_nowhere_in_the_documents(world):
    corpus = " ".join(d.text for d in world.documents)
    words = {"mayor": "mayor", "staff_size": "employ", "ceo": "executive", "spouse": "married"}
    for q in world.questions["absent"]:
        assert q.answer == ABSENT and q.gold_ids == []
        if q.kind == "unknown_city":
            name = re.search(r"through (\w+)\?", q.text).group(1)
            assert not re.search(rf"\b{name}\b", corpus), q
        else:
            assert words[q.kind] not in corpus.lower(), q


def test_every_family_has_a_pool_and_question_ids_are_unique(world):
    ids = [q.id for qs in world.questions.values() for q in qs]
    assert len(ids) == len(set(ids))
    assert all(len(world.questions[f]) >= 20 for f in FAMILIES)
    assert all(isinstance(q, Question) and q.family == f for f, qs in world.questions.items() for q in qs)
