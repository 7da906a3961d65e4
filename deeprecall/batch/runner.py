"""Answering a questions file with one engine, ``concurrency`` questions at a time.

The steps are separate so that the command line (and the Ray runner) can check every line and read the
answers file *before* building an engine: a bad line is reported before any model call is made.

    plan = plan_batch("questions.jsonl", answers, on_error="skip")   # bad lines reported, answered ids skipped
    answer_in_threads(engine, plan, answers, concurrency=8)          # records appended as they finish

``run_batch`` does both for Python callers.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from deeprecall.batch.answers import FAILED, AnswersFile, answer_record, failure_record
from deeprecall.batch.meter import BatchMeter
from deeprecall.batch.questions import BatchInputError, BatchQuestion, InputProblem, read_questions
from deeprecall.batch.summary import BatchSummary
from deeprecall.engine.engine import DeepRecall
from deeprecall.errors import ConfigError

OnError = Literal["skip", "stop"]


@dataclass
class BatchPlan:
    """What is left to ask, and what was found before asking anything."""

    todo: list[BatchQuestion]
    problems: list[InputProblem]
    on_error: OnError
    summary: BatchSummary = field(default_factory=BatchSummary)
    stopped: str | None = None  # why the run stopped early under --on-error stop


def plan_batch(questions_path: str | Path, answers: AnswersFile, *, on_error: OnError = "skip",
               stream: TextIO | None = None) -> BatchPlan:
    """Check every line, report the bad ones (with line numbers) on ``stream``, and drop the ids ``answers``
    already holds. Under ``on_error="stop"`` any bad line raises ``BatchInputError`` and nothing runs."""
    if on_error not in ("skip", "stop"):
        raise ConfigError(f"on_error must be 'skip' or 'stop'; got {on_error!r}")
    questions, problems = read_questions(questions_path)
    if problems and on_error == "stop":
        raise BatchInputError(str(questions_path), problems)
    out = stream or sys.stderr
    for problem in problems:
        print(f"deeprecall batch: {questions_path} {problem} (skipped)", file=out)
    if answers.dropped_torn_line is not None:
        print(f"deeprecall batch: {answers.path} line {answers.dropped_torn_line} was cut off by a killed run; "
              "dropped it (its question is asked again unless an earlier line answered it)", file=out)
    done = answers.answered
    plan = BatchPlan(todo=[q for q in questions if q.key not in done], problems=problems, on_error=on_error)
    plan.summary.total = len(questions) + len(problems)
    plan.summary.skipped = len(questions) - len(plan.todo)
    plan.summary.todo = len(plan.todo)
    plan.summary.bad_lines.update(p.cause for p in problems)
    return plan


def answer_question(engine: DeepRecall, question: BatchQuestion) -> dict[str, Any]:
    """One question's record. A query that raises is a record too (error "exception"): one bad question
    must not end a run of thousands."""
    started = time.monotonic()
    try:
        result = engine.query(question.question, filters=question.filters)
    except Exception as e:  # recorded with its type and message (failure_record redacts it)
        return failure_record(question.id, e, time.monotonic() - started)
    return answer_record(question.id, result)


def record_done(plan: BatchPlan, record: dict[str, Any], answers: AnswersFile, meter: BatchMeter) -> None:
    """Write one record durably and count it; under --on-error stop, a failed question stops the run."""
    answers.append(record)
    plan.summary.add(record)
    meter.update(record.get("error"))
    if plan.on_error == "stop" and record.get("error") in FAILED and plan.stopped is None:
        plan.stopped = f"id {record['id']}: {record['error']}: {record.get('error_message')}"


def answer_in_threads(engine: DeepRecall, plan: BatchPlan, answers: AnswersFile, *, concurrency: int = 4,
                      progress: bool = True, stream: TextIO | None = None) -> BatchSummary:
    """Ask ``plan.todo`` on ``concurrency`` threads sharing ``engine``; each record is on disk before the
    next question of its thread starts. Ctrl-C cancels the queries in flight (their ids are asked again
    by the next run)."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1; got {concurrency}")
    meter = BatchMeter(len(plan.todo), enabled=progress, stream=stream)
    pending: Iterator[BatchQuestion] = iter(plan.todo)
    taking, writing = threading.Lock(), threading.Lock()  # two locks: a thread in fsync holds up no one's next question
    started = time.monotonic()

    def work() -> None:
        while plan.stopped is None:
            with taking:
                question = next(pending, None)
            if question is None:
                return
            record = answer_question(engine, question)
            with writing:
                record_done(plan, record, answers, meter)

    if plan.todo:
        engine.warm(min(concurrency, len(plan.todo)))
    threads = [threading.Thread(target=work, name=f"deeprecall-batch-{i}", daemon=True)
               for i in range(min(concurrency, len(plan.todo)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)  # a timed join, so Ctrl-C reaches this thread
    finally:
        plan.stopped = plan.stopped or ("interrupted" if any(t.is_alive() for t in threads) else None)
        meter.close()
        plan.summary.wall_seconds = time.monotonic() - started
    return plan.summary


def run_batch(engine: DeepRecall, questions_path: str | Path, out_path: str | Path, *, concurrency: int = 4,
              on_error: OnError = "skip", progress: bool = True, stream: TextIO | None = None) -> BatchSummary:
    """Answer every question of ``questions_path`` not already answered in ``out_path``; see the module doc."""
    answers = AnswersFile(out_path)
    try:
        plan = plan_batch(questions_path, answers, on_error=on_error, stream=stream)
        return answer_in_threads(engine, plan, answers, concurrency=concurrency, progress=progress, stream=stream)
    finally:
        answers.close()
