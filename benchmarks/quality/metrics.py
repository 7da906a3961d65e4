"""Scoring: exact match, token F1, citations, and per-family summaries.

Normalisation (SQuAD's): lowercase, punctuation and the articles a/an/the removed, whitespace collapsed.
Exact match (EM) is 1 when, by answer type:
- text: the normalised answer equals the gold, or the gold's tokens appear as a run in an answer of at most
  SHORT tokens that names no competing option (so "It is the river Olm." scores, and "Olm or Teshe" does not);
- number: the last number in the answer equals the gold (thousands separators dropped, number words up to
  twenty read), so "There are 7 organisations." and "... in total 4,251" score;
- list: the answer names every gold item and no other name of the same kind (set match over the world's names);
- absent: the answer says the documents do not give it (not found, unknown, not mentioned ...), as
  ABSTAIN matches; any other answer is wrong.
Token F1 is SQuAD's token overlap; for lists it is the F1 of the named sets; for numbers and absent it is EM.
Citation precision and recall compare the system's source ids with the gold ids; questions without gold ids
(absent) have none.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from benchmarks.quality.world import Question

SHORT = 30
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
# Not digits inside words or document ids (org-057), which would pass for the answer's last number.
_NUMBER = re.compile(r"(?<![\w.-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w-])|\b(?:" + "|".join(_WORDS) + r")\b", re.I)
ABSTAIN = re.compile(
    r"not (?:be )?(?:found|mentioned|stated|given|specified|provided|available|listed|known|included|present|contained)"
    r"|not in the (?:documents?|context|provided|retrieved|search)"
    r"|no (?:information|mention|record|data|documents?|details?|answer)"
    r"|\bunknown\b|cannot (?:be )?(?:determined?|found|answer|find)"
    r"|can ?not (?:determine|find|answer)|can't (?:determine|find|answer)"
    r"|(?:do|does|did) not (?:say|mention|specify|contain|state|include|provide|appear)"
    r"|(?:don't|doesn't|didn't) (?:say|mention|specify|contain|state|include|provide|know|appear)"
    r"|unable to (?:find|determine|answer)|couldn't (?:find|determine)|could not (?:find|determine)",
    re.I,
)


def normalize(text: str) -> str:
    text = str(text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def numbers_in(text: str) -> list[float]:
    out = []
    for match in _NUMBER.findall(str(text)):
        word = match.lower()
        out.append(float(_WORDS.index(word)) if word in _WORDS else float(word.replace(",", "")))
    return out


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def names_in(answer: str, names: list[str]) -> set[str]:
    """Which of ``names`` the answer names (as whole tokens, after normalisation)."""
    tokens = normalize(answer).split()
    return {n for n in names if _contains(tokens, normalize(n).split())}


def abstains(answer: str) -> bool:
    return bool(ABSTAIN.search(str(answer)))


def exact_match(answer: str, q: Question) -> float:
    if q.answer_type == "absent":
        return float(abstains(answer))
    if q.answer_type == "list":
        gold = set(q.answer)
        return float(names_in(answer, sorted(gold | set(q.options))) == gold)
    if q.answer_type == "number":
        found = numbers_in(answer)
        return float(bool(found) and found[-1] == float(str(q.answer)))
    return float(_text_match(answer, str(q.answer), q.options))


def _text_match(answer: str, gold: str, options: list[str]) -> bool:
    tokens, want = normalize(answer).split(), normalize(gold).split()
    if tokens == want:
        return True
    rivals = names_in(answer, [o for o in options if normalize(o) != normalize(gold)])
    return len(tokens) <= SHORT and _contains(tokens, want) and not rivals


def token_f1(answer: str, q: Question) -> float:
    if q.answer_type in ("absent", "number"):
        return exact_match(answer, q)
    if q.answer_type == "list":
        gold = set(q.answer)
        named = names_in(answer, sorted(gold | set(q.options)))
        return _f1(len(named & gold), len(named), len(gold))
    got, want = normalize(answer).split(), normalize(str(q.answer)).split()
    common = sum((Counter(got) & Counter(want)).values())
    return _f1(common, len(got), len(want))


def _f1(common: int, predicted: int, gold: int) -> float:
    if common == 0 or predicted == 0 or gold == 0:
        return 0.0
    precision, recall = common / predicted, common / gold
    return 2 * precision * recall / (precision + recall)


def citations(source_ids: list[str], gold_ids: list[str]) -> tuple[float | None, float | None]:
    """(precision, recall) of the cited ids against the gold ids; None where undefined (no gold ids;
    precision also when nothing was cited)."""
    if not gold_ids:
        return None, None
    cited, gold = set(source_ids), set(gold_ids)
    precision = len(cited & gold) / len(cited) if cited else None
    return precision, len(cited & gold) / len(gold)


def score(answer: str, q: Question, source_ids: list[str]) -> dict[str, Any]:
    precision, recall = citations(source_ids, q.gold_ids)
    return {"em": exact_match(answer, q), "f1": round(token_f1(answer, q), 4),
            "citation_precision": precision, "citation_recall": recall}


def _mean(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{system: {family or "all": averages, failure counts}} over per-question records."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for system in dict.fromkeys(r["system"] for r in records):
        mine = [r for r in records if r["system"] == system]
        groups = {f: [r for r in mine if r["family"] == f] for f in dict.fromkeys(r["family"] for r in mine)}
        out[system] = {family: _summary(rows) for family, rows in {**groups, "all": mine}.items()}
    return out


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    failures = Counter(r["error"] for r in rows if r.get("error"))
    return {
        "n": len(rows),
        **{key: _mean([r[key] for r in rows])
           for key in ("em", "f1", "citation_precision", "citation_recall", "llm_calls", "tokens", "seconds")},
        "failures": dict(failures),
    }


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = "| family | system | n | EM | F1 | cite P | cite R | LLM calls | tokens | seconds | failures |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    families = [*dict.fromkeys(f for by_family in summary.values() for f in by_family if f != "all"), "all"]
    for family in families:
        for system, by_family in summary.items():
            s = by_family.get(family)
            if s is not None:
                lines.append(_row(family, system, s))
    return "\n".join(lines)


def _row(family: str, system: str, s: dict[str, Any]) -> str:
    failures = ", ".join(f"{k} {v}" for k, v in sorted(s["failures"].items())) or "-"
    return (f"| {family} | {system} | {s['n']} | {_fmt(s['em'], 2)} | {_fmt(s['f1'], 2)} | "
            f"{_fmt(s['citation_precision'], 2)} | {_fmt(s['citation_recall'], 2)} | {_fmt(s['llm_calls'], 1)} | "
            f"{_fmt(s['tokens'], 0)} | {_fmt(s['seconds'], 1)} | {failures} |")


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
