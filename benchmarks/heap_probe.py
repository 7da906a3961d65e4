"""What a growing RSS is made of, for soak.py: a leak or an allocator keeping freed memory.

RSS alone cannot tell them apart. Three readings can:
- ``py_kblocks``: blocks Python's own allocator has handed out and not had back (sys.getallocatedblocks());
  Python objects that outlive their query (a leak) make it grow.
- ``malloc_used_mb`` / ``malloc_free_mb``: glibc's bytes in use and bytes it holds free (mallinfo2, summed over
  its arenas). Native code that leaks (Chroma's Rust, SQLite, a C extension) grows the first; fragmentation,
  freed memory glibc cannot give back because live chunks sit around it, grows only the second.
- tracemalloc snapshots (``--tracemalloc``): where the Python allocations that grew were made, and per type the
  objects gc can see, so a leak names its line.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import sys
import tracemalloc
from typing import Any

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return None
    return libc


_LIBC = _glibc()


def malloc_mb() -> tuple[float, float]:
    """glibc's (bytes in use, bytes held free) in MB over all its arenas; (-1, -1) where there is no mallinfo2."""
    if _LIBC is None:
        return -1.0, -1.0
    info = _LIBC.mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def malloc_trim() -> bool:
    """Give glibc's free pages back to the kernel (malloc_trim(0)); what RSS loses is freed memory glibc held."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))


def set_arena_max(count: int) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX does) before threads start allocating."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, count))


def py_kblocks() -> float:
    """Thousands of blocks Python's allocator has out (objects, their dicts, strings...)."""
    return sys.getallocatedblocks() / 1000


def live_types() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


class TraceDiff:
    """tracemalloc from ``start()`` on: a baseline snapshot, then ``report()`` compares the end with it."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self._base: tracemalloc.Snapshot | None = None
        self._types: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        tracemalloc.start(self.frames)

    def baseline(self) -> None:
        """Taken once queries are in flight under tracing, so the end snapshot's in-flight state matches it."""
        gc.collect()
        self._base = tracemalloc.take_snapshot()
        self._types = live_types()

    def report(self, top: int = 15) -> None:
        if self._base is None:
            tracemalloc.stop()
            print("tracemalloc: no baseline was taken (the run ended during warm-up)")
            return
        gc.collect()
        end = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
        key = "traceback" if self.frames > 1 else "lineno"
        diffs = end.filter_traces(skip).compare_to(self._base.filter_traces(skip), key)
        grown = sum(d.size_diff for d in diffs)
        print(f"\ntracemalloc ({self.frames} frames): traced now {traced / 2**20:.2f} MB (peak {peak / 2**20:.2f}); "
              f"since the baseline {grown / 1024:+.1f} KiB net. Top {top} by size difference:")
        for d in diffs[:top]:
            print(f"  {d.size_diff / 1024:+9.1f} KiB {d.count_diff:+7d} blocks  (now {d.size / 1024:.1f} KiB)")
            for line in d.traceback.format(limit=min(self.frames, 6), most_recent_first=True):
                print(f"      {line}")
        types = live_types()
        growers = sorted(((types[k] - self._types[k], k) for k in types), reverse=True)[:top]
        print(f"\nlive objects gc sees: {sum(self._types.values())} at the baseline, {sum(types.values())} now; "
              "top growers:")
        for n, name in growers:
            print(f"  {n:+7d} {name} (now {types[name]})")
