"""The in-process counters: each limit refuses with its reason and changes nothing; release frees and bills."""

from __future__ import annotations

import asyncio

import pytest

from deeprecall.server.limits import Counters, InProcessCounters, KeyLimits, LimitExceeded


def test_in_process_counters_refuse_each_limit_with_its_reason() -> None:
    async def scenario() -> None:
        counters = InProcessCounters()
        assert isinstance(counters, Counters)
        await counters.acquire("a", KeyLimits(max_concurrent=1))
        with pytest.raises(LimitExceeded) as busy:
            await counters.acquire("a", KeyLimits(max_concurrent=1))
        assert busy.value.reason == "concurrency"
        await counters.acquire("b", KeyLimits(max_concurrent=1))  # another key has its own slots
        await counters.release("a", 0.02)
        await counters.acquire("a", KeyLimits(max_concurrent=1, daily_cost_usd=0.05))
        await counters.release("a", 0.04)
        with pytest.raises(LimitExceeded) as spent:
            await counters.acquire("a", KeyLimits(daily_cost_usd=0.05))
        assert spent.value.reason == "daily_cost" and spent.value.retry_after > 0
        for _ in range(3):
            await counters.acquire("c", KeyLimits(requests_per_minute=3))
            await counters.release("c", 0.0)
        with pytest.raises(LimitExceeded) as fast:
            await counters.acquire("c", KeyLimits(requests_per_minute=3))
        assert fast.value.reason == "rate_limit" and 0 < fast.value.retry_after <= 60

    asyncio.run(scenario())
