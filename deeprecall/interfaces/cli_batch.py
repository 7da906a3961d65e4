"""``deeprecall batch``: answer a questions file into an answers file (docs/batch.md).

    deeprecall batch questions.jsonl --out answers.jsonl [--concurrency 8] [--on-error skip|stop]
                                     [--ray | --ray-address ADDRESS] [--actors 2]

Lines in: ``{"id": ..., "question": "...", "filters": {...}}``; lines out: id, answer, sources, usage, error,
error_message, seconds. Every line is checked before the engine is built; a re-run skips the ids already
answered. The logic is in ``deeprecall.batch`` (and ``deeprecall.integrations.ray``); this is flags only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from deeprecall.interfaces import cli

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "batch", help="answer a JSONL file of questions into a JSONL file of answers (resumable)")
    parser.add_argument("questions", help='JSONL, one {"id": ..., "question": "...", "filters": {...}} a line')
    parser.add_argument("--out", required=True, help="answers JSONL; appended to, and read first to skip ids already answered")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="questions answered at once (per Ray actor with --ray; default 4)")
    parser.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                        help="skip (default): report bad lines and failed questions, answer the rest; stop: any bad "
                             "line stops the run before it starts, a failed question stops it there")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    parser.add_argument("--json-summary", action="store_true", help="also print the summary as one JSON object on stdout")
    cli._store_options(parser)
    cli._llm_options(parser)
    parser.add_argument("--environment", default=None, help="sandbox: local (default), docker, modal, e2b, daytona, prime")
    parser.add_argument("--max-iterations", type=int, default=None)
    ray = parser.add_argument_group("Ray (pip install 'deeprecall[ray]')")
    ray.add_argument("--ray", action="store_true", help="answer on a local Ray instance (ray.init())")
    ray.add_argument("--ray-address", help="answer on this Ray cluster (e.g. ray://head:10001 or auto); the store "
                                           "must be reachable from every worker: a server store, or a shared path")
    ray.add_argument("--actors", type=int, default=2, help="Ray actors, each with its own engine (default 2)")
    return parser


def run(args: argparse.Namespace) -> int:
    from deeprecall.batch import AnswersFile, plan_batch
    from deeprecall.errors import ConfigError
    from deeprecall.interfaces import cli

    if args.concurrency < 1 or args.actors < 1:
        raise ConfigError("--concurrency and --actors must be at least 1")
    settings = cli.llm_settings(args)  # no LLM configured: stop before reading anything
    if args.environment:
        settings["environment"] = args.environment
    if args.max_iterations:
        settings["max_iterations"] = args.max_iterations
    answers = AnswersFile(args.out)
    interrupted = False
    try:
        plan = plan_batch(args.questions, answers, on_error=args.on_error)  # every line checked before any model call
        if plan.todo:
            try:
                _answer(args, plan, answers, settings)
            except KeyboardInterrupt:  # the queries in flight are cancelled; what was written stays
                interrupted, plan.stopped = True, "interrupted"
    finally:
        answers.close()
    for line in plan.summary.lines():
        print(line, file=sys.stderr)
    if plan.stopped:
        print(f"deeprecall batch: stopped early ({plan.stopped}); re-run the same command to go on", file=sys.stderr)
    if args.json_summary:
        print(json.dumps(plan.summary.to_dict()))
    return 130 if interrupted else 1 if plan.stopped or plan.summary.failed else 0


def _answer(args: argparse.Namespace, plan: Any, answers: Any, settings: dict[str, Any]) -> None:
    from deeprecall.interfaces import cli

    progress = not args.no_progress
    if args.ray or args.ray_address:
        import functools

        from deeprecall.integrations.ray import answer_on_ray
        from deeprecall.vectorstores.spec import open_store

        store = functools.partial(open_store, store_spec_for_workers(args))  # picklable: each actor opens it
        answer_on_ray(plan, answers, store=store, settings=settings, actors=args.actors, concurrency=args.concurrency,
                      address=args.ray_address, progress=progress)
        return
    from deeprecall.batch import answer_in_threads
    from deeprecall.engine.engine import DeepRecall

    with DeepRecall(vectorstore=cli.open_store(args), **settings) as engine:
        answer_in_threads(engine, plan, answers, concurrency=args.concurrency, progress=progress)



def store_spec_for_workers(args: argparse.Namespace) -> Any:
    """The flags' store spec with a relative folder made absolute. Why: a Ray actor's working directory is
    not the driver's, so ./.deeprecall must be resolved where the command ran (on a cluster the folder must
    be at that path on every node; a server store has no folder)."""
    import dataclasses
    import os

    from deeprecall.interfaces.cli_store import PATH_KEY, store_spec

    spec = store_spec(args)
    key = PATH_KEY.get(spec.kind)
    folder = spec.options.get(key) if key else None
    if key is None or not isinstance(folder, str) or "://" in folder or os.path.isabs(folder):
        return spec
    return dataclasses.replace(spec, options={**spec.options, key: os.path.abspath(folder)})
