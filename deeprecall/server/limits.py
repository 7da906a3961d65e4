"""Per-key counters the server checks before a query runs: rate, concurrency, daily cost.

The interface is ``Counters`` (a Protocol). The server calls, for every admitted request::

    await counters.acquire(key_id, limits)      # raises LimitExceeded (-> HTTP 429); else holds one slot
    try:
        ... run the query ...
    finally:
        await counters.release(key_id, cost_usd)    # frees the slot, adds the query's cost to today's total

Exactly one ``release`` follows every successful ``acquire`` (also when the query fails or the client
disconnects; ``cost_usd`` is then what it spent so far, 0.0 if nothing). ``acquire`` that raised needs
no ``release``. ``close()`` is called once at shutdown.

Semantics every implementation keeps (in process here; Redis, shared by replicas, beside it):

- ``requests_per_minute``: at most N requests admitted per key in any 60 s window (a sliding window,
  so no burst of 2N across a minute boundary). A refused request does not count.
- ``max_concurrent``: at most N admitted requests of a key not yet released.
- ``daily_cost_usd``: a request is refused once the key's cost for the current UTC day is at or above
  the cap. The cap is checked at admission, so queries already running can pass it by at most their
  own cost (bounded per query by the engine's ``max_cost_usd``).
- ``None`` for any limit means unlimited. A refusal raises ``LimitExceeded`` with ``reason`` one of
  ``"rate_limit"``, ``"concurrency"``, ``"daily_cost"`` and ``retry_after`` in seconds (the
  ``Retry-After`` header), and changes no counter.

Why a Protocol: the server never knows where counters live; one process uses ``InProcessCounters``,
several processes behind one port (uvicorn workers, replicas) share a Redis implementation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from deeprecall.errors import DeepRecallError

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class KeyLimits:
    """One API key's limits, from the config's ``server.keys[*]``; None = unlimited."""

    requests_per_minute: int | None = None
    max_concurrent: int | None = None
    daily_cost_usd: float | None = None


class LimitExceeded(DeepRecallError):
    """A key is over one of its limits; the server answers 429 with ``Retry-After: retry_after``."""

    def __init__(self, reason: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@runtime_checkable
class Counters(Protocol):
    async def acquire(self, key_id: str, limits: KeyLimits) -> None:
        """Admit one request of ``key_id`` or raise ``LimitExceeded``; on success hold one concurrency slot."""
        ...

    async def release(self, key_id: str, cost_usd: float) -> None:
        """Free the slot ``acquire`` took and add ``cost_usd`` to the key's total for today (UTC)."""
        ...

    async def close(self) -> None:
        """Release connections (nothing for the in-process counters)."""
        ...


def utc_day(now: float | None = None) -> str:
    """The UTC date a cost is counted on, e.g. ``2026-12-01``."""
    return datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc).strftime("%Y-%m-%d")


def seconds_to_midnight(now: float | None = None) -> float:
    now = time.time() if now is None else now
    return 86400.0 - now % 86400.0


class InProcessCounters:
    """``Counters`` in this process's memory: right for one server process, wrong for several
    (each would allow the full limits). Methods never await, so one lock keeps them atomic even if
    called from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admitted: dict[str, deque[float]] = {}
        self._running: dict[str, int] = {}
        self._cost: dict[str, tuple[str, float]] = {}

    async def acquire(self, key_id: str, limits: KeyLimits) -> None:
        now_m, now_wall = time.monotonic(), time.time()
        with self._lock:
            admitted = self._admitted.setdefault(key_id, deque())
            while admitted and now_m - admitted[0] >= WINDOW_SECONDS:
                admitted.popleft()
            rpm = limits.requests_per_minute
            if rpm is not None and len(admitted) >= rpm:
                wait = WINDOW_SECONDS - (now_m - admitted[0]) if admitted else WINDOW_SECONDS
                raise LimitExceeded("rate_limit", f"rate limit of {rpm} requests per minute reached for this key",
                                    max(wait, 0.0))
            running = self._running.get(key_id, 0)
            if limits.max_concurrent is not None and running >= limits.max_concurrent:
                raise LimitExceeded("concurrency", f"this key already has {running} requests running "
                                    f"(limit {limits.max_concurrent}); retry when one ends", 1.0)
            spent = self._spent_today(key_id, now_wall)
            if limits.daily_cost_usd is not None and spent >= limits.daily_cost_usd:
                raise LimitExceeded("daily_cost", f"this key's daily cost cap of ${limits.daily_cost_usd:.2f} is "
                                    f"spent (${spent:.4f} today, UTC)", seconds_to_midnight(now_wall))
            admitted.append(now_m)
            self._running[key_id] = running + 1

    async def release(self, key_id: str, cost_usd: float) -> None:
        now = time.time()
        with self._lock:
            self._running[key_id] = max(self._running.get(key_id, 0) - 1, 0)
            if cost_usd:
                self._cost[key_id] = (utc_day(now), self._spent_today(key_id, now) + cost_usd)

    def _spent_today(self, key_id: str, now: float) -> float:
        day, spent = self._cost.get(key_id, ("", 0.0))
        return spent if day == utc_day(now) else 0.0

    async def close(self) -> None:
        return None
