"""A tiny quality run end to end: generated world, real Chroma, real engine and sandbox, scripted LLM.

The scripts play a model that answers from its prompt: rag's reads the hits it was given and cites some;
DeepRecall's root writes a repl block that calls search_db and submits. Which answers are right is decided
here, so the scores the harness computes can be checked.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from benchmarks.quality.run import Recorder, main, open_store, run
from benchmarks.quality.systems import RAG_SYSTEM, build_spec
from benchmarks.quality.world import ABSENT, FAMILIES, Question, generate, select
from deeprecall import ConfigError, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.testing.scripted_server import ChatRequest

MODEL = "bench-model"
WRONG_FAMILY = "two_hop"  # both systems answer this family's question wrongly


@pytest.fixture(scope="module")
def tiny():
    world = generate(5)
    return world, select(world, len(FAMILIES), FAMILIES, seed=5)


def scripted_answer(q: Question, system: str) -> str:
    """Right answers in varied phrasings, one wrong answer per system, and for absent: DeepRecall abstains,
    rag makes something up."""
    if q.family == WRONG_FAMILY:
        return "Nowhere-in-particular"
    if q.answer_type == "absent":
        return ABSENT if system == "deeprecall" else "Tamsin Orlo"
    if q.answer_type == "list":
        return ", ".join(reversed(q.answer))
    if q.answer_type == "number":
        return f"There are {int(q.answer):,} in total."
    return f"It is {q.answer}."


def _question_in(text: str, questions: list[Question]) -> Question:
    found = [q for q in questions if q.text in text]
    return max(found, key=lambda q: len(q.text))


class Model:
    """One script for both systems, as one model serves both; it logs what it cited."""

    def __init__(self, world, questions):
        self.texts = {d.id: d.text for d in world.documents}
        self.questions = questions
        self.rag_cited: dict[str, list[str]] = {}
        self.rag_given: dict[str, list[str]] = {}
        self.decoy = next(d.id for d in world.documents if d.metadata["kind"] == "country")

    def __call__(self, request: ChatRequest) -> str:
        if request.messages[0]["content"] == RAG_SYSTEM:
            return self.rag(request)
        return self.root(request)

    def rag(self, request: ChatRequest) -> str:
        q = _question_in(request.last_user, self.questions)
        given = re.findall(r"^\[([\w-]+)\]", request.last_user, re.M)
        cited = [i for i in given if i in q.gold_ids] + [i for i in given if i not in q.gold_ids][:1]
        self.rag_cited[q.id], self.rag_given[q.id] = cited, given
        return f"Answer: {scripted_answer(q, 'rag')}\nSources: {', '.join(cited)}"

    def root(self, request: ChatRequest) -> str:
        """Searches each gold document's own text (top hit: that document) and a decoy, cites them all."""
        q = _question_in(request.text, self.questions)
        cite = [*q.gold_ids, self.decoy]
        searches = "\n".join(f"search_db({self.texts[i]!r}, top_k=1)" for i in cite)
        return (f"Let me search.\n```repl\n{searches}\n"
                f"answer['content'] = {scripted_answer(q, 'deeprecall')!r}\n"
                f"answer['sources'] = {cite!r}\nanswer['ready'] = True\n```")


def _config(server) -> DeepRecallConfig:
    return DeepRecallConfig(backend="vllm", backend_kwargs={"model_name": MODEL, "base_url": server.base_url, "max_retries": 0},
                            environment_kwargs={"pool_size": 1})


def test_tiny_run_scores_known_answers(llm, tiny, tmp_path):
    world, questions = tiny
    model = Model(world, questions)
    server = llm({MODEL: model})
    base = _config(server)
    specs = [build_spec("rag", base, {}, None), build_spec("deeprecall:max_iterations=3", base, {}, None)]
    store = open_store(world.documents, HashingEmbedding(), str(tmp_path / "store"))
    progress = io.StringIO()
    recorder = Recorder(tmp_path / "out.json", {"seed": 5})
    records = run(specs, questions, store, recorder, progress=progress)

    assert len(records) == 2 * len(questions) == 12
    for r in records:
        q = next(x for x in questions if x.id == r["question_id"])
        right = q.family != WRONG_FAMILY and not (q.family == "absent" and r["system"] == "rag")
        assert r["em"] == (1.0 if right else 0.0), r
        assert r["error"] is None and r["answer"] == scripted_answer(q, r["system"].split(":")[0])
        if r["system"] == "rag":
            cited = model.rag_cited[q.id]
            # the ids it cited; all it was given when it cited none
            assert sorted(r["sources"]) == sorted(cited or model.rag_given[q.id]) and r["llm_calls"] == 1
            if q.gold_ids and cited:
                hits = len(set(cited) & set(q.gold_ids))
                assert r["citation_precision"] == hits / len(cited)
                assert r["citation_recall"] == hits / len(q.gold_ids)
        else:
            assert sorted(r["sources"]) == sorted([*q.gold_ids, model.decoy]) and r["llm_calls"] == 1
            if q.gold_ids:
                assert r["citation_precision"] == pytest.approx(len(q.gold_ids) / (len(q.gold_ids) + 1))
                assert r["citation_recall"] == 1.0
        if not q.gold_ids:
            assert r["citation_precision"] is None and r["citation_recall"] is None
        assert r["tokens"] > 0

    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["records"] == json.loads(json.dumps(records))
    summary = saved["summary"]
    assert summary["deeprecall:max_iterations=3"]["absent"]["em"] == 1.0 and summary["rag"]["absent"]["em"] == 0.0
    assert summary["rag"][WRONG_FAMILY]["em"] == 0.0
    assert summary["deeprecall:max_iterations=3"]["all"]["em"] == pytest.approx(5 / 6)
    assert "| absent | deeprecall:max_iterations=3 | 1 | 1.00 |" in saved["table"]
    lines = progress.getvalue().splitlines()
    assert len(lines) == 12 and lines[0].startswith("[1/12] rag ") and " fail " in "".join(lines)


def test_json_is_written_after_every_question(tmp_path):
    recorder = Recorder(tmp_path / "r.json", {"seed": 1})
    recorder.add({"system": "rag", "family": "f", "em": 1.0, "f1": 1.0, "citation_precision": None,
                  "citation_recall": None, "llm_calls": 1, "tokens": 5, "seconds": 0.1, "error": None})
    assert len(json.loads((tmp_path / "r.json").read_text())["records"]) == 1


def test_variants_and_unknown_settings():
    base = DeepRecallConfig(backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://127.0.0.1:9/v1"},
                            other_backends=["vllm"], other_backend_kwargs=[{"model_name": "s", "base_url": "http://x/v1"}])
    spec = build_spec("deeprecall:max_iterations=6,environment_kwargs.cell_timeout=30", base, {"top_k": 7}, None)
    assert spec.config.max_iterations == 6 and spec.config.top_k == 7
    assert spec.config.environment_kwargs["cell_timeout"] == 30
    assert spec.config.other_backends == ["vllm"]  # root and sub-model the same
    assert spec.config.other_backend_kwargs == [base.backend_kwargs]
    strong = DeepRecallConfig(backend="openai", backend_kwargs={"model_name": "big"})
    both = build_spec("deeprecall-strong", base, {}, strong)
    assert both.config.backend_kwargs["model_name"] == "big" and both.config.other_backend_kwargs[0]["model_name"] == "m"
    assert build_spec("rag:top_k=8", base, {}, None).top_k == 8
    with pytest.raises(ConfigError, match="prompt_stlye"):
        build_spec("deeprecall:prompt_stlye=rlms", base, {}, None)
    with pytest.raises(ConfigError, match="unknown setting"):
        build_spec("deeprecall", base, {"no_such_option": 1}, None)
    with pytest.raises(ConfigError, match="rag takes only"):
        build_spec("rag:max_iterations=3", base, {}, None)
    with pytest.raises(ConfigError, match="needs a second model"):
        build_spec("deeprecall-strong", base, {}, None)


def test_cli_refuses_an_unknown_engine_setting_before_running(tmp_path, capsys):
    code = main(["--backend", "vllm", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--embedding", "hashing",
                 "--engine", "max_iteratons=6", "--out", str(tmp_path / "o.json")])
    assert code == 2 and "max_iteratons" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
