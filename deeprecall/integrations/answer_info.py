"""What the framework adapters (``langchain.py``, ``llama_index.py``) attach to a query's documents.

Why one module: a LangChain ``Document``, a LlamaIndex node and a LlamaIndex ``Response`` all carry
the same facts about the query that produced them (the answer, whether it is grounded, the error that
ended it early, the usage), under the same key, ``"deeprecall"``. Written once here, they cannot drift
apart between frameworks. No framework is imported here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from deeprecall.errors import QueryEndedEarly
from deeprecall.results import QueryResult, Source
from deeprecall.vectorstores import filters as filter_language

INFO_KEY = "deeprecall"  # the metadata key every adapter puts the query's answer, usage and error under
SNIPPET_CHARS = 300  # how much of each source a tool's text reply quotes


def check_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """The adapter's request filters, checked when it is built (a ``FilterError`` names the bad part)
    rather than at its first query. The engine ANDs them with its own, so they only narrow."""
    filter_language.validate(filters)
    return None if filters is None else dict(filters)


def answer_info(result: QueryResult) -> dict[str, Any]:
    """The query's answer, grounding, error and usage (with totals), JSON-ready."""
    usage = asdict(result.usage)
    usage["total_tokens"] = result.usage.total_tokens
    usage["total_cost_usd"] = result.usage.total_cost_usd
    return {"answer": result.answer, "grounded": result.grounded, "error": result.error,
            "error_message": result.error_message, "usage": usage, "query_id": result.query_id,
            "seconds": result.seconds}


def source_metadata(source: Source, info: dict[str, Any] | None) -> dict[str, Any]:
    """A source's own metadata plus its ``id`` and ``score`` (these two win over same-named fields of
    the store's), and the query's ``answer_info`` under ``INFO_KEY`` when given."""
    metadata = {**source.metadata, "id": source.id, "score": source.score}
    if info is not None:
        metadata[INFO_KEY] = dict(info)
    return metadata


def raise_if_ended_early(result: QueryResult, raise_on_error: bool) -> None:
    if raise_on_error and result.error is not None:
        raise QueryEndedEarly(result)


def answer_text(result: QueryResult) -> str:
    """The answer as an agent reads it from a tool: the answer, the sources it rests on (id and the
    start of each), and a note when the query ended early, so a partial answer never passes as whole."""
    lines = [result.answer]
    if result.sources:
        lines += ["", "Sources:"]
        lines += [f"[{s.id}] {_snippet(s.content)}" for s in result.sources]
    elif not result.grounded:
        lines += ["", "(No retrieved document backs this answer.)"]
    if result.error is not None:
        lines += ["", f"(The search stopped early: {result.error}. {result.error_message or ''} "
                      "The answer above may be partial.)"]
    return "\n".join(lines)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS] + "..."
