"""Soak: N concurrent queries for M minutes, sampling what a leak would grow.

    python benchmarks/soak.py [--concurrency 16] [--minutes 30] [--interval 10] [--latency-ms 50]
                              [--environment local|docker] [--isolation auto|namespace|process|none]
                              [--tracemalloc [FRAMES]] [--arena-max N]

The query is overhead.py's (2 turns, 1 sub-call, 2 searches over 200 Chroma documents, a fresh worker per query)
against the scripted LLM server in its own process; each of N threads queries back to back. Every --interval
seconds it samples this host process's RSS, open fds (/proc/self/fd), OS threads, descendant processes (workers,
bwrap, the scripted server and multiprocessing's helpers: psutil if installed, else /proc) and, with the docker
sandbox, the running containers labelled as this process's; and what RSS is made of (heap_probe.py): Python's
allocated blocks (py_kblocks) and glibc's bytes in use and held free (malloc_used_mb, malloc_free_mb). At the end it
prints the series, each one's slope (least squares over the samples after the first 20%, the warm-up, per minute),
the errors by cause, and what malloc_trim(0) gives back. RSS growing with py_kblocks and malloc_used_mb flat and
malloc_free_mb growing is the allocator keeping freed memory, not a leak.
--tracemalloc traces Python allocations from the end of the warm-up (FRAMES deep, default 10; slower) and prints the
top 15 size differences between the first sample after it and the end, and the types gc sees growing (its own
tables are malloc'd: the malloc series grow with it, so read them from a run without it).
--arena-max caps glibc's malloc arenas, as MALLOC_ARENA_MAX does (docs/server.md#memory-over-time).
Target (issue 13, at 30 minutes and 16 concurrent): zero errors and no upward trend in any series after warm-up.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heap_probe
import overhead
from throughput import descendants, one_query

try:
    import psutil
except ImportError:
    psutil = None

SERIES = ["rss_mb", "fds", "threads", "children", "containers", "py_kblocks", "malloc_used_mb", "malloc_free_mb"]


def status_field(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def containers() -> int:
    from deeprecall.sandboxes.docker import LABEL

    try:
        out = subprocess.run(["docker", "ps", "-q", "--filter", f"label={LABEL}=1",
                              "--filter", f"label=deeprecall.pid={os.getpid()}"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return -1
    return len(out.split())


def sample(docker: bool) -> dict[str, float]:
    if psutil is not None:
        me = psutil.Process()
        rss, fds, threads = me.memory_info().rss / 2**20, me.num_fds(), me.num_threads()
        children = len(me.children(recursive=True))
    else:
        rss, fds, threads = status_field("VmRSS") / 1024, len(os.listdir("/proc/self/fd")), status_field("Threads")
        children = len(descendants(os.getpid()))
    used, free = heap_probe.malloc_mb()
    return {"rss_mb": rss, "fds": fds, "threads": threads, "children": children,
            "containers": containers() if docker else 0, "py_kblocks": heap_probe.py_kblocks(),
            "malloc_used_mb": used, "malloc_free_mb": free}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx, my = sum(t for t, _ in points) / n, sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 60 * sum((t - mx) * (v - my) for t, v in points) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the scripted model's latency (default 50)")
    parser.add_argument("--environment", default="local", choices=["local", "docker"])
    parser.add_argument("--isolation", default="auto", choices=["auto", "namespace", "process", "none"],
                        help="the local sandbox's isolation (default: auto, what users get)")
    parser.add_argument("--tracemalloc", type=int, nargs="?", const=10, default=0, metavar="FRAMES",
                        help="trace Python allocations after the warm-up, FRAMES deep (default 10), and print what grew")
    parser.add_argument("--arena-max", type=int, default=0, metavar="N", help="cap glibc's malloc arenas at N")
    args = parser.parse_args()
    if args.arena_max and not heap_probe.set_arena_max(args.arena_max):
        print("--arena-max: mallopt is not available (not glibc?)", file=sys.stderr)
    tracer = heap_probe.TraceDiff(args.tracemalloc) if args.tracemalloc else None
    overhead.ISOLATION = args.isolation
    docker = args.environment == "docker"
    n = args.concurrency
    proc, url = overhead.start_server(args.latency_ms / 1000)
    errors: collections.Counter[str] = collections.Counter()
    done = [0] * n
    lock, stop = threading.Lock(), threading.Event()

    with overhead.build_engine(url, pool=n, environment=args.environment) as engine:
        engine.warm(n)
        mode = getattr(engine.sandbox, "mode", args.environment)

        def loop(t: int) -> None:
            i = t
            while not stop.is_set():
                cause = one_query(engine, i)
                done[t] += 1
                if cause:
                    with lock:
                        errors[cause] += 1
                i += n

        print(f"soak: {n} concurrent, {args.minutes:g} min, {args.latency_ms:g} ms scripted model, "
              f"{args.environment} sandbox ({mode}), sampling every {args.interval:g} s "
              f"({'psutil' if psutil else '/proc'})" + (f", arena max {args.arena_max}" if args.arena_max else "")
              + (f", tracemalloc {args.tracemalloc} frames after the warm-up" if tracer else ""), flush=True)
        samples: list[tuple[float, int, dict[str, float]]] = []
        started = time.monotonic()
        samples.append((0.0, 0, sample(docker)))
        threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(n)]
        for thread in threads:
            thread.start()
        end, warmed = started + args.minutes * 60, started + args.minutes * 12  # the slopes' warm-up: the first 20%
        phase = "off" if tracer is None else "warm-up"  # then "tracing", then "baseline" (the snapshot taken)
        while (now := time.monotonic()) < end:
            time.sleep(min(args.interval, end - now))
            at, queries = time.monotonic() - started, sum(done)
            values = sample(docker)
            samples.append((at, queries, values))
            print(f"  {at:7.0f} s {queries:7d} queries  " + "  ".join(f"{k} {values[k]:.1f}" for k in SERIES), flush=True)
            if tracer is not None and phase == "tracing":
                tracer.baseline()
                phase = "baseline"
            elif tracer is not None and phase == "warm-up" and time.monotonic() >= warmed:
                tracer.start()
                phase = "tracing"
        if tracer is not None:
            tracer.report()  # with queries still in flight, as at the baseline
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        elapsed = time.monotonic() - started
    proc.terminate()
    proc.join()
    rss = sample(False)["rss_mb"]
    heap_probe.malloc_trim()
    print(f"\nmalloc_trim(0) at the end: RSS {rss:.1f} -> {sample(False)['rss_mb']:.1f} MB (what glibc held free)")

    total = sum(done)
    print(f"\n{total} queries in {elapsed:.0f} s ({total / elapsed:.1f} q/s), "
          f"errors: {sum(errors.values())}" + "".join(f"\n  {k}: {v}" for k, v in errors.most_common()))
    print(f"\n{'t (s)':>7} {'queries':>8} " + " ".join(f"{k:>8}" for k in SERIES))
    for at, queries, values in samples:
        print(f"{at:>7.0f} {queries:>8} " + " ".join(f"{values[k]:>{max(8, len(k))}.1f}" for k in SERIES))
    warm = samples[max(1, len(samples) // 5):]
    print(f"\nslope after warm-up (least squares over {len(warm)} samples from t = {warm[0][0]:.0f} s), per minute:"
          if warm else "\ntoo few samples for a slope")
    for k in SERIES:
        points = [(at, values[k]) for at, _, values in warm]
        first, last = (points[0][1], points[-1][1]) if points else (0, 0)
        print(f"  {k:>14}: {slope(points):+8.3f} /min   (first {first:g}, last {last:g}, "
              f"max {max((v for _, v in points), default=0):g})")
    if not docker:
        print("  (containers: not sampled; the local sandbox runs none)")


if __name__ == "__main__":
    main()
