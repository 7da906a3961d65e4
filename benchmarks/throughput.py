"""Queries per second under concurrency, against the scripted LLM server in its own process.

    python benchmarks/throughput.py [--seconds 20] [--concurrency 16 64] [--latency-ms 0 50]
                                    [--spawn 20] [--isolation auto|namespace|process|none]
                                    [--worker-start zygote|exec]

The query is overhead.py's (2 turns, 1 sub-call, 2 searches over 200 Chroma documents, local sandbox, a fresh
worker per query); its server, engine and checks are imported from there. Each cell runs that many threads, each
querying back to back for --seconds after a warm-up, and prints:
- queries per second, and queries that ended wrong or with an error (by cause);
- host CPU per query: this process's CPU (time.process_time) over the cell / queries;
- worker CPU per query: the machine's busy CPU over the cell (/proc/stat) minus this process's and the scripted
  server's, / queries: the workers (bwrap, the interpreter, the cells, kernel threads' work for their namespaces)
  if nothing else runs on the machine.
  (getrusage(RUSAGE_CHILDREN) would miss them: a worker killed inside its PID namespace is not reaped by us.)
- worker start: host plus worker CPU of one worker start-up, measured by spawning --spawn workers one at a time
  through the engine's pool, reading each worker tree's CPU from /proc, and killing it;
- remainder: host + worker CPU per query minus one worker start (the engine, Chroma, HTTP; the worker's cells
  and teardown).
Goal (issue 13): >= 80 q/s at 16 concurrent and 50 ms latency on a 2-core machine. The ideal at 50 ms is
concurrency / 0.15 s (three sequential model calls per query), so the model alone allows ~107 q/s at 16.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead

from deeprecall import DeepRecall

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds of one process and of the children it has reaped (/proc/PID/stat utime stime cutime cstime)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICK


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (/proc/stat: all but idle and iowait)."""
    times = overhead.cpu_times()
    return (sum(times) - times[3] - times[4]) / TICK if times else 0.0


def worker_start_cpu(engine: DeepRecall, count: int) -> float:
    """Host plus worker CPU of one worker start-up (and its kill), averaged over ``count`` started one at a time.

    Forked workers (the default): the template's CPU including its reaped children (workers, or keepers that reap the
    workers). Exec workers: each worker's tree from /proc before the kill (bwrap and the worker in its PID
    namespace), since a worker killed inside a PID namespace is not reaped by us and getrusage misses it."""
    pool = engine._pool  # the engine's own pool: the same sandbox settings its queries get
    pool.spawn().kill()  # a forking sandbox starts its template with the first worker: not part of one start-up
    template = getattr(getattr(engine.sandbox, "_zygote", None), "template_pid", None)
    host, worker = time.process_time(), 0.0
    before = proc_cpu(template) if template else 0.0
    for _ in range(count):
        session = pool.spawn()
        pid = session._channel.pid  # type: ignore[attr-defined]
        if not template:
            worker += sum(proc_cpu(p) for p in [pid, *descendants(pid)])
        session.kill()
    if template:  # the template reaps each worker (not root: its keeper, which reaps the worker): all lands in its cutime
        time.sleep(0.3)
        worker = proc_cpu(template) - before
    return (time.process_time() - host + worker) / count


def one_query(engine: DeepRecall, i: int) -> str:
    """One of overhead.py's queries (topic i % 40): "" if it answered right, else why not."""
    topic = i % 40
    try:
        result = engine.query(f"What about topic-{topic} ?")
    except Exception as e:  # counted by cause; the benchmark goes on
        return type(e).__name__
    return result.error or ("" if result.answer == f"answer for topic-{topic}" else "wrong answer")


@dataclass
class Cell:
    wall: float
    queries: int
    failed: int
    errors: collections.Counter[str]
    host: float  # seconds of this process's CPU per query
    workers: float  # seconds of the rest of the machine's CPU per query (the workers, if the machine is otherwise idle)

    @property
    def qps(self) -> float:
        return self.queries / self.wall


def run_cell(engine: DeepRecall, threads: int, seconds: float, server_pid: int) -> Cell:
    done, wrong = [0] * threads, [0] * threads
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def loop(t: int) -> None:
        i = t
        while time.perf_counter() < stop:
            cause = one_query(engine, i)
            done[t] += 1
            if cause:
                wrong[t] += 1
                with lock:
                    errors[cause] += 1
            i += threads

    host, server, busy, started = time.process_time(), proc_cpu(server_pid), machine_busy(), time.perf_counter()
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    queries = sum(done)
    host, server, busy = time.process_time() - host, proc_cpu(server_pid) - server, machine_busy() - busy
    return Cell(wall, queries, sum(wrong), errors, host=host / max(1, queries),
                workers=max(0.0, busy - host - server) / max(1, queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration of each cell (default 20)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--spawn", type=int, default=20, help="workers started to measure one start-up (default 20)")
    parser.add_argument("--isolation", default="auto", choices=["auto", "namespace", "process", "none"],
                        help="the local sandbox's isolation (default: auto, what users get)")
    parser.add_argument("--worker-start", default="zygote", choices=["zygote", "exec"],
                        help="namespace workers forked from the template (default) or exec'd each")
    args = parser.parse_args()
    overhead.ISOLATION = args.isolation
    overhead.WORKER_START = args.worker_start
    print(f"CPU speed check: a 3M-iteration Python loop took {overhead.cpu_check():.2f} s "
          "(a fast desktop core: ~0.1 s; figures scale with it)")
    before = overhead.cpu_times()
    rows = []
    for latency in args.latency_ms:
        proc, url = overhead.start_server(latency / 1000)
        for n in args.concurrency:
            with overhead.build_engine(url, pool=n) as engine:
                engine.warm(n)
                start = worker_start_cpu(engine, args.spawn)
                engine.warm(n)
                run_cell(engine, n, min(3.0, args.seconds), proc.pid)  # warm-up: Chroma, HTTP, the pool's refill
                cell = run_cell(engine, n, args.seconds, proc.pid)
                mode = engine.sandbox.mode
            rows.append((latency, n, cell, start))
            errors = ", ".join(f"{k}: {v}" for k, v in cell.errors.most_common()) or "none"
            print(f"  {n} concurrent at {latency:g} ms: {cell.queries} queries in {cell.wall:.1f} s, "
                  f"failed {cell.failed} ({errors})", flush=True)
        proc.terminate()
        proc.join()
    print(f"\nthroughput, local sandbox ({mode} isolation, worker start {args.worker_start}), {args.seconds:g} s per "
          "cell; CPU in ms per query:")
    header = f"{'latency':>8} {'conc':>5} {'q/s':>7} {'ideal':>7} {'failed':>6} {'host':>7} {'workers':>8} " \
             f"{'host+wk':>8} {'wk start':>9} {'remainder':>10}"
    print(header)
    for latency, n, cell, start in rows:
        total = cell.host + cell.workers
        ideal = f"{n / (3 * latency / 1000):.0f}" if latency else "-"
        print(f"{latency:>6g}ms {n:>5} {cell.qps:>7.1f} {ideal:>7} {cell.failed:>6} "
              f"{cell.host * 1000:>7.1f} {cell.workers * 1000:>8.1f} "
              f"{total * 1000:>8.1f} {start * 1000:>9.1f} {(total - start) * 1000:>10.1f}")
    print("host: this process; workers: the rest of the machine (minus the scripted server); wk start: one worker's "
          "start-up and kill (host + worker), measured apart; remainder: host+wk - wk start.")
    print("Goal (issue 13): >= 80 q/s at 16 concurrent, 50 ms.")
    print(f"CPU stolen by the hypervisor during the run: {overhead.steal_share(before, overhead.cpu_times())}")


if __name__ == "__main__":
    main()
