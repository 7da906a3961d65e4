"""A scripted query's events, built by hand (the writer and the viewer are tested on them before and beside
the engine end to end): a grounding search before turn 1, a turn with two cells (a search, a batch of two
sub-calls, a failing cell), a worker restart, a limit, and an answer whose texts carry hostile HTML."""

from __future__ import annotations

from typing import Any

from deeprecall.events import (
    AnswerEvent,
    CellEnded,
    CellStarted,
    LimitTripped,
    ModelDelta,
    ModelTurn,
    QueryStarted,
    SearchDone,
    SubCallDone,
    WorkerRestarted,
)
from deeprecall.results import QueryResult, Source, Usage

QID = "q-0123abcd"
XSS = "<script>document.body.dataset.pwned='1'</script><img src=x onerror=\"document.body.dataset.pwned='2'\">"
DOCS = {
    "doc0": Source("doc0", "Acme's revenue grew 12% in 2023. " + XSS, {"tenant": "acme", "api_key": "sk-SECRET"}, 0.91),
    "doc1": Source("doc1", "Acme opened a new factory in Lyon in 2022.", {"tenant": "acme"}, 0.55),
    "doc2": Source("doc2", "The Acme widget line uses recycled aluminium.", {"tenant": "acme"}, 0.40),
}
ANSWER = "Revenue grew 12% [doc0] " + XSS


def sample_events(query_id: str = QID, *, answered: bool = True, limit: bool = False) -> list[Any]:
    """One query, in emission order. ``answered=False`` stops before the answer (a process that died);
    ``limit=True`` ends it on max_search_calls after the last turn."""
    e: list[Any] = [
        QueryStarted(query_id=query_id, question="How did Acme's revenue change in 2023?", filters={"tenant": "acme"},
                     root_model="root-model", sub_models=["sub-model"], backend="vllm", environment="local",
                     limits={"max_iterations": 5, "max_search_calls": 50}, data_source="chroma:docs"),
        SearchDone(query_id=query_id, t=0.01, step=0, query="How did Acme's revenue change in 2023?", top_k=5,
                   filters={"tenant": "acme"}, hit_ids=["doc0", "doc1"], scores=[0.91, 0.55], ms=3.2),
        ModelDelta(query_id=query_id, t=0.2, step=1, model="root-model", text="Let me "),
        ModelTurn(query_id=query_id, t=0.5, step=1, model="root-model", text="Let me search.\n```repl\nhits = search_db('revenue')\n```",
                  input_tokens=1200, output_tokens=40, cost_usd=0.0012, seconds=0.45,
                  prompt=[{"role": "system", "content": "You are in a REPL."}, {"role": "user", "content": "Question: revenue?"}]),
        CellStarted(query_id=query_id, t=0.51, step=1, cell=1, code="hits = search_db('revenue')\nprint(hits[0]['id'])"),
        SearchDone(query_id=query_id, t=0.52, step=1, query="revenue 2023", top_k=3, filters={"tenant": "acme"},
                   hit_ids=["doc0", "doc2"], scores=[0.88, 0.40], ms=2.5),
        CellEnded(query_id=query_id, t=0.53, step=1, cell=1, stdout="doc0\n" + XSS, seconds=0.02),
        CellStarted(query_id=query_id, t=0.54, step=1, cell=2, code="answers = llm_query_batched(['a', 'b'])\n1/0"),
        SubCallDone(query_id=query_id, t=0.60, step=1, model="sub-model", prompt_preview="Summarise doc0: " + XSS,
                    response_preview="It grew 12%.", input_tokens=300, output_tokens=12, cost_usd=0.0003, ms=55.0),
        SubCallDone(query_id=query_id, t=0.61, step=1, model="sub-model", prompt_preview="Summarise doc2",
                    response_preview="Aluminium.", input_tokens=200, output_tokens=5, cost_usd=None, ms=61.0,
                    error=None),
        CellEnded(query_id=query_id, t=0.70, step=1, cell=2, stderr="ZeroDivisionError: division by zero", seconds=0.16),
        WorkerRestarted(query_id=query_id, t=0.71, step=1, reason="worker died"),
        ModelTurn(query_id=query_id, t=1.2, step=2, model="root-model", text="FINAL(" + ANSWER + ")",
                  input_tokens=1500, output_tokens=30, cost_usd=0.0015, seconds=0.48, finish_reason="stop",
                  prompt=[{"role": "user", "content": "Turn 2 " + XSS}]),
    ]
    if limit:
        e.append(LimitTripped(query_id=query_id, t=1.21, step=2, reason="max_search_calls", message="search limit reached"))
    if answered:
        e.append(answer_event(query_id, error="max_search_calls" if limit else None))
    return e


def answer_event(query_id: str = QID, *, error: str | None = None) -> AnswerEvent:
    result = QueryResult(question="How did Acme's revenue change in 2023?", answer=ANSWER, sources=[DOCS["doc0"]],
                         usage=Usage(search_calls=2), error=error, seconds=1.25, grounded=True,
                         retrieved=list(DOCS.values()))
    usage = result.to_dict()["usage"]
    return AnswerEvent(query_id=query_id, t=1.25, step=2, answer=ANSWER, grounded=True, usage=usage, seconds=1.25,
                       error=error, error_message="stopped" if error else None,
                       sources=[{"id": s.id, "content": s.content, "metadata": s.metadata, "score": s.score}
                                for s in result.sources], result=result)
