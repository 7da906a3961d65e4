"""What ties an answer to the documents: showing hits to the model, and checking
that an answer rests on something it retrieved.

Small models answer from memory when they can ("The capital of Veloria is
Rome"), and an answer with no document behind it looked like any other. So the
engine checks each answer against the retrieved text, deterministically and
without another LLM call: the words an answer adds to its question (names,
numbers, dates) must appear in the documents that are cited for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from deeprecall.results import Source

HIT_PREVIEW_CHARS = 2_000  # a whole chunk of the default ingestion (1,000): turn 1 must see what one-shot RAG sees
EVIDENCE_CHARS = 12_000
_NAME = re.compile(r"\b[A-Z][A-Za-z]+(?:-[A-Za-z]+)*")
MAX_HOPS = 1  # two links let country names connect everything; a three-hop answer pays one refused turn
COMMON_NAME_DOCS = 3
EVIDENCE_DOCS = 12  # more only distracts a small model; a strong one rarely needs the 13th hit
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_STOP_WORDS = """a an and are as at be been by did do does for from had has have he her his how in into is it its
    of on or she that the their them there these they this to was were what when where which who whom whose why will
    with answer final document documents according based context question not none yes no"""
_STOP = frozenset(_STOP_WORDS.split())
_NOT_FOUND = re.compile(
    r"\b(not (?:in|found|mentioned|stated|present|provided|given|available|contained)|no (?:information|document|"
    r"mention|record|answer)|(?:does|do|did) not (?:say|mention|contain|state|include|specify)|cannot (?:find|be found|"
    r"determine|answer)|can't (?:find|determine)|unknown|could not (?:find|determine)|isn't (?:mentioned|in))\b",
    re.IGNORECASE)


def words(text: str) -> set[str]:
    """Content words, lowercased, plurals folded (containers == container); numbers lose their
    thousands separators (1,250 == 1250). Single letters (the s of "model's") are dropped."""
    found = {w.replace(",", "").rstrip(".") for w in _WORD.findall(text.lower())}
    return {_singular(w) for w in found if w not in _STOP and (len(w) > 1 or w.isdigit())}


def _singular(word: str) -> str:
    if len(word) <= 4 or not word.isalpha():
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def says_not_found(answer: str) -> bool:
    """The answer says the documents do not contain it (the right answer to an absent fact)."""
    return len(answer) < 300 and bool(_NOT_FOUND.search(answer))


def supporting(answer: str, question: str, retrieved: Iterable[Source]) -> list[Source]:
    """The fewest retrieved documents that together contain at least half of what the
    answer adds to the question (or of the answer itself, when it only picks a name the
    question gave); [] when they do not (the answer is not backed).

    Greedy set cover: take the document covering most of the still-uncovered words,
    until nothing more is covered. Ties go to the higher search score.
    """
    if says_not_found(answer):
        return []
    new = (words(answer) - words(question)) or words(answer)  # "A or B?" -> "A": the answer adds no word
    if not new:
        return []
    docs = sorted(retrieved, key=lambda s: -s.score)
    covers = {d.id: new & words(d.content) for d in docs}
    chosen: list[Source] = []
    covered: set[str] = set()
    while True:
        best = max(docs, key=lambda d: len(covers[d.id] - covered), default=None)
        if best is None or not covers[best.id] - covered:
            break
        chosen.append(best)
        covered |= covers[best.id]
    return chosen if len(covered) * 2 >= len(new) else []


def question_names(question: str) -> list[str]:
    """The names a question asks about, as written ("Trizous Holdings" -> ["Trizous", "Holdings"])."""
    return [n for n in dict.fromkeys(_NAME.findall(question)) if words(n)]


def entities(text: str) -> set[str]:
    """Capitalised words (names of people, places, organisations), folded like ``words``."""
    return words(" ".join(_NAME.findall(text)))


def connected(backing: list[Source], question: str, retrieved: Iterable[Source], hops: int = MAX_HOPS) -> bool:
    """Whether the documents backing an answer are tied to the question's names through the
    retrieved documents: one names something the question names, or is linked to such a
    document by a shared name, up to ``hops`` links away. Names found in COMMON_NAME_DOCS
    or more retrieved documents ("Holdings", a country) link nothing.

    A small model answering a two-hop question from the first hits picks a name that is in
    them but belongs to another chain (the river of the wrong city): the name is "in the
    documents", yet nothing retrieved links it to what the question asked about."""
    docs = list(retrieved)
    names = {d.id: entities(d.content) for d in docs}
    counts: dict[str, int] = {}
    for found in names.values():
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    common = {n for n, c in counts.items() if c >= COMMON_NAME_DOCS}
    asked = entities(question)
    asked = (asked - common) or asked
    if not asked:
        return True
    reached = {d.id for d in docs if names[d.id] & asked}
    for _ in range(hops):
        links = set().union(*(names[i] for i in reached)) - asked - common if reached else set()
        reached |= {d.id for d in docs if names[d.id] & links}
    return any(d.id in reached for d in backing)


def render_hits(hits: list[dict[str, object]], chars: int = HIT_PREVIEW_CHARS) -> str:
    """Hits as the model reads them: one numbered block each, content cut at ``chars``."""
    lines = []
    for i, hit in enumerate(hits, 1):
        content = str(hit.get("content", ""))
        if len(content) > chars:
            content = content[:chars] + " ..."
        score = hit.get("score", 0.0)
        lines.append(f"[{i}] id={hit.get('id')} score={float(score) if isinstance(score, (int, float)) else 0.0:.3f}\n{content}")
    return "\n\n".join(lines) if lines else "(no documents matched)"


def evidence_prompt(question: str, sources: list[Source], chars: int = EVIDENCE_CHARS) -> str:
    """One prompt that answers from what the query retrieved (``sources`` best first): the
    floor under a query whose loop ended with no answer. It is one-shot RAG over the
    question's own hits plus what the loop found."""
    picked: list[dict[str, object]] = []
    used = 0
    for source in sources[:EVIDENCE_DOCS]:
        if used + len(source.content) > chars and picked:
            break
        picked.append({"id": source.id, "content": source.content, "score": source.score})
        used += len(source.content)
    return (f"Answer the question from these documents only. Reply with the short answer alone; if the documents "
            f"do not contain it, reply: not in the documents.\n\nDocuments:\n{render_hits(picked, chars)}\n\n"
            f"Question: {question}\nAnswer:")
