"""What each sandbox adds to a query, and what a ``search_db`` round trip costs inside it.

    python benchmarks/sandbox_overhead.py [--queries 20] [--sandboxes local-process,local-bwrap,docker]

For every sandbox it prints:

1. query overhead = query wall time - time spent in root LLM calls, for a
   two-turn query (one cell with a search, then FINAL):
   - warm: a started worker is waiting in the pool (the pool refills between queries);
   - cold: no pool, the query starts its own worker.
   Target for docker, warm: <= 150 ms.
2. the ``search_db`` round trip measured inside the sandbox (200 calls in a
   cell), next to the store's own search time measured on the host.
   Target: <= 5 ms plus the store's time.

The scripted LLM server runs in its own process (0 ms latency). Cloud
sandboxes (modal, e2b, daytona, prime) cannot be reached from here; their
stand-ins run a local subprocess, so their figures would say nothing and are
not printed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.engine import run as engine_run
from deeprecall.testing.scripted_server import ScriptedLLMServer, by_turn
from deeprecall.vectorstores.chroma import ChromaStore

QUERY_TURN = "```repl\nhits = search_db('Acme revenue growth', top_k=3)\nprint(hits[0]['id'])\n```"
FINAL_TURN = "```repl\nFINAL('done')\n```"
ROUND_TRIPS = 200
SEARCH_LOOP = f"""```repl
import time
t = time.perf_counter()
for _ in range({ROUND_TRIPS}):
    search_db('Acme revenue growth', top_k=3)
print('ROUNDTRIP_MS', (time.perf_counter() - t) * 1000 / {ROUND_TRIPS})
```"""
SANDBOXES: dict[str, tuple[str, dict[str, Any]]] = {
    "local-process": ("local", {"isolation": "process"}),
    "local-bwrap": ("local", {"isolation": "namespace", "namespace_tool": "bwrap"}),
    "local-unshare": ("local", {"isolation": "namespace", "namespace_tool": "unshare"}),
    "docker": ("docker", {}),
}
LLM_SECONDS = 0.0


def _serve(port: int, ready: Any) -> None:
    def root(request: Any) -> str:
        if "roundtrip" in request.text:
            return by_turn(SEARCH_LOOP, FINAL_TURN)(request)  # type: ignore[return-value]
        return by_turn(QUERY_TURN, FINAL_TURN)(request)  # type: ignore[return-value]

    ScriptedLLMServer({"root": root, "*": lambda r: "ok"}, port=port).start()
    ready.set()
    time.sleep(24 * 3600)


def start_server() -> tuple[multiprocessing.Process, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    process.start()
    ready.wait(30)
    return process, f"http://127.0.0.1:{port}/v1"


def _meter_llm() -> None:
    """Add every root LLM call's duration to LLM_SECONDS."""
    original = engine_run.QueryRun.complete_root

    def timed(self: Any, messages: Any) -> Any:
        global LLM_SECONDS
        started = time.perf_counter()
        try:
            return original(self, messages)
        finally:
            LLM_SECONDS += time.perf_counter() - started

    engine_run.QueryRun.complete_root = timed  # type: ignore[method-assign]


def make_store() -> ChromaStore:
    store = ChromaStore("bench-sandbox", persist_directory=None, embedding_fn=HashingEmbedding())
    texts = [f"Document {i}: Acme revenue grew {i % 17}% in {2000 + i % 24}, widget line {i % 7}." for i in range(200)]
    store.add_documents(texts, [{"tenant": "acme", "n": i} for i in range(200)], ids=[f"d{i}" for i in range(200)])
    return store


def engine_for(kind: str, kwargs: dict[str, Any], url: str, store: ChromaStore, pool: int) -> DeepRecall:
    config = DeepRecallConfig.build(backend="vllm", backend_kwargs={"model_name": "root", "base_url": url, "max_retries": 0},
                              environment=kind, environment_kwargs={**kwargs, "pool_size": pool}, max_search_calls=None)
    return DeepRecall(vectorstore=store, config=config)


def overhead(engine: DeepRecall, queries: int, *, warm: bool) -> list[float]:
    global LLM_SECONDS
    figures = []
    for i in range(queries):
        if warm:
            engine.warm()
        LLM_SECONDS = 0.0
        started = time.perf_counter()
        result = engine.query(f"How did Acme's revenue change? ({i})")
        wall = time.perf_counter() - started
        assert result.answer == "done", (result.error, result.error_message)
        figures.append((wall - LLM_SECONDS) * 1000)
    return figures


def roundtrip(engine: DeepRecall, store: ChromaStore) -> tuple[float, float]:
    result = engine.query("roundtrip benchmark")
    output = "\n".join(step.output for step in result.steps)
    inside = float(output.split("ROUNDTRIP_MS", 1)[1].split()[0])
    started = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        store.search("Acme revenue growth", 3, None)
    return inside, (time.perf_counter() - started) * 1000 / ROUND_TRIPS


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(values):7.1f} ms   p90 {p90:7.1f} ms   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--sandboxes", default=",".join(SANDBOXES))
    args = parser.parse_args()
    _meter_llm()
    server, url = start_server()
    store = make_store()
    print(f"query overhead over LLM time (2 turns, 1 search) and search_db round trip; {args.queries} queries each\n")
    for name in args.sandboxes.split(","):
        kind, kwargs = SANDBOXES[name]
        try:
            warm_engine = engine_for(kind, kwargs, url, store, pool=2)
        except Exception as e:
            print(f"{name:14} skipped: {e}\n")
            continue
        queries = max(3, args.queries // 2) if kind == "docker" else args.queries
        overhead(warm_engine, 2, warm=True)  # first-use costs (imports, connections) are not the sandbox's
        warm = overhead(warm_engine, queries, warm=True)
        inside, store_ms = roundtrip(warm_engine, store)
        warm_engine.close()
        cold_engine = engine_for(kind, kwargs, url, store, pool=0)
        cold = overhead(cold_engine, queries, warm=False)
        cold_engine.close()
        print(f"{name:14} warm  {summary(warm)}")
        print(f"{'':14} cold  {summary(cold)}")
        print(f"{'':14} search_db round trip {inside:.2f} ms inside the sandbox; store alone {store_ms:.2f} ms; "
              f"sandbox share {inside - store_ms:.2f} ms\n")
    server.terminate()


if __name__ == "__main__":
    main()
