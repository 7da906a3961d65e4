"""Batch runs on Ray: a callable class for Ray Data's ``map_batches``, and the runner behind ``deeprecall batch --ray``.

    import functools, ray
    from deeprecall.integrations.ray import DeepRecallAnswerer
    from deeprecall.vectorstores.qdrant import QdrantStore

    ray.init()                                     # or ray.init(address="ray://head:10001")
    store = functools.partial(QdrantStore, "kb", url="http://qdrant:6333", embedding_fn=...)
    answers = ray.data.read_json("questions.jsonl").map_batches(
        DeepRecallAnswerer, concurrency=4, batch_size=32,
        fn_constructor_kwargs={"store": store, "settings": {"backend": "openai", ...}, "concurrency": 8})

Each actor builds one engine in ``__init__`` (its sandbox pool, its model clients, its store connection) and
answers each batch on ``concurrency`` threads sharing it. ``store`` is a picklable zero-argument callable run in
the actor, so the store must be reachable from every worker: a server store (Qdrant, pgvector, Milvus, a Chroma
server), or a folder every node sees at the same path. ``settings`` (the ``DeepRecall`` keywords) travel
to the actors pickled; provider keys are best set in the workers' own environment (a local instance inherits
the driver's). Ray is imported only here (extra ``ray``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deeprecall.batch.answers import AnswersFile, failure_record
from deeprecall.batch.meter import BatchMeter
from deeprecall.batch.questions import BatchQuestion
from deeprecall.batch.runner import BatchPlan, answer_question, record_done
from deeprecall.engine.engine import DeepRecall
from deeprecall.errors import ConfigError, FilterError, MissingDependencyError
from deeprecall.vectorstores.base import VectorStore

OUTPUT_COLUMNS = ("id", "answer", "error", "seconds", "record")
# An actor mostly waits on model calls (its CPU is the engine's ~12 ms per query), so two share a core.
CPUS_PER_ACTOR = 0.5


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray", "Batch runs on Ray") from None
    return ray


class DeepRecallAnswerer:
    """Answers a batch of questions: columns ``id``, ``question`` and optionally ``filters`` (a dict, its
    JSON text, or empty) in; columns ``id``, ``answer``, ``error``, ``seconds`` and ``record`` (the whole
    answers-file line as JSON text: sources, usage, error_message) out, one row per question, in order."""

    def __init__(self, store: Callable[[], VectorStore], settings: Mapping[str, Any] | None = None,
                 concurrency: int = 4) -> None:
        if not callable(store):
            raise ConfigError("store must be a picklable zero-argument callable that opens the store in the actor, "
                              "e.g. functools.partial(QdrantStore, 'kb', url=...)")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1; got {concurrency}")
        self.engine = DeepRecall(vectorstore=store(), **dict(settings or {}))
        self.engine.warm(concurrency)
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="deeprecall-actor")

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        ids, texts = _column(batch, "id"), _column(batch, "question")
        filters = _column(batch, "filters") if "filters" in batch else [None] * len(ids)
        records = list(self._threads.map(self._answer_row, ids, texts, filters))
        return {"id": ids, "answer": [r["answer"] for r in records], "error": [r["error"] or "" for r in records],
                "seconds": [r["seconds"] for r in records],
                "record": [json.dumps(r, ensure_ascii=False, default=str) for r in records]}

    def _answer_row(self, qid: Any, text: Any, filters: Any) -> dict[str, Any]:
        try:
            parsed = _filters(filters)
        except ValueError as e:  # filters text that is not JSON: this row's record says so, the batch goes on
            return failure_record(qid, FilterError(f"filters is not JSON: {e}"), 0.0)
        return answer_question(self.engine, BatchQuestion(0, qid, str(text), parsed))

    def __del__(self) -> None:  # an actor that ends kills its sandbox workers and closes its clients
        engine = getattr(self, "engine", None)
        if engine is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            engine.close()


def _column(batch: Mapping[str, Any], name: str) -> list[Any]:
    values = batch[name]
    return list(values.tolist() if hasattr(values, "tolist") else values)  # numpy scalars -> Python values


def _filters(value: Any) -> dict[str, Any] | None:
    """A row's filters. A filter the language rejects is left for ``query()`` to refuse: that row's record
    says so and the batch goes on."""
    if value is None or value == "":
        return None
    return _without_nulls(json.loads(value) if isinstance(value, str) else value) or None


def _without_nulls(value: Any) -> Any:
    """Drop the null fields Arrow adds when rows' filter dicts have different keys (``read_json`` makes them one
    struct type); the filter language has no null, so no filter a user wrote loses anything."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def answer_on_ray(plan: BatchPlan, answers: AnswersFile, *, store: Callable[[], VectorStore],
                  settings: Mapping[str, Any], actors: int = 2, concurrency: int = 4, address: str | None = None,
                  progress: bool = True, batch_size: int | None = None) -> None:
    """``plan.todo`` through ``DeepRecallAnswerer`` actors; each record lands in ``answers`` (fsynced) as its
    batch comes back, so a killed driver loses only the batches in flight. Ids travel as their JSON text
    (one Arrow column type whatever mix of ids the file has) and are restored here."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    by_key = {q.key: q for q in plan.todo}
    rows = [{"id": q.key, "question": q.question, "filters": json.dumps(q.filters) if q.filters else ""}
            for q in plan.todo]
    size = batch_size or max(1, min(concurrency * 2, -(-len(rows) // actors)))
    _quiet(ray)
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // size)))
    answered = dataset.map_batches(DeepRecallAnswerer, compute=ray.data.ActorPoolStrategy(size=actors),
                                   batch_size=size, num_cpus=CPUS_PER_ACTOR,
                                   fn_constructor_kwargs={"store": store, "settings": dict(settings),
                                                          "concurrency": concurrency})
    meter = BatchMeter(len(rows), enabled=progress)
    started = time.monotonic()
    try:
        for row in answered.iter_rows():
            record = json.loads(row["record"])
            record["id"] = by_key[record["id"]].id
            record_done(plan, record, answers, meter)
            if plan.stopped:
                break
    finally:
        meter.close()
        plan.summary.wall_seconds = time.monotonic() - started



def _quiet(ray: Any) -> None:
    """The batch draws its own progress on stderr and may print a JSON summary on stdout: Ray Data's bars and
    per-run log lines would interleave with both."""
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
