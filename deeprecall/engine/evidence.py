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
    answer adds to the question; [] when they do not (the answer is not backed).

    Greedy set cover: take the document covering most of the still-uncovered words,
    until nothing more is covered. Ties go to the higher search score.
    """
    new = words(answer) - words(question)
    if not new or says_not_found(answer):
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
