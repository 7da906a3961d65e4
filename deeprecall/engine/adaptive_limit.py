"""How many sub-calls one model may have in flight: adaptive (AIMD), shared by the engine's queries.

Why adaptive: a fixed cap is either slow (8 runs a batch of 16 in two waves) or, set high, hammers a
provider that rate-limits. The limit starts at ``START`` (a batch of 16 or 32 goes in one wave), halves
when the provider answers 429 (once per wave: the 429s of requests sent before the last cut do not cut
again), and grows by about one per limit's worth of successes, as TCP's congestion window does. A
user's ``sub_concurrency`` is its ceiling (and start, when lower); without one the ceiling is ``CEILING``.

One ``AdaptiveLimit`` per model per engine (``SubCallLimits``), so two queries batching against the same
provider share what it told either of them.
"""

from __future__ import annotations

import random
import threading
import time

START = 32
CEILING = 64
RETRY_BASE = 0.05  # seconds before a rate-limited call is tried again, doubling, jittered
RETRY_CAP = 2.0


class AdaptiveLimit:
    """A concurrency limit that halves on rate limits and creeps up on successes. Thread-safe."""

    def __init__(self, ceiling: int | None = None, start: int = START) -> None:
        self.ceiling = ceiling or CEILING
        self.limit = float(min(start, self.ceiling))
        self.in_flight = 0
        self.cuts = 0  # how many times the limit was halved (a wave's worth of 429s counts once)
        self._generation = 0
        self._ready = threading.Condition()

    def acquire(self, deadline: float | None = None) -> int | None:
        """Wait for a slot; the generation to hand back to ``release``, or None if ``deadline`` passed."""
        with self._ready:
            while self.in_flight >= int(self.limit):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._ready.wait(left)
            self.in_flight += 1
            return self._generation

    def release(self, generation: int, *, rate_limited: bool = False, grow: bool = True) -> None:
        """Free the slot. A 429 on a request sent since the last cut halves the limit; a success
        (``grow``) adds 1/limit; another failure leaves it as it is."""
        with self._ready:
            self.in_flight -= 1
            if rate_limited:
                self._cut(generation)
            elif grow:
                self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            self._ready.notify_all()

    def cut(self, generation: int) -> None:
        """A request of ``generation``, still in flight, met a 429 (its provider retries it): halve the limit
        now, so no new request starts until the provider has room."""
        with self._ready:
            self._cut(generation)

    def _cut(self, generation: int) -> None:
        if generation == self._generation:
            self.limit = max(1.0, self.limit / 2)
            self._generation += 1
            self.cuts += 1


def retry_wait(attempt: int) -> float:
    """Seconds before the ``attempt``-th retry of a rate-limited call (0-based), with jitter so a wave spreads."""
    return min(RETRY_BASE * 2**attempt, RETRY_CAP) * (0.5 + random.random())


class SubCallLimits:
    """The engine's ``AdaptiveLimit`` per sub-model name, made on first use."""

    def __init__(self, ceiling: int | None = None) -> None:
        self.ceiling = ceiling
        self._limits: dict[str, AdaptiveLimit] = {}
        self._lock = threading.Lock()

    def for_model(self, name: str) -> AdaptiveLimit:
        with self._lock:
            limit = self._limits.get(name)
            if limit is None:
                limit = self._limits[name] = AdaptiveLimit(self.ceiling)
            return limit
