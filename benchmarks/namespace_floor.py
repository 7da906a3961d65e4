"""The floor under a forked worker's start: what this machine's kernel charges to fork a small Python process,
give it fresh namespaces and end it, with nothing of DeepRecall in the way.

    python benchmarks/namespace_floor.py [--count 300]

Each row forks ``--count`` children one at a time from this (small, stdlib-only) interpreter. A child calls
unshare(2) with the row's namespaces and forks once more (a PID namespace only takes effect for a child: its
PID 1), and both exit. Printed per child: wall time, and the whole machine's busy CPU (/proc/stat, all but idle
and iowait), which includes the kernel threads that tear a network namespace down after the fact; the machine's
idle rate, measured for as long just before, is subtracted.

The zygote's workers (deeprecall/sandboxes/zygote_template.py) pay the last row plus their own setup (mounts,
chroot, uid, the worker loop) and the host's request; ``benchmarks/throughput.py`` prints that whole start. No
change to DeepRecall's code can take a start below the last row without giving up one of its namespaces.
Run as root (or where unprivileged user namespaces are allowed: rows then add a user namespace).

Stdlib only, on purpose: the /proc/stat reading and the CLONE_* values have twins in overhead.py and
zygote_template.py, but importing either pulls in the deeprecall package, and the interpreter being forked
would no longer be the bare one this floor is about.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time

NAMESPACES = {"mount": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "pid": 0x20000000,
              "net": 0x40000000, "cgroup": 0x02000000}
CLONE_NEWUSER = 0x10000000
ROWS = [[], ["mount"], ["uts"], ["ipc"], ["cgroup"], ["net"], ["pid"], list(NAMESPACES)]
TICK = os.sysconf("SC_CLK_TCK")
libc = ctypes.CDLL(None, use_errno=True)


def busy_seconds() -> float:
    with open("/proc/stat") as f:
        times = [int(v) for v in f.readline().split()[1:9]]
    return (sum(times) - times[3] - times[4]) / TICK


def child(flags: int) -> None:
    """In the fork: new namespaces, one more fork (the PID namespace's PID 1), both exit."""
    if flags and libc.unshare(flags) != 0:
        os._exit(3)
    grandchild = os.fork()
    if grandchild == 0:
        os._exit(0)
    os.waitpid(grandchild, 0)
    os._exit(0)


def measure(flags: int, count: int) -> tuple[float, float]:
    """(wall ms, machine CPU ms) per child, the idle machine's own rate subtracted."""
    idle_start = busy_seconds()
    time.sleep(1.0)
    idle_rate = busy_seconds() - idle_start
    started, busy = time.perf_counter(), busy_seconds()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            child(flags)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"unshare failed (status {status}): run as root or allow user namespaces")
    wall = time.perf_counter() - started
    time.sleep(0.5)  # a network namespace is torn down by kernel threads after its last process exits
    cpu = busy_seconds() - busy - idle_rate * (wall + 0.5)
    return wall / count * 1000, max(0.0, cpu) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    user = 0 if os.geteuid() == 0 else CLONE_NEWUSER
    print(f"fork + unshare + fork + exit, {args.count} times per row, one at a time "
          f"({'as root' if not user else 'with a user namespace'}):")
    print(f"  {'namespaces':42s} {'wall ms':>8s} {'machine CPU ms':>15s}")
    for row in ROWS:
        flags = user
        for name in row:
            flags |= NAMESPACES[name]
        wall, cpu = measure(flags, args.count)
        label = "+".join(row) if row else "none (fork and exit only)"
        print(f"  {label:42s} {wall:8.2f} {cpu:15.2f}")
    print("the last row is the zygote's set of namespaces: the floor of one forked worker's start-up")


if __name__ == "__main__":
    main()
