"""Regression tests that replay the real model's recorded replies.

``replays/qwen2.5-coder-1.5b.json`` holds what Qwen2.5-Coder-1.5B (the embedded model) actually
wrote, turn by turn, on quality-benchmark questions, recorded before the engine handled each
behaviour. The scripted server plays the replies back in order over the benchmark's own world
(seed 0, all 288 documents, MiniLM embeddings), so these tests need no model and pin how the engine treats real
small-model output: what it runs, what it takes as the answer, what it refuses, when it stops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.quality.run import embedding, open_store
from benchmarks.quality.world import generate
from deeprecall.testing.scripted_server import ChatRequest, Reply
from deeprecall.vectorstores.chroma import ChromaStore
from tests.conftest import ROOT

REPLAYS = json.loads((Path(__file__).parent / "replays" / "qwen2.5-coder-1.5b.json").read_text())
EVIDENCE_PROMPT = "Answer the question from these documents only"


def replay(case_id: str) -> dict[str, Any]:
    return next(r for r in REPLAYS["replays"] if r["id"] == case_id)


@pytest.fixture(scope="module")
def world_store(tmp_path_factory: pytest.TempPathFactory) -> ChromaStore:
    """The store the replies were recorded against: the same world, the same MiniLM embedding,
    so the engine's own searches return what the model saw."""
    embedding_fn, _ = embedding("minilm")
    return open_store(generate(REPLAYS["world_seed"]).documents, embedding_fn, str(tmp_path_factory.mktemp("world")))


def player(case: dict[str, Any], evidence_prompts: list[str]):
    """Root replies in the recorded order; the last one again if the engine asks for more (what
    the model did when stuck); the recorded evidence answer for the engine's evidence prompt."""
    replies = list(case["root_replies"])
    turn = 0

    def script(request: ChatRequest) -> Reply | str:
        nonlocal turn
        if request.messages[-1]["content"].startswith(EVIDENCE_PROMPT):
            evidence_prompts.append(request.messages[-1]["content"])
            return case["evidence_reply"] or "not in the documents"
        turn += 1
        return replies[min(turn, len(replies)) - 1]
    return script


def run(case_id: str, llm, make_engine, world_store, **config: Any):
    case = replay(case_id)
    evidence: list[str] = []
    server = llm({ROOT: player(case, evidence)})
    engine = make_engine(server, vectorstore=world_store, prompt_style="compact", **{"max_iterations": 6, **config})
    return case, engine.query(case["question"]), evidence


def test_a_sentence_inside_final_is_the_answer_and_its_document_is_the_source(llm, make_engine, world_store):
    case, result, _ = run("single_hop-048", llm, make_engine, world_store)
    assert result.error is None and "Vecer" in result.answer and result.usage.root_calls == 1
    assert result.grounded and [s.id for s in result.sources] == case["gold_ids"]


def test_the_same_search_again_is_not_rerun_then_the_query_stalls_and_answers_from_evidence(llm, make_engine, world_store):
    case, result, evidence = run("two_hop-037", llm, make_engine, world_store)
    assert [len(s.searches) for s in result.steps] == [2, 0, 0]  # the question + turn 1; turns 2 and 3 repeated it
    assert "You already ran exactly this code" in result.steps[1].output
    assert result.error == "stalled" and result.answer == case["evidence_reply"]
    assert len(evidence) == 1 and "org-025" in evidence[0]  # the evidence includes what its search found


def test_code_in_a_bare_fence_runs(llm, make_engine, world_store):
    _, result, _ = run("three_hop-044", llm, make_engine, world_store)
    first = result.steps[0]
    assert len(first.searches) == 2 and first.searches[1].query.startswith("Doum Tregris was born in Foucun")
    assert "person-" in first.output  # its hits were printed back to the model
    assert result.error == "stalled"  # it then repeated the same code twice


def test_an_answer_from_memory_is_refused_once_and_an_invented_repl_output_is_not_an_answer(
        llm, make_engine, world_store):
    _, result, evidence = run("aggregation-006", llm, make_engine, world_store, max_iterations=3)
    # the copied "FINAL(not in the documents)" did not end turn 2: the query ran to its limit
    assert result.error == "max_iterations" and len(evidence) == 1
    assert "none of them contains it" in result.steps[0].output  # FINAL(2) was refused: no document says 2
    second = result.steps[1]
    assert "REPL output" not in second.response  # the invented output was cut from the reply
    assert second.searches and second.searches[0].top_k == 20  # its code did run
    assert result.usage.root_calls == 4  # three turns and the evidence answer


def test_not_in_the_documents_is_accepted_and_not_passed_off_as_sourced(llm, make_engine, world_store):
    _, result, _ = run("absent-010", llm, make_engine, world_store)
    assert result.error is None and result.answer == "not in the documents" and result.usage.root_calls == 1
    assert not result.grounded and result.sources == [] and result.retrieved


def test_search_starts_the_loop_and_an_answer_linked_to_nothing_the_question_names_is_refused_once(
        llm, make_engine, world_store):
    _, result, _ = run("absent-010-after-search", llm, make_engine, world_store)
    assert result.steps[0].response.startswith("SEARCH(")
    assert [c.query for c in result.steps[1].searches] == ["Histath river"]
    assert "none of the documents retrieved so far links it to Hiastae" in result.steps[2].output
    # refused once; the model gave an unbacked answer again, so the engine answered from the evidence
    # instead (one-shot RAG over what was retrieved): the real model's reply to that prompt is recorded
    assert "instead of the unbacked 'Histath river flows through Houcelt'" in result.steps[-1].output
    assert result.usage.root_calls == 5 and result.answer == "Histath"
