"""llm_query_batched at full speed, within rate limits: the adaptive sub-call limit against fixed ones.

    python benchmarks/sub_batches.py [--prompts 16] [--latency 0.3] [--allowed 4] [--burst 32]

Prints:
1. the time of one ``llm_query_batched`` of 16 prompts at 0.3 s model latency, as the model's code sees it
   (timed inside the sandbox), with the adaptive default and with fixed ``sub_concurrency`` 8 (the old
   default) and 16. Ideal: one wave, 0.3 s plus the engine's and the HTTP stack's time.
2. a provider that answers 429 to every request above ``--allowed`` concurrent: two queries in a row on one
   engine, each one batch of ``--burst`` prompts; for each, the time, the calls answered with an error (target
   0), the 429s the provider sent, and the engine's limit for the model afterwards. Ideal time:
   burst / allowed waves of the latency. Run with the engine's own backoff alone (the provider's retries off)
   and with the provider's default 2 retries.

The scripted server runs in its own process so it does not share the engine's GIL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.testing.scripted_server import ChatRequest, Reply, ScriptedLLMServer, by_turn
from deeprecall.vectorstores.chroma import ChromaStore

BATCH = """```repl
import time
started = time.monotonic()
outs = llm_query_batched([f"item {{i}}" for i in range({n})])
answer["content"] = f"{{time.monotonic() - started:.3f}} {{sum(o.startswith('Error') for o in outs)}}"
answer["ready"] = True
```"""


class Provider:
    """The sub-model: ``latency`` per call; with ``allowed``, a 429 to every request above that many at once."""

    def __init__(self, latency: float, allowed: int | None, refused: Any) -> None:
        self.latency, self.allowed, self.refused = latency, allowed, refused
        self.in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> Reply:
        with self._lock:
            if self.allowed is not None and self.in_flight >= self.allowed:
                with self.refused.get_lock():
                    self.refused.value += 1
                return Reply(status=429, text="rate limited")
            self.in_flight += 1
        time.sleep(self.latency)
        with self._lock:
            self.in_flight -= 1
        return Reply(text="seen " + request.last_user)


def serve(port: int, n: int, latency: float, allowed: int | None, refused: Any, ready: Any) -> None:
    server = ScriptedLLMServer({"root": by_turn(BATCH.format(n=n)), "sub": Provider(latency, allowed, refused)},
                               port=port)
    server.start()
    ready.set()
    time.sleep(3600)


def start_server(n: int, latency: float, allowed: int | None) -> tuple[multiprocessing.Process, str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    ready, refused = ctx.Event(), ctx.Value("i", 0)
    proc = ctx.Process(target=serve, args=(port, n, latency, allowed, refused, ready), daemon=True)
    proc.start()
    ready.wait(30)
    return proc, f"http://127.0.0.1:{port}/v1", refused


def build_engine(base_url: str, *, sub_concurrency: int | None = None, retries: int = 0) -> DeepRecall:
    store = ChromaStore(f"bench-{time.monotonic_ns()}", persist_directory=None, embedding_fn=HashingEmbedding())
    store.add_documents(["The widget line uses recycled aluminium."], [{"n": 0}], ids=["d0"])
    config = DeepRecallConfig(
        backend="vllm", backend_kwargs={"model_name": "root", "base_url": base_url, "max_retries": retries},
        other_backends=["vllm"], other_backend_kwargs=[{"model_name": "sub", "base_url": base_url,
                                                       "max_retries": retries}],
        environment_kwargs={"pool_size": 2}, sub_concurrency=sub_concurrency)
    engine = DeepRecall(vectorstore=store, config=config)
    engine.warm()
    return engine


def batch_once(engine: DeepRecall, question: str) -> tuple[float, int, str | None]:
    """The batch's seconds as the sandbox timed it, the prompts answered with an error, the query's error."""
    result = engine.query(question)
    seconds, errors = result.answer.split() if result.answer.count(" ") == 1 else ("nan", "-1")
    return float(seconds), int(errors), result.error


def full_speed(n: int, latency: float, repeats: int = 5) -> None:
    proc, url, _ = start_server(n, latency, None)
    try:
        print(f"1. llm_query_batched of {n} prompts at {latency:g} s model latency (median of {repeats}):")
        for label, cap in (("adaptive (default)", None), ("sub_concurrency=8 (old default)", 8),
                           ("sub_concurrency=16", 16)):
            with build_engine(url, sub_concurrency=cap) as engine:
                batch_once(engine, "warm up")
                times = [batch_once(engine, f"q{i}")[0] for i in range(repeats)]
            print(f"   {label:34s} {statistics.median(times):.3f} s  (min {min(times):.3f}, max {max(times):.3f})")
    finally:
        proc.kill()


def rate_limited(burst: int, latency: float, allowed: int) -> None:
    ideal = -(-burst // allowed) * latency
    print(f"2. a provider answering 429 above {allowed} concurrent requests; a batch of {burst} at {latency:g} s "
          f"(ideal {ideal:.2f} s):")
    for retries in (0, 2):
        proc, url, refused = start_server(burst, latency, allowed)
        try:
            with build_engine(url, retries=retries) as engine:
                limit = engine._sub_limits.for_model("sub")  # private: the figure this benchmark reports
                for name in ("first query", "second query"):
                    before = refused.value
                    seconds, errors, error = batch_once(engine, name)
                    print(f"   provider retries={retries} {name:13s} {seconds:6.3f} s, {errors} calls failed, "
                          f"query error={error}, {refused.value - before} 429s sent, limit now {limit.limit:.1f} "
                          f"({limit.cuts} cuts so far)")
        finally:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--allowed", type=int, default=4)
    parser.add_argument("--burst", type=int, default=32)
    args = parser.parse_args()
    full_speed(args.prompts, args.latency)
    rate_limited(args.burst, args.latency, args.allowed)


if __name__ == "__main__":
    main()
