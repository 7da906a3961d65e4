"""Batch runs: a questions file in, an answers file out, resumable (``deeprecall batch``; docs/batch.md).

``run_batch(engine, "questions.jsonl", "answers.jsonl", concurrency=8)`` answers on threads sharing one
engine; ``deeprecall.integrations.ray`` answers the same files on a Ray cluster.
"""

from deeprecall.batch.answers import FAILED, AnswersFile, answer_record
from deeprecall.batch.questions import BatchInputError, BatchQuestion, InputProblem, read_questions
from deeprecall.batch.runner import BatchPlan, answer_in_threads, answer_question, plan_batch, run_batch
from deeprecall.batch.summary import BatchSummary

__all__ = ["FAILED", "AnswersFile", "BatchInputError", "BatchPlan", "BatchQuestion", "BatchSummary", "InputProblem",
           "answer_in_threads", "answer_question", "answer_record", "plan_batch", "read_questions", "run_batch"]
