"""Batch throughput: the plain batch (threads sharing one engine) against Ray actors (one engine each).

    python benchmarks/batch.py [--questions 500] [--latency 0.3] [--concurrency 16]

Each question is overhead.py's query (2 turns, 1 sub-call, 2 searches over 200 Chroma documents: three
sequential model calls, ideal 3 x latency), against the scripted server in its own process. Runs the same
questions file through:

1. the plain batch, ``--concurrency`` questions at a time (what ``deeprecall batch`` does);
2. the plain batch at twice that, the in-flight count of two actors, in one process;
3. Ray with 1 actor, ``--concurrency`` threads in it;
4. Ray with 2 actors, ``--concurrency`` threads each;

on a local ``ray.init(num_cpus=2)``, and prints each one's wall time and throughput, with the throughput after
its first answer (Ray's wall includes starting the actors: each imports DeepRecall and opens the store). Every
answer is checked. The store is a Chroma folder in a temporary directory, the "path all workers see".
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.overhead import start_server
from deeprecall.batch import AnswersFile, BatchPlan, answer_in_threads, plan_batch
from deeprecall.embeddings import HashingEmbedding
from deeprecall.engine.engine import DeepRecall
from deeprecall.vectorstores.chroma import ChromaStore


def make_store(folder: Path) -> functools.partial[ChromaStore]:
    store = functools.partial(ChromaStore, "bench-batch", persist_directory=str(folder), embedding_fn=HashingEmbedding())
    store().add_documents([f"Document {i}: the widget line report number {i} about topic-{i % 40}" for i in range(200)],
                          [{"n": i} for i in range(200)], ids=[f"d{i}" for i in range(200)])
    return store


def settings(base_url: str) -> dict[str, Any]:
    model = {"base_url": base_url, "max_retries": 0}
    return {"backend": "vllm", "backend_kwargs": {"model_name": "root", **model}, "other_backends": ["vllm"],
            "other_backend_kwargs": [{"model_name": "sub", **model}]}


def fresh_plan(questions: Path, out: Path) -> tuple[BatchPlan, AnswersFile]:
    out.unlink(missing_ok=True)
    answers = AnswersFile(out)
    return plan_batch(questions, answers), answers


def check(out: Path, expected: int) -> None:
    """Every question answered, and answered right."""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == expected, f"{len(records)} of {expected} answered"
    for r in records:
        assert r["error"] is None and r["answer"] == f"answer for topic-{int(r['id']) % 40}", r


def run_plain(store: Any, base_url: str, questions: Path, out: Path, concurrency: int) -> tuple[float, float]:
    plan, answers = fresh_plan(questions, out)
    with DeepRecall(vectorstore=store(), **settings(base_url)) as engine:
        engine.warm(concurrency)
        marks = _answer_clock(answers)
        started = time.perf_counter()
        answer_in_threads(engine, plan, answers, concurrency=concurrency, progress=False)
        wall = time.perf_counter() - started
    answers.close()
    check(out, len(plan.todo))
    return wall, steady_rate(marks)


def run_ray(store: Any, base_url: str, questions: Path, out: Path, actors: int, concurrency: int) -> tuple[float, float]:
    from deeprecall.integrations.ray import answer_on_ray

    plan, answers = fresh_plan(questions, out)
    marks = _answer_clock(answers)
    started = time.perf_counter()
    answer_on_ray(plan, answers, store=store, settings=settings(base_url), actors=actors, concurrency=concurrency,
                  progress=False)
    wall = time.perf_counter() - started
    answers.close()
    check(out, len(plan.todo))
    return wall, steady_rate(marks)


def _answer_clock(answers: AnswersFile) -> list[float]:
    """When each record is written (wraps ``append``), to tell start-up from steady state."""
    marks: list[float] = []
    append = answers.append

    def timed(record: dict[str, Any]) -> None:
        append(record)
        marks.append(time.perf_counter())

    answers.append = timed  # type: ignore[method-assign]
    return marks


def steady_rate(marks: list[float]) -> float:
    """Answers per second after the first ones came back: Ray returns a batch's rows together, so the rows
    written within 50 ms of the first are counted as start-up too."""
    first = [m for m in marks if m - marks[0] < 0.05]
    return (len(marks) - len(first)) / (marks[-1] - marks[0]) if marks[-1] > marks[0] else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    proc, base_url = start_server(args.latency)
    ideal = 3 * args.latency
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            store = make_store(folder / "chroma")
            questions = folder / "questions.jsonl"
            questions.write_text("".join(json.dumps({"id": str(i), "question": f"What about topic-{i % 40} ?"}) + "\n"
                                         for i in range(args.questions)))
            print(f"{args.questions} questions, {args.latency}s model latency (3 sequential calls each: ideal "
                  f"{ideal:.1f}s per question), concurrency {args.concurrency} per engine")
            runs = [("plain batch", lambda: run_plain(store, base_url, questions, folder / "a.jsonl", args.concurrency)),
                    (f"plain batch x{2 * args.concurrency}",
                     lambda: run_plain(store, base_url, questions, folder / "a.jsonl", 2 * args.concurrency))]
            for name, run in runs:
                report(name, args.questions, *run(), ideal_rate=args.concurrency * (2 if "x" in name else 1) / ideal)
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            for actors in (1, 2):
                wall, rate = run_ray(store, base_url, questions, folder / "a.jsonl", actors, args.concurrency)
                report(f"Ray, {actors} actor{'s' if actors > 1 else ''}", args.questions, wall, rate,
                       ideal_rate=actors * args.concurrency / ideal)
            ray.shutdown()
    finally:
        proc.kill()


def report(name: str, questions: int, wall: float, steady: float, *, ideal_rate: float) -> None:
    print(f"{name:<22} {wall:6.1f}s wall  {questions / wall:6.1f} q/s   {steady:6.1f} q/s after the first answers   "
          f"(ideal {ideal_rate:.1f} q/s)", flush=True)


if __name__ == "__main__":
    main()
