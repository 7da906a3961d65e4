"""Soak: N concurrent queries for M minutes, sampling what a leak would grow.

    python benchmarks/soak.py [--concurrency 16] [--minutes 30] [--interval 10] [--latency-ms 50]
                              [--environment local|docker] [--isolation auto|namespace|process|none]

The query is overhead.py's (2 turns, 1 sub-call, 2 searches over 200 Chroma documents, a fresh worker per query)
against the scripted LLM server in its own process; each of N threads queries back to back. Every --interval
seconds it samples this host process's RSS, open fds (/proc/self/fd), OS threads, descendant processes (workers,
bwrap, the scripted server and multiprocessing's helpers: psutil if installed, else /proc) and, with the docker
sandbox, the running containers labelled as this process's. At the end it prints the series, each one's slope
(least squares over the samples after the first 20%, the warm-up, per minute) and the errors by cause.
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

import overhead
from throughput import descendants, one_query

try:
    import psutil
except ImportError:
    psutil = None

SERIES = ["rss_mb", "fds", "threads", "children", "containers"]


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
    return {"rss_mb": rss, "fds": fds, "threads": threads, "children": children,
            "containers": containers() if docker else 0}


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
    args = parser.parse_args()
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
              f"({'psutil' if psutil else '/proc'})", flush=True)
        samples: list[tuple[float, int, dict[str, float]]] = []
        started = time.monotonic()
        samples.append((0.0, 0, sample(docker)))
        threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(n)]
        for thread in threads:
            thread.start()
        end = started + args.minutes * 60
        while (now := time.monotonic()) < end:
            time.sleep(min(args.interval, end - now))
            at, queries = time.monotonic() - started, sum(done)
            values = sample(docker)
            samples.append((at, queries, values))
            print(f"  {at:7.0f} s {queries:7d} queries  " + "  ".join(f"{k} {values[k]:g}" for k in SERIES), flush=True)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        elapsed = time.monotonic() - started
    proc.terminate()
    proc.join()

    total = sum(done)
    print(f"\n{total} queries in {elapsed:.0f} s ({total / elapsed:.1f} q/s), "
          f"errors: {sum(errors.values())}" + "".join(f"\n  {k}: {v}" for k, v in errors.most_common()))
    print(f"\n{'t (s)':>7} {'queries':>8} " + " ".join(f"{k:>10}" for k in SERIES))
    for at, queries, values in samples:
        print(f"{at:>7.0f} {queries:>8} " + " ".join(f"{values[k]:>10.1f}" for k in SERIES))
    warm = samples[max(1, len(samples) // 5):]
    print(f"\nslope after warm-up (least squares over {len(warm)} samples from t = {warm[0][0]:.0f} s), per minute:"
          if warm else "\ntoo few samples for a slope")
    for k in SERIES:
        points = [(at, values[k]) for at, _, values in warm]
        first, last = (points[0][1], points[-1][1]) if points else (0, 0)
        print(f"  {k:>10}: {slope(points):+8.3f} /min   (first {first:g}, last {last:g}, "
              f"max {max((v for _, v in points), default=0):g})")
    if not docker:
        print("  (containers: not sampled; the local sandbox runs none)")


if __name__ == "__main__":
    main()
