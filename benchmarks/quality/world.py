"""A seeded fictional world, rendered into short documents, with questions whose answers only it knows.

Every name is made up from syllables, so no model can answer from memory: a correct answer had to be read.
Distractors are built in: some cities, organisations and people have a near-duplicate twin (Varnholm and
Varnholt) with different facts, so matching on a name's look is punished. Documents are 1-2 sentences, so a
small model with a 16k window can read dozens of them.

The same seed gives the same world, documents, ids and questions, on any machine (only ``random.Random``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("single_hop", "two_hop", "three_hop", "comparison", "aggregation", "absent")
ABSENT = "not in the documents"

_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "tr",
           "v", "w", "z", "th", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou"]
_CODAS = ["", "", "n", "r", "l", "m", "s", "th", "nd", "rk", "lt"]
_INDUSTRIES = ["shipping", "textile", "mining", "software", "brewing", "glassworks", "insurance", "printing"]
_ORG_WORDS = ["Works", "Logistics", "Holdings", "Guild", "Foundry", "Mills", "Collective", "Partners"]
_PROFESSIONS = ["engineer", "accountant", "chemist", "designer", "surveyor", "pilot", "archivist", "translator"]


@dataclass
class Document:
    id: str
    text: str
    metadata: dict[str, Any]


@dataclass
class Question:
    """``answer`` is a string, or a list for list-all questions; ``answer_type`` says how to score it
    (text, number, list, absent). ``options`` are the names that compete with the gold answer: an answer
    naming one of them as well is not credited by containment, and list answers are scored over them."""

    id: str
    family: str
    kind: str
    text: str
    answer: str | list[str]
    answer_type: str
    gold_ids: list[str]
    options: list[str] = field(default_factory=list)


@dataclass
class City:
    name: str
    country: str
    river: str
    founded: int
    residents: int
    id: str = ""


@dataclass
class Org:
    name: str
    industry: str
    city: str
    founded: int
    revenue: int
    founder: str | None = None
    id: str = ""


@dataclass
class Person:
    name: str
    city: str
    born: int
    org: str
    profession: str
    id: str = ""


@dataclass
class World:
    seed: int
    countries: dict[str, str]           # country -> capital city
    cities: dict[str, City]
    orgs: dict[str, Org]
    people: dict[str, Person]
    country_ids: dict[str, str]
    hub_cities: list[str]
    hub_orgs: list[str]
    unused_names: list[str]             # made-up names that appear in no document (for absent questions)
    documents: list[Document] = field(default_factory=list)
    questions: dict[str, list[Question]] = field(default_factory=dict)


class Names:
    """Unique made-up names. Every stem is new, so no name is a word of another, and a near-duplicate
    differs from its original in its last letters only."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def stem(self, syllables: int) -> str:
        for _ in range(1000):
            word = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables))
            word = (word + self.rng.choice(_CODAS)).capitalize()
            if word not in self.used and len(word) >= 4:
                self.used.add(word)
                return word
        raise RuntimeError("ran out of names")

    def twin(self, name: str) -> str:
        """A near-duplicate of ``name``: its first word with the same start and another ending."""
        first, *tail = name.split(" ")
        for _ in range(1000):
            ending = self.rng.choice(["t", "m", "n", "k", "a", "o", "en", "ar", "is"])
            word = first[: max(3, len(first) - self.rng.choice([1, 2]))] + ending
            if word != first and word not in self.used:
                self.used.add(word)
                return " ".join([word, *tail])
        raise RuntimeError(f"no twin for {name}")


def _build_places(rng: random.Random, names: Names) -> tuple[dict[str, str], dict[str, City]]:
    countries = [names.stem(2) + rng.choice(["ia", "ar", "and", "ey"]) for _ in range(8)]
    cities: dict[str, City] = {}
    for i in range(24):
        city = City(names.stem(2), countries[i % len(countries)], names.stem(1) if rng.random() < 0.5 else names.stem(2),
                    rng.randint(900, 1850), rng.randint(12, 900) * 1000)
        cities[city.name] = city
    for base in list(cities.values())[:10]:  # twins: a similar name, another country and river
        twin = City(names.twin(base.name), rng.choice([c for c in countries if c != base.country]), names.stem(2),
                    rng.randint(900, 1850), rng.randint(12, 900) * 1000)
        cities[twin.name] = twin
    capitals = {}
    for country in countries:
        capitals[country] = rng.choice([c.name for c in cities.values() if c.country == country])
    return capitals, cities


def _build_orgs(rng: random.Random, names: Names, cities: dict[str, City]) -> tuple[dict[str, Org], list[str]]:
    base_cities = list(cities)[:24]
    hubs = base_cities[:8]  # the first 10 have twins, so most hubs have a look-alike city with its own firms
    orgs: dict[str, Org] = {}

    def add(name: str, city: str) -> Org:
        org = Org(name, rng.choice(_INDUSTRIES), city, rng.randint(1850, 2015), rng.randint(3, 950))
        orgs[name] = org
        return org

    for hub in hubs:
        for _ in range(rng.randint(6, 8)):
            add(f"{names.stem(2)} {rng.choice(_ORG_WORDS)}", hub)
    for city in list(cities)[8:]:
        for _ in range(rng.randint(1, 2)):
            add(f"{names.stem(2)} {rng.choice(_ORG_WORDS)}", city)
    return orgs, hubs


def _build_people(rng: random.Random, names: Names, world: World) -> None:
    """Hub organisations get 6-8 employees and a twin organisation with 2; the others 0-2."""
    non_hub = [o for o in world.orgs.values() if o.city not in world.hub_cities]
    hub_orgs = [o.name for o in rng.sample(non_hub, 5)]
    twins = set()
    for name in hub_orgs:
        base = world.orgs[name]
        twin = Org(names.twin(name), base.industry, rng.choice(list(world.cities)), rng.randint(1850, 2015), rng.randint(3, 950))
        world.orgs[twin.name] = twin
        twins.add(twin.name)
        _hire(rng, names, world, name, rng.randint(6, 8))
        _hire(rng, names, world, twin.name, 2)
    for org in list(world.orgs.values()):
        if org.name not in hub_orgs and org.name not in twins:
            _hire(rng, names, world, org.name, rng.randint(0, 2))
    world.hub_orgs = hub_orgs
    people = list(world.people.values())
    for org in world.orgs.values():  # founders: people working elsewhere; hub organisations name none
        if org.name not in hub_orgs and rng.random() < 0.6:
            org.founder = rng.choice([p for p in people if p.org != org.name]).name


def _hire(rng: random.Random, names: Names, world: World, org: str, count: int) -> None:
    for _ in range(count):
        person = Person(f"{names.stem(1)} {names.stem(2)}", rng.choice(list(world.cities)), rng.randint(1940, 2000),
                        org, rng.choice(_PROFESSIONS))
        world.people[person.name] = person


def _render(rng: random.Random, world: World) -> None:
    docs: list[Document] = []
    for i, (country, capital) in enumerate(world.countries.items()):
        world.country_ids[country] = f"country-{i:02d}"
        text = rng.choice([f"{country} is a country whose capital is {capital}.",
                           f"The capital of {country} is the city of {capital}."])
        docs.append(Document(f"country-{i:02d}", text, {"kind": "country"}))
    for i, city in enumerate(world.cities.values()):
        city.id = f"city-{i:03d}"
        text = (f"{city.name} is a city in {city.country} on the river {city.river}. "
                f"It was founded in {city.founded} and has {city.residents:,} residents.")
        docs.append(Document(city.id, text, {"kind": "city"}))
    for i, org in enumerate(world.orgs.values()):
        org.id = f"org-{i:03d}"
        by = f" by {org.founder}" if org.founder else ""
        text = (f"{org.name} is {_article(org.industry)} company headquartered in {org.city}. It was founded in {org.founded}"
                f"{by} and has an annual revenue of {org.revenue} million crowns.")
        docs.append(Document(org.id, text, {"kind": "organisation"}))
    for i, person in enumerate(world.people.values()):
        person.id = f"person-{i:03d}"
        first = person.name.split(" ")[0]
        text = (f"{person.name} was born in {person.city} in {person.born}. "
                f"{first} works at {person.org} as {_article(person.profession)}.")
        docs.append(Document(person.id, text, {"kind": "person"}))
    order = list(range(len(docs)))
    rng.shuffle(order)  # the store's insertion order says nothing about kinds
    world.documents = [docs[i] for i in order]


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def generate(seed: int) -> World:
    """The whole world for ``seed``: about 250 documents and a pool of questions per family."""
    from benchmarks.quality.questions import build_questions

    rng = random.Random(seed)
    names = Names(rng)
    capitals, cities = _build_places(rng, names)
    orgs, hubs = _build_orgs(rng, names, cities)
    world = World(seed, capitals, cities, orgs, {}, {}, hubs, [], [])
    _build_people(rng, names, world)
    world.unused_names = [names.stem(2) for _ in range(12)] + [names.twin(c) for c in list(cities)[:6]]
    _render(rng, world)
    world.questions = build_questions(world, rng)
    return world


def select(world: World, count: int, families: list[str] | tuple[str, ...] = FAMILIES, seed: int = 0) -> list[Question]:
    """``count`` questions balanced across ``families`` (the first families get the remainder), each family's
    picks spread over its question kinds. A family with fewer questions than asked gives all it has."""
    rng = random.Random(seed)
    picked: list[Question] = []
    for i, family in enumerate(families):
        want = count // len(families) + (1 if i < count % len(families) else 0)
        picked += _spread(world.questions[family], want, rng)
    return picked


def _spread(pool: list[Question], want: int, rng: random.Random) -> list[Question]:
    by_kind: dict[str, list[Question]] = {}
    for q in pool:
        by_kind.setdefault(q.kind, []).append(q)
    for group in by_kind.values():
        rng.shuffle(group)
    out: list[Question] = []
    while len(out) < want and any(by_kind.values()):
        for group in by_kind.values():
            if group and len(out) < want:
                out.append(group.pop())
    return out
