"""Questions over a generated world, per family, with gold answers and the documents that support them.

Gold answers are computed from the world's data, and the documents are rendered from the same data, so
an answer is right exactly when the documents say so (tests/benchmarks check this against the text).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from benchmarks.quality.world import ABSENT, City, Org, Person, Question, World

Maker = Callable[[World, random.Random], list[Question]]


def _q(family: str, kind: str, text: str, answer: str | int | list[str], gold: list[str], options: list[str] | None = None,
       answer_type: str | None = None) -> Question:
    kind_of = answer_type or ("number" if isinstance(answer, int) else "list" if isinstance(answer, list) else "text")
    value: str | list[str] = answer if isinstance(answer, list) else str(answer)
    return Question("", family, kind, text, value, kind_of, gold, list(options or []))


def _city_of(world: World, name: str) -> City:
    return world.cities[name]


def single_hop(world: World, rng: random.Random) -> list[Question]:
    rivers, cities = [c.river for c in world.cities.values()], list(world.cities)
    out = []
    for c in world.cities.values():
        out.append(_q("single_hop", "river", f"Which river flows through {c.name}?", c.river, [c.id], rivers))
        out.append(_q("single_hop", "residents", f"How many residents does {c.name} have?", c.residents, [c.id]))
    for o in world.orgs.values():
        out.append(_q("single_hop", "founded", f"In what year was {o.name} founded?", o.founded, [o.id]))
        out.append(_q("single_hop", "revenue", f"What is the annual revenue of {o.name}, in million crowns?", o.revenue, [o.id]))
    for p in world.people.values():
        out.append(_q("single_hop", "birthplace", f"In which city was {p.name} born?", p.city, [p.id], cities))
    for country, capital in world.countries.items():
        gold = [world.country_ids[country]]
        out.append(_q("single_hop", "capital", f"What is the capital of {country}?", capital, gold, cities))
    return out


def two_hop(world: World, rng: random.Random) -> list[Question]:
    rivers, cities, countries = [c.river for c in world.cities.values()], list(world.cities), list(world.countries)
    out = []
    for o in world.orgs.values():
        c = _city_of(world, o.city)
        out.append(_q("two_hop", "hq_river", f"Which river flows through the city where {o.name} is headquartered?",
                      c.river, [o.id, c.id], rivers))
        if o.founder:
            f = world.people[o.founder]
            out.append(_q("two_hop", "founder_birthplace", f"In which city was the founder of {o.name} born?",
                          f.city, [o.id, f.id], cities))
    for p in world.people.values():
        c, o = _city_of(world, p.city), world.orgs[p.org]
        out.append(_q("two_hop", "birth_country", f"In which country was {p.name} born?", c.country, [p.id, c.id], countries))
        out.append(_q("two_hop", "employer_founded", f"In what year was the organisation that {p.name} works at founded?",
                      o.founded, [p.id, o.id]))
    for country, capital in world.countries.items():
        c = _city_of(world, capital)
        out.append(_q("two_hop", "capital_river", f"Which river flows through the capital of {country}?",
                      c.river, [world.country_ids[country], c.id], rivers))
    return out


def three_hop(world: World, rng: random.Random) -> list[Question]:
    rivers, cities, countries = [c.river for c in world.cities.values()], list(world.cities), list(world.countries)
    out = []
    for o in world.orgs.values():
        if o.founder:
            f = world.people[o.founder]
            c = _city_of(world, f.city)
            out.append(_q("three_hop", "founder_river",
                          f"Which river flows through the city where the founder of {o.name} was born?",
                          c.river, [o.id, f.id, c.id], rivers))
    for p in world.people.values():
        o = world.orgs[p.org]
        hq, born = _city_of(world, o.city), _city_of(world, p.city)
        out.append(_q("three_hop", "employer_country",
                      f"In which country is the organisation that {p.name} works at headquartered?",
                      hq.country, [p.id, o.id, hq.id], countries))
        out.append(_q("three_hop", "employer_river",
                      f"Which river flows through the city where the organisation that {p.name} works at is headquartered?",
                      hq.river, [p.id, o.id, hq.id], rivers))
        out.append(_q("three_hop", "birth_capital", f"What is the capital of the country where {p.name} was born?",
                      world.countries[born.country], [p.id, born.id, world.country_ids[born.country]], cities))
    return out


def comparison(world: World, rng: random.Random) -> list[Question]:
    out: list[Question] = []
    orgs, cities, people = list(world.orgs.values()), list(world.cities.values()), list(world.people.values())
    for _ in range(30):
        a, b = rng.sample(orgs, 2)
        if a.founded != b.founded:
            out.append(_pair("org_older", f"Which was founded earlier, {a.name} or {b.name}?", a, b, a.founded < b.founded))
        c, d = _twin_or_pair(world, rng, cities)
        if c.residents != d.residents:
            out.append(_pair("city_bigger", f"Which city has more residents, {c.name} or {d.name}?", c, d,
                             c.residents > d.residents))
        p, r = rng.sample(people, 2)
        if p.born != r.born:
            out.append(_pair("person_older", f"Who was born earlier, {p.name} or {r.name}?", p, r, p.born < r.born))
    return out


def _pair(kind: str, text: str, a: City | Org | Person, b: City | Org | Person, first_wins: bool) -> Question:
    gold = a.name if first_wins else b.name
    return _q("comparison", kind, text, gold, [a.id, b.id], [a.name, b.name])


def _twin_or_pair(world: World, rng: random.Random, cities: list[City]) -> tuple[City, City]:
    """Half the city comparisons are between near-duplicate names (Varnholm or Varnholt?)."""
    if rng.random() < 0.5:
        i = rng.randrange(10)
        return cities[i], cities[24 + i]
    a, b = rng.sample(cities, 2)
    return a, b


def aggregation(world: World, rng: random.Random) -> list[Question]:
    """Over 6-8 documents each, more than a top-5 retrieval can hold."""
    all_orgs, all_people = list(world.orgs), list(world.people)
    out = []
    for hub in world.hub_cities:
        orgs = [o for o in world.orgs.values() if o.city == hub]
        ids = [o.id for o in orgs]
        out.append(_q("aggregation", "count_orgs", f"How many organisations are headquartered in {hub}?", len(orgs), ids))
        out.append(_q("aggregation", "sum_revenue",
                      f"What is the combined annual revenue, in million crowns, of all organisations headquartered in {hub}?",
                      sum(o.revenue for o in orgs), ids))
        out.append(_q("aggregation", "list_orgs", f"List all organisations headquartered in {hub}.",
                      [o.name for o in orgs], ids, all_orgs))
    for name in world.hub_orgs:
        staff = [p for p in world.people.values() if p.org == name]
        ids = [p.id for p in staff]
        out.append(_q("aggregation", "count_staff", f"How many people in the documents work at {name}?", len(staff), ids))
        out.append(_q("aggregation", "list_staff", f"List everyone in the documents who works at {name}.",
                      [p.name for p in staff], ids, all_people))
    return out


def absent(world: World, rng: random.Random) -> list[Question]:
    """Unknown entities (some a near-duplicate of a real name) and facts no document states."""
    out = []
    for name in world.unused_names:
        out.append(_q("absent", "unknown_city", f"Which river flows through {name}?", ABSENT, [], answer_type="absent"))
    for c in list(world.cities.values())[:15]:
        out.append(_q("absent", "mayor", f"Who is the mayor of {c.name}?", ABSENT, [], answer_type="absent"))
    for o in list(world.orgs.values())[:15]:
        out.append(_q("absent", "staff_size", f"How many employees does {o.name} have?", ABSENT, [], answer_type="absent"))
        out.append(_q("absent", "ceo", f"Who is the chief executive of {o.name}?", ABSENT, [], answer_type="absent"))
    for p in list(world.people.values())[:15]:
        out.append(_q("absent", "spouse", f"Who is {p.name} married to?", ABSENT, [], answer_type="absent"))
    return out


MAKERS: dict[str, Maker] = {"single_hop": single_hop, "two_hop": two_hop, "three_hop": three_hop,
                            "comparison": comparison, "aggregation": aggregation, "absent": absent}


def build_questions(world: World, rng: random.Random) -> dict[str, list[Question]]:
    pools = {}
    for family, make in MAKERS.items():
        pool = make(world, rng)
        for i, q in enumerate(pool):
            q.id = f"{family}-{i:03d}"
        pools[family] = pool
    return pools
