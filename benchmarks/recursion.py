"""What a depth-2 query costs against depth 1, on the scripted model.

    python benchmarks/recursion.py [--queries 8] [--latency 0.0 0.3]

The same model script answers at both depths. Turn 1 asks ``rlm_query`` (one prompt) or
``rlm_query_batched`` (four prompts) about the question's topic; turn 2 submits what came back.
- ``max_depth=1``: each rlm_query is one sub-model call (today's behaviour).
- ``max_depth=2``: each rlm_query is a child query: its own worker from the pool, its first search,
  one root turn that searches and submits.

Prints per row: LLM calls (root + sub), searches, workers (queries in the tree), tokens, and the
median wall time per query at each model latency. The scripted server runs in its own process;
the pool is warm (a child takes a started worker, as the parent does).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.results import QueryResult
from deeprecall.testing.scripted_server import ChatRequest, ScriptedLLMServer
from deeprecall.vectorstores.chroma import ChromaStore

MARK = "SUBTASK:"
PARENT_ONE = f"""```repl
note = rlm_query("{MARK} which report is about " + context["question"].split()[-2])
print(note)
```"""
PARENT_FOUR = f"""```repl
topic = context["question"].split()[-2]
notes = rlm_query_batched(["{MARK} part %d of " % i + topic for i in range(4)])
print(notes)
```"""
SUBMIT = """```repl
answer["content"] = "done"
answer["ready"] = True
```"""
CHILD = """```repl
hits = search_db(context["question"], top_k=3)
answer["content"] = hits[0]["id"] if hits else "none"
answer["ready"] = True
```"""


def question_of(request: ChatRequest) -> str:
    return next((str(m["content"]) for m in request.messages if m["role"] == "user"), "")


def root(request: ChatRequest) -> str:
    if MARK in question_of(request):
        return CHILD
    if request.turn >= 1:
        return SUBMIT
    return PARENT_FOUR if "batch" in question_of(request) else PARENT_ONE


def serve(port: int, latency: float, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    ScriptedLLMServer({"root": root, "sub": lambda r: "report 7"}, latency=latency, port=port).start()
    ready.set()
    time.sleep(3600)


def start_server(latency: float) -> tuple[multiprocessing.Process, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(port, latency, ready), daemon=True)
    proc.start()
    ready.wait(30)
    return proc, f"http://127.0.0.1:{port}/v1"


def build_engine(store: ChromaStore, base_url: str, depth: int) -> DeepRecall:
    config = DeepRecallConfig(
        backend="vllm", backend_kwargs={"model_name": "root", "base_url": base_url, "max_retries": 0},
        other_backends=["vllm"], other_backend_kwargs=[{"model_name": "sub", "base_url": base_url, "max_retries": 0}],
        environment_kwargs={"pool_size": 6}, max_depth=depth)
    return DeepRecall(vectorstore=store, config=config)


def tree_size(result: QueryResult) -> int:
    return 1 + sum(tree_size(c) for c in result.children)


def measure(engine: DeepRecall, batch: bool, queries: int) -> tuple[QueryResult, float]:
    times, last = [], None
    engine.warm()
    for i in range(queries):
        engine.warm()  # a started worker for every query of the tree, as a steady pool would have
        started = time.perf_counter()
        last = engine.query(f"What about topic-{i % 40} {'batch' if batch else 'one'} ?")
        times.append(time.perf_counter() - started)
        assert last.error is None and last.answer == "done", (last.error, last.error_message)
    assert last is not None
    return last, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.3])
    args = parser.parse_args()
    store = ChromaStore("bench-recursion", persist_directory=None, embedding_fn=HashingEmbedding())
    store.add_documents([f"Report {i}: the widget line about topic-{i % 40}" for i in range(200)],
                        [{"n": i} for i in range(200)])
    print(f"{'call':<22}{'depth':>6}{'LLM calls (root+sub)':>22}{'searches':>10}{'workers':>9}{'tokens':>8}"
          + "".join(f"{f'median @{lat:g}s':>15}" for lat in args.latency))
    rows: dict[tuple[str, int], list[str]] = {}
    for latency in args.latency:
        proc, url = start_server(latency)
        try:
            for depth in (1, 2):
                with build_engine(store, url, depth) as engine:
                    for batch, name in ((False, "rlm_query x1"), (True, "rlm_query_batched x4")):
                        result, median = measure(engine, batch, args.queries)
                        u = result.usage
                        cells = rows.setdefault((name, depth), [
                            f"{name:<22}{depth:>6}{f'{u.root_calls + u.sub_calls} ({u.root_calls}+{u.sub_calls})':>22}"
                            f"{u.search_calls:>10}{tree_size(result):>9}{u.total_tokens:>8}"])
                        cells.append(f"{median * 1000:>12.0f} ms")
        finally:
            proc.terminate()
    for (name, depth) in sorted(rows, key=lambda k: (k[0], k[1])):
        print("".join(rows[(name, depth)]))


if __name__ == "__main__":
    main()
