"""The contract every store adapter passes: the same documents, queries,
filters and expected ids, parametrized over the stores in conftest.FACTORIES."""

from __future__ import annotations

from typing import Any

import pytest

from deeprecall.errors import FilterError
from deeprecall.vectorstores import filters as fl
from deeprecall.vectorstores.base import Hit, VectorStore

DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "a1": ("Acme quarterly revenue rose on strong widget sales", {"tenant": "acme", "year": 2021, "topic": "finance", "score": 0.25, "public": True}),
    "a2": ("The new Acme gizmo ships with a titanium hinge", {"tenant": "acme", "year": 2022, "topic": "product", "score": 0.5, "public": False}),
    "a3": ("Acme auditors flagged inventory write downs", {"tenant": "acme", "year": 2023, "topic": "finance", "score": 0.75, "public": True}),
    "a4": ("Acme promoted Wile as chief rocket officer", {"tenant": "acme", "year": 2024, "topic": "people", "score": 1.0, "public": False}),
    "g1": ("Globex bond issuance priced above par", {"tenant": "globex", "year": 2021, "topic": "finance", "score": 0.5, "public": True}),
    "g2": ("Globex hired Hank Scorpio to lead research", {"tenant": "globex", "year": 2022, "topic": "people", "score": 0.25, "public": True}),
    "g3": ("Globex doomsday device recalled over battery faults", {"tenant": "globex", "year": 2023, "topic": "product", "score": 0.75, "public": False}),
    "i1": ("Initech TPS report costs audited by consultants", {"tenant": "initech", "year": 2022, "topic": "finance", "score": 0.5, "public": False}),
    "i2": ("Initech basement printer jams every Tuesday morning", {"tenant": "initech", "year": 2023, "score": 1.0, "public": True}),
    "u1": ("Umbrella vaccine line expanded into Raccoon City", {"tenant": "umbrella", "year": 2024, "topic": "product", "score": 0.25, "public": True}),
}
ALL = set(DOCS)
ACME = {"a1", "a2", "a3", "a4"}

FILTER_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("eq string", {"tenant": "acme"}, ACME),
    ("eq int", {"year": 2023}, {"a3", "g3", "i2"}),
    ("eq bool", {"public": True}, {"a1", "a3", "g1", "g2", "i2", "u1"}),
    ("eq float", {"score": 0.5}, {"a2", "g1", "i1"}),
    ("$eq explicit", {"tenant": {"$eq": "globex"}}, {"g1", "g2", "g3"}),
    ("$ne", {"tenant": {"$ne": "acme"}}, ALL - ACME),
    ("$ne passes a missing key", {"topic": {"$ne": "finance"}}, {"a2", "a4", "g2", "g3", "i2", "u1"}),
    ("$in", {"tenant": {"$in": ["globex", "initech"]}}, {"g1", "g2", "g3", "i1", "i2"}),
    ("$in ints", {"year": {"$in": [2021, 2024]}}, {"a1", "a4", "g1", "u1"}),
    ("$nin passes a missing key", {"topic": {"$nin": ["finance", "people"]}}, {"a2", "g3", "i2", "u1"}),
    ("$gt", {"year": {"$gt": 2022}}, {"a3", "a4", "g3", "i2", "u1"}),
    ("$gte+$lt", {"year": {"$gte": 2022, "$lt": 2024}}, {"a2", "a3", "g2", "g3", "i1", "i2"}),
    ("$lte float", {"score": {"$lte": 0.5}}, {"a1", "a2", "g1", "g2", "i1", "u1"}),
    ("float open range", {"score": {"$gt": 0.5, "$lt": 1.0}}, {"a3", "g3"}),
    ("string range", {"tenant": {"$gte": "g"}}, ALL - ACME),
    ("string range below", {"tenant": {"$lt": "h"}}, ACME | {"g1", "g2", "g3"}),
    ("implicit and", {"tenant": "acme", "public": True}, {"a1", "a3"}),
    ("$and", {"$and": [{"tenant": "acme"}, {"year": {"$gte": 2022}}]}, {"a2", "a3", "a4"}),
    ("$or", {"$or": [{"tenant": "globex"}, {"year": 2021}]}, {"g1", "g2", "g3", "a1"}),
    ("$or of $and", {"$or": [{"$and": [{"tenant": "acme"}, {"public": False}]}, {"topic": "people"}]}, {"a2", "a4", "g2"}),
    ("$or with a string range", {"$or": [{"tenant": {"$lt": "b"}}, {"year": 2024}]}, ACME | {"u1"}),
    ("native and Python parts", {"tenant": {"$gte": "g"}, "year": 2023}, {"g3", "i2"}),
    ("unknown key", {"nope": 1}, set()),
    ("$ne on an unknown key", {"nope": {"$ne": 1}}, ALL),
    ("host AND model", fl.combine({"tenant": "acme"}, {"$or": [{"year": 2023}, {"topic": "product"}]}), {"a2", "a3"}),
    ("host AND model nested", fl.combine({"$or": [{"tenant": "globex"}, {"tenant": "initech"}]}, {"public": True}), {"g1", "g2", "i2"}),
]


@pytest.fixture
def store(make_store: Any) -> Any:
    s = make_store()
    s.add_documents([t for t, _ in DOCS.values()], [m for _, m in DOCS.values()], ids=list(DOCS))
    return s


def test_is_a_vector_store(store: Any) -> None:
    assert isinstance(store, VectorStore)
    assert store.count() == len(DOCS)


@pytest.mark.parametrize("doc_id", sorted(DOCS))
def test_own_text_finds_itself_first(store: Any, doc_id: str) -> None:
    hits = store.search(DOCS[doc_id][0], top_k=3)
    assert hits[0].id == doc_id
    assert hits[0].content == DOCS[doc_id][0]
    assert hits[0].metadata == DOCS[doc_id][1]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(("case", "flt", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filter(store: Any, case: str, flt: dict[str, Any], expected: set[str]) -> None:
    assert {i for i, (_, m) in DOCS.items() if fl.matches(flt, m)} == expected  # the reference agrees
    hits = store.search("Acme Globex Initech revenue", top_k=len(DOCS) + 5, filters=flt)
    assert {h.id for h in hits} == expected
    assert all(fl.matches(flt, h.metadata) for h in hits)


def test_top_k_holds_with_a_python_filtered_part(store: Any) -> None:
    hits = store.search("Globex", top_k=2, filters={"tenant": {"$gte": "g"}})
    assert len(hits) == 2
    assert all(h.metadata["tenant"] >= "g" for h in hits)


def test_invalid_filter_is_a_filter_error(store: Any) -> None:
    with pytest.raises(FilterError):
        store.search("x", filters={"year": {"$regex": "20"}})


def test_top_k_zero_and_one(store: Any) -> None:
    assert store.search("Acme", top_k=0) == []
    assert len(store.search("Acme", top_k=1)) == 1


def test_re_adding_adds_nothing(store: Any) -> None:
    store.add_documents([t for t, _ in DOCS.values()], [m for _, m in DOCS.values()], ids=list(DOCS))
    assert store.count() == len(DOCS)


def test_content_ids_are_stable(make_store: Any) -> None:
    s = make_store()
    first = s.add_documents(["alpha beta", "gamma delta", "alpha beta"], [{"source": "x"}] * 3)
    assert first[0] == first[2]
    assert s.add_documents(["alpha beta"], [{"source": "x"}]) == first[:1]
    assert s.count() == 2
    assert s.existing_ids([first[0], "missing-id"]) == {first[0]}


def test_scan_returns_every_document(store: Any) -> None:
    seen = {h.id: h for h in store.scan(batch_size=3)}
    assert set(seen) == ALL
    assert seen["i2"].metadata == DOCS["i2"][1]


def test_describe(store: Any) -> None:
    d = store.describe()
    assert d["kind"] == store.kind and d["documents"] == len(DOCS)
    assert {"tenant", "year"} <= set(d["metadata_keys"])


def test_hit_to_dict(store: Any) -> None:
    hit = store.search("Umbrella vaccine", top_k=1)[0]
    assert isinstance(hit, Hit)
    assert hit.to_dict()["id"] == "u1" and hit.to_dict()["metadata"]["tenant"] == "umbrella"


def test_empty_store_searches_to_nothing(make_store: Any) -> None:
    empty = make_store()
    assert empty.search("anything", top_k=3) == []
    assert empty.search("anything", top_k=3, filters={"tenant": {"$gte": "a"}}) == []  # the Python-filtered path
