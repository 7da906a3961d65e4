"""The server (``deeprecall serve``'s app on uvicorn) against the engine it serves.

    python benchmarks/server.py [--requests 48] [--isolation auto|namespace|process|none]

The scripted LLM server and the DeepRecall server each run in their own process (the client here does
not share their GIL); each query is the one of benchmarks/overhead.py: 2 model turns, 1 sub-call,
2 searches over 200 Chroma documents, the local sandbox. Prints:

1. the server's overhead over ``engine.query()`` at 0 ms model latency: the median of N sequential
   requests (auth, body parsing, counters, the query through ``astream()``, JSON out, HTTP both ways,
   the client's own httpx time included) minus the median of N ``engine.query()`` calls in a process
   like the server's. Goal: under 5 ms per request.
2. requests per second and p50/p99 latency at 0 ms and 0.3 s model latency, with 1 and 32 concurrent
   clients (every answer checked). At 0.3 s a query is three sequential model calls: ~0.9 s ideal.
3. time to the first streamed byte (``stream: true``): the role chunk, sent before the query's first
   event; and to the first step (a ``reasoning_content`` chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks import overhead
from benchmarks.overhead import build_engine, cpu_check, cpu_times, start_server, steal_share

KEY = "dr-bench-key-0123456789abcdef0123456789"


def serve(base_url: str, port: int, pool: int, isolation: str) -> None:
    """The DeepRecall server process: one engine, the app, uvicorn."""
    import uvicorn

    from deeprecall.server.app import create_app
    from deeprecall.server.auth import hash_key
    from deeprecall.server.settings import ServerSettings

    overhead.ISOLATION = isolation
    settings = ServerSettings.model_validate({"keys": [{"name": "bench", "key_sha256": hash_key(KEY)}]})
    uvicorn.run(create_app(build_engine(base_url, pool), settings), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def start_deeprecall(base_url: str, pool: int, isolation: str) -> tuple[multiprocessing.Process, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(base_url, port, pool, isolation),
                                                        daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the lifespan warms the pool before the first request is served
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the DeepRecall server did not start")


def body(i: int, stream: bool = False) -> dict[str, Any]:
    return {"model": "deeprecall", "stream": stream, "messages": [{"role": "user", "content": f"What about topic-{i % 40} ?"}]}


def check(reply: httpx.Response, i: int) -> None:
    assert reply.status_code == 200, reply.text
    answer = reply.json()["choices"][0]["message"]["content"]
    assert answer == f"answer for topic-{i % 40}", answer


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def direct(base_url: str, pool: int, isolation: str, conn: Any) -> None:
    """A process like the server's, answering ``engine.query()`` on command: the overhead's baseline."""
    overhead.ISOLATION = isolation
    with build_engine(base_url, pool) as engine:
        engine.warm()
        engine.query("warm-up topic-1")
        conn.send("ready")
        while (i := conn.recv()) is not None:
            started = time.perf_counter()
            answer = engine.query(f"What about topic-{i % 40} ?").answer
            conn.send((time.perf_counter() - started, answer))


def overhead_medians(base_url: str, url: str, queries: int, isolation: str) -> tuple[float, float]:
    """Alternating (so a noisy neighbour hits both alike): one ``engine.query()`` in the direct process,
    one request to the server, ``queries`` times each. Their medians."""
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=direct, args=(base_url, queries + 2, isolation, there), daemon=True)
    proc.start()
    assert here.recv() == "ready"
    plain, served = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        check(client.post("/v1/chat/completions", json=body(1)), 1)
        for i in range(queries):
            time.sleep(0.03)  # the pools' refill of the last worker is done: each query starts on a quiet host
            here.send(i)
            seconds, answer = here.recv()
            assert answer == f"answer for topic-{i % 40}", answer
            plain.append(seconds)
            time.sleep(0.03)
            started = time.perf_counter()
            check(client.post("/v1/chat/completions", json=body(i)), i)
            served.append(time.perf_counter() - started)
    here.send(None)
    proc.join(30)
    return statistics.median(plain), statistics.median(served)


async def load(url: str, clients: int, requests: int) -> tuple[float, list[float]]:
    """``requests`` requests from ``clients`` concurrent clients: (wall seconds, each request's latency)."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                                 limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                reply = await client.post("/v1/chat/completions", json=body(i))
                latencies.append(time.perf_counter() - started)
                check(reply, i)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, latencies


def first_bytes(url: str, queries: int) -> tuple[list[float], list[float]]:
    """Seconds to the first byte of a streamed reply and to its first step chunk."""
    firsts, steps = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        for i in range(queries):
            time.sleep(0.03)
            started = time.perf_counter()
            first = step = 0.0
            with client.stream("POST", "/v1/chat/completions", json=body(i, stream=True)) as reply:
                for chunk in reply.iter_raw():
                    now = time.perf_counter() - started
                    first = first or now
                    if not step and b"reasoning_content" in chunk:
                        step = now
            firsts.append(first)
            steps.append(step)
    return firsts, steps


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48, help="requests per measurement (default 48)")
    parser.add_argument("--isolation", default="auto", choices=["auto", "namespace", "process", "none"])
    args = parser.parse_args()
    overhead.ISOLATION = args.isolation
    n = args.requests
    print(f"CPU speed check: a 3M-iteration Python loop took {cpu_check():.2f} s (a fast desktop core: ~0.1 s)")
    before = cpu_times()

    llm, llm_url = start_server(0.0)
    server, url = start_deeprecall(llm_url, pool=40, isolation=args.isolation)
    plain, served = overhead_medians(llm_url, url, n, args.isolation)
    print(f"server overhead over engine.query() at 0 ms model latency ({n} each, alternating, warm pools):")
    print(f"  engine.query() median {ms(plain)}; POST /v1/chat/completions median {ms(served)} (client included); "
          f"overhead {ms(served - plain)} per request   (goal: < 5 ms)")
    figures(url, "0 ms", n)
    firsts, steps = first_bytes(url, min(n, 20))
    print(f"streamed (stream: true) at 0 ms: first byte median {ms(statistics.median(firsts))} "
          f"(max {ms(max(firsts))}); first step chunk median {ms(statistics.median(steps))}")
    server.terminate()
    llm.terminate()

    llm, llm_url = start_server(0.3)
    server, url = start_deeprecall(llm_url, pool=40, isolation=args.isolation)
    figures(url, "0.3 s", n, sequential=max(4, n // 8))
    firsts, steps = first_bytes(url, 5)
    print(f"streamed (stream: true) at 0.3 s: first byte median {ms(statistics.median(firsts))}; "
          f"first step chunk median {ms(statistics.median(steps))}")
    server.terminate()
    llm.terminate()
    print(f"CPU stolen by the hypervisor during the run: {steal_share(before, cpu_times())}")


def figures(url: str, latency: str, n: int, sequential: int | None = None) -> None:
    for clients, requests in ((1, sequential or n), (32, max(n, 64))):
        time.sleep(1.0)  # the pool refills after the last burst
        wall, latencies = asyncio.run(load(url, clients, requests))
        print(f"{latency} model latency, {clients:>2} client{'s' if clients > 1 else ' '}: {requests / wall:6.1f} req/s, "
              f"p50 {ms(percentile(latencies, 0.5))}, p99 {ms(percentile(latencies, 0.99))} ({requests} requests)")


if __name__ == "__main__":
    main()
