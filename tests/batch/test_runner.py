"""run_batch from Python, on an engine the test builds (scripted server, Chroma store)."""

from __future__ import annotations

import json
from pathlib import Path

from deeprecall.batch import run_batch
from deeprecall.testing.scripted_server import by_turn
from tests.engine.test_query import repl

ANSWER = repl('answer["content"] = "answer to " + context["question"]\nanswer["ready"] = True')


def test_run_batch_answers_skips_on_rerun_and_summarises(tmp_path: Path, llm, make_engine) -> None:
    server = llm({"root-model": by_turn(ANSWER)})
    engine = make_engine(server)
    questions, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    questions.write_text("".join(json.dumps({"id": i, "question": f"question {i}?"}) + "\n" for i in range(5)) +
                         '{"id": 9, "question": "q", "filter": {}}\n')
    summary = run_batch(engine, questions, out, concurrency=2, progress=False)
    assert summary.answered == 5 and summary.bad_lines == {"unknown_field": 1} and summary.not_run == 0
    assert summary.tokens > 0 and summary.percentile(50) is not None
    assert sorted(json.loads(raw)["answer"] for raw in out.read_text().splitlines()) == [
        f"answer to question {i}?" for i in range(5)]
    calls = len(server.requests)
    again = run_batch(engine, questions, out, progress=False)
    assert again.skipped == 5 and again.answered == 0 and len(server.requests) == calls
