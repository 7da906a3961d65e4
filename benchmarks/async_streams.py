"""Many astream() consumers on one event loop, against the threaded engine underneath.

    python benchmarks/async_streams.py [--queries 256] [--latency 0.5]

The scripted LLM server (its own process) answers every call after ``--latency``
seconds; each query is overhead.py's: 2 turns, 1 sub-call, 2 searches, so three
sequential model calls (ideal wall: 3 x latency). Prints, for N concurrent queries:

1. N ``astream()`` consumers on one asyncio loop: wall time, all correct, events
   delivered, the time to each stream's first event, and the loop's lag (how late
   a 10 ms ticker on the same loop ran: the loop stays free for other work).
2. N ``aquery()`` calls on the loop (no events asked for: the edge alone).
3. the same N queries as N ``stream()`` consumers, then N ``query()`` calls, on N
   threads: the threaded engine's own figures, what the async edge is measured against.

Workers are started before timing (``engine.warm(N)``): a worker start is the same
for both APIs and is measured in overhead.py and sandbox_overhead.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.overhead import build_engine, cpu_check, start_server
from deeprecall import DeepRecall


class Ticker:
    """Runs on the loop every 10 ms and records how late it woke: the loop's responsiveness."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.peak_threads = threading.active_count()
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            due = time.perf_counter() + 0.01
            await asyncio.sleep(0.01)
            self.lags.append(max(0.0, time.perf_counter() - due))
            self.peak_threads = max(self.peak_threads, threading.active_count())

    def stop(self) -> None:
        self._stop = True


async def one_stream(engine: DeepRecall, i: int, firsts: list[float]) -> tuple[bool, int]:
    started = time.perf_counter()
    events, answer = 0, ""
    async for event in engine.astream(f"What about topic-{i % 40} ?"):
        if not events:
            firsts.append(time.perf_counter() - started)
        events += 1
        if event.type == "answer":
            answer = event.answer
    return answer == f"answer for topic-{i % 40}", events


async def streams(engine: DeepRecall, n: int) -> tuple[float, int, int, list[float], Ticker]:
    ticker = Ticker()
    tick = asyncio.create_task(ticker.run())
    firsts: list[float] = []
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(engine, i, firsts) for i in range(n)))
    elapsed = time.perf_counter() - started
    ticker.stop()
    await tick
    return elapsed, sum(ok for ok, _ in results), sum(e for _, e in results), sorted(firsts), ticker


async def aqueries(engine: DeepRecall, n: int) -> tuple[float, int]:
    started = time.perf_counter()
    results = await asyncio.gather(*(engine.aquery(f"What about topic-{i % 40} ?") for i in range(n)))
    elapsed = time.perf_counter() - started
    return elapsed, sum(r.answer == f"answer for topic-{i % 40}" for i, r in enumerate(results))


def streamed_answer(engine: DeepRecall, i: int) -> str:
    return [e for e in engine.stream(f"What about topic-{i % 40} ?")][-1].answer


def threaded(engine: DeepRecall, n: int, streamed: bool) -> tuple[float, int]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        if streamed:
            answers = list(pool.map(lambda i: streamed_answer(engine, i), range(n)))
        else:
            answers = [r.answer for r in pool.map(lambda i: engine.query(f"What about topic-{i % 40} ?"), range(n))]
    elapsed = time.perf_counter() - started
    return elapsed, sum(a == f"answer for topic-{i % 40}" for i, a in enumerate(answers))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()
    n, latency = args.queries, args.latency
    print(f"CPU speed check: a 3M-iteration Python loop took {cpu_check():.2f} s (a fast desktop core: ~0.1 s)")
    proc, url = start_server(latency)
    with build_engine(url, pool=n) as engine:
        warm_started = time.perf_counter()
        engine.warm(n)
        print(f"{n} workers started in {time.perf_counter() - warm_started:.1f} s (before timing)")
        elapsed, correct, events, firsts, ticker = asyncio.run(streams(engine, n))
        print(f"{n} astream() consumers on one loop at {latency:g} s LLM latency: {elapsed:.2f} s wall, "
              f"{correct}/{n} correct (ideal {3 * latency:.1f} s: three sequential model calls)")
        print(f"  {events} events delivered ({events / elapsed:.0f}/s); first event after median "
              f"{ms(statistics.median(firsts))}, p99 {ms(firsts[int(0.99 * (len(firsts) - 1))])}")
        lags = sorted(ticker.lags)
        print(f"  event-loop lag of a 10 ms ticker: median {ms(statistics.median(lags))}, "
              f"p99 {ms(lags[int(0.99 * (len(lags) - 1))])}, max {ms(lags[-1])}")
        print(f"  peak Python threads: {ticker.peak_threads}")
        engine.warm(n)
        elapsed, correct = asyncio.run(aqueries(engine, n))
        print(f"{n} aquery() calls on one loop: {elapsed:.2f} s wall, {correct}/{n} correct")
        for streamed, what in ((True, "stream() consumers"), (False, "query() calls")):
            engine.warm(n)
            elapsed, correct = threaded(engine, n, streamed)
            print(f"{n} {what} on {n} threads: {elapsed:.2f} s wall, {correct}/{n} correct")
    proc.terminate()


if __name__ == "__main__":
    main()
