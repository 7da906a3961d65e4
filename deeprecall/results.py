"""What ``engine.query()`` returns: the answer, its sources, the trace, the bill."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deeprecall.vectorstores.base import Hit


@dataclass
class Source:
    """A document the model retrieved through ``search_db``."""

    id: str
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0

    @classmethod
    def from_hit(cls, hit: Hit) -> Source:
        return cls(id=hit.id, content=hit.content, metadata=dict(hit.metadata), score=hit.score)


@dataclass
class SearchCall:
    query: str
    top_k: int
    filters: dict[str, Any] | None
    result_ids: list[str]
    seconds: float
    error: str | None = None


@dataclass
class SubCall:
    model: str
    prompt: str
    response: str
    input_tokens: int
    output_tokens: int
    seconds: float
    error: str | None = None


@dataclass
class Step:
    """One root-LLM turn: what it said, the code it ran, what that did."""

    index: int
    response: str = ""
    code: list[str] = field(default_factory=list)
    output: str = ""
    searches: list[SearchCall] = field(default_factory=list)
    sub_calls: list[SubCall] = field(default_factory=list)
    seconds: float = 0.0
    children: list[str] = field(default_factory=list)  # query ids of the child queries its rlm_query calls ran


@dataclass
class ModelUsage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    def add(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd


@dataclass
class Usage:
    """Calls, tokens and cost per model, with root and sub-LLM calls kept apart."""

    root: dict[str, ModelUsage] = field(default_factory=dict)
    sub: dict[str, ModelUsage] = field(default_factory=dict)
    search_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return sum(u.input_tokens + u.output_tokens for u in [*self.root.values(), *self.sub.values()])

    @property
    def total_cost_usd(self) -> float | None:
        costs = [u.cost_usd for u in [*self.root.values(), *self.sub.values()] if u.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def root_calls(self) -> int:
        return sum(u.calls for u in self.root.values())

    @property
    def sub_calls(self) -> int:
        return sum(u.calls for u in self.sub.values())


@dataclass
class QueryResult:
    """``error`` is None, or the name of what ended the query early:
    max_iterations, max_search_calls, max_sub_calls, max_llm_calls, max_tokens, max_seconds, max_cost_usd,
    cell_timeout, sandbox_failed, llm_error, stalled, context_window, or
    cancelled (the caller stopped it); ``error_message`` explains it.
    The answer is then the best partial answer available.

    ``sources`` are the retrieved documents the answer rests on: the ids the model
    cited, else the documents that contain what the answer adds to the question.
    ``grounded`` is False when no retrieved document backs the answer (a model
    answering from memory, or "not in the documents"); ``sources`` is then empty,
    so an unbacked answer never looks sourced. ``retrieved`` is every document
    the query's searches returned, best score kept. ``query_id`` matches the
    ``query_id`` of the query's events (``deeprecall/events.py``).

    ``children`` are the child queries ``rlm_query`` ran (``max_depth > 1``, docs/recursion.md),
    each with its own steps and usage; this query's ``usage`` and ``retrieved`` include theirs.
    A child has ``parent_query_id`` set and ``depth`` 2 or more."""

    question: str
    answer: str
    sources: list[Source] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    error_message: str | None = None
    seconds: float = 0.0
    grounded: bool = False
    retrieved: list[Source] = field(default_factory=list)
    query_id: str = ""  # the id every event of this query carries (a uuid4 hex)
    children: list[QueryResult] = field(default_factory=list)
    parent_query_id: str | None = None
    depth: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"]["total_tokens"] = self.usage.total_tokens
        data["usage"]["total_cost_usd"] = self.usage.total_cost_usd
        data["children"] = [child.to_dict() for child in self.children]
        return data
