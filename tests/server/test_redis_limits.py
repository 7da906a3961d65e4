"""Shared counters on a real redis-server: the Counters contract (the same scenario as the in-process
counters), limits shared by two processes, atomic admission, slots of a dead process expiring, Redis down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from deeprecall.errors import ConfigError
from deeprecall.server.limits import Counters, InProcessCounters, KeyLimits, LimitExceeded
from deeprecall.server.redis_limits import CountersUnavailable, RedisCounters, build_counters
from tests.server.redis_service import fresh_prefix, require_redis_url


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def _in_other_process(url: str, prefix: str, body: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (async code with ``counters`` and ``KeyLimits`` in scope) in a separate Python process."""
    code = textwrap.dedent("""
        import asyncio, os, sys
        from deeprecall.server.limits import KeyLimits, LimitExceeded
        from deeprecall.server.redis_limits import RedisCounters
        async def main():
            counters = RedisCounters(sys.argv[1], prefix=sys.argv[2], slot_ttl=float(sys.argv[3]))
        {body}
        asyncio.run(main())
    """).format(body=textwrap.indent(textwrap.dedent(body), "    "))
    return subprocess.run([sys.executable, "-c", code, url, prefix, "1.0"], capture_output=True, text=True,
                          timeout=timeout, cwd=os.getcwd())


@pytest.fixture(params=["in_process", "redis"])
def counters_factory(request: pytest.FixtureRequest) -> Callable[[], Any]:
    if request.param == "in_process":
        return InProcessCounters
    url, prefix = require_redis_url(), fresh_prefix()
    return lambda: RedisCounters(url, prefix=prefix)


def test_each_limit_refuses_with_its_reason_and_a_refusal_counts_nothing(counters_factory: Callable[[], Any]) -> None:
    async def scenario() -> None:
        counters = counters_factory()
        assert isinstance(counters, Counters)
        await counters.acquire("a", KeyLimits(max_concurrent=1))
        with pytest.raises(LimitExceeded) as busy:
            await counters.acquire("a", KeyLimits(max_concurrent=1))
        assert busy.value.reason == "concurrency" and busy.value.retry_after > 0
        await counters.acquire("b", KeyLimits(max_concurrent=1))  # another key has its own slots
        await counters.release("a", 0.02)
        await counters.acquire("a", KeyLimits(max_concurrent=1, daily_cost_usd=0.05))
        await counters.release("a", 0.04)
        with pytest.raises(LimitExceeded) as spent:
            await counters.acquire("a", KeyLimits(daily_cost_usd=0.05))
        assert spent.value.reason == "daily_cost" and 0 < spent.value.retry_after <= 86400
        assert "0.06" in str(spent.value)
        for _ in range(3):
            await counters.acquire("c", KeyLimits(requests_per_minute=3))
            await counters.release("c", 0.0)
        for _ in range(2):  # refusals are not admissions: the window still holds 3, not 5
            with pytest.raises(LimitExceeded) as fast:
                await counters.acquire("c", KeyLimits(requests_per_minute=3))
            assert fast.value.reason == "rate_limit" and 0 < fast.value.retry_after <= 60
        await counters.acquire("c", KeyLimits(requests_per_minute=None))  # unlimited
        await counters.release("c", 0.0)
        await counters.close()

    _run(scenario)


def test_two_processes_share_one_keys_rate_limit_and_cost_cap() -> None:
    url, prefix = require_redis_url(), fresh_prefix()
    other = _in_other_process(url, prefix, """
        for _ in range(4):
            await counters.acquire("team", KeyLimits(requests_per_minute=5))
            await counters.release("team", 0.25)
        print("admitted 4, spent 1.00")
        await counters.close()
    """)
    assert other.returncode == 0, other.stderr
    assert "admitted 4" in other.stdout

    async def here() -> None:
        counters = RedisCounters(url, prefix=prefix)
        assert await counters.spent_today("team") == pytest.approx(1.0)
        await counters.acquire("team", KeyLimits(requests_per_minute=5))  # the 5th of the minute, across processes
        await counters.release("team", 0.0)
        with pytest.raises(LimitExceeded) as rate:
            await counters.acquire("team", KeyLimits(requests_per_minute=5))
        assert rate.value.reason == "rate_limit"
        with pytest.raises(LimitExceeded) as cost:  # the other process spent the day's 1.00
            await counters.acquire("team", KeyLimits(daily_cost_usd=1.0))
        assert cost.value.reason == "daily_cost"
        await counters.acquire("team", KeyLimits(daily_cost_usd=1.5))
        await counters.release("team", 0.0)
        await counters.close()

    _run(here)


def test_admission_is_atomic_across_instances() -> None:
    url, prefix = require_redis_url(), fresh_prefix()

    async def scenario() -> None:
        replicas = [RedisCounters(url, prefix=prefix) for _ in range(3)]
        limits = KeyLimits(max_concurrent=5)

        async def attempt(i: int) -> bool:
            try:
                await replicas[i % 3].acquire("k", limits)
            except LimitExceeded:
                return False
            return True

        admitted = await asyncio.gather(*(attempt(i) for i in range(30)))
        assert sum(admitted) == 5
        for replica in replicas:
            await replica.close()

    _run(scenario)


def test_a_dead_process_gives_its_concurrency_slot_back_within_the_slot_ttl() -> None:
    url, prefix = require_redis_url(), fresh_prefix()
    dead = _in_other_process(url, prefix, """
        await counters.acquire("k", KeyLimits(max_concurrent=1))
        print("holding", flush=True)
        os._exit(0)  # no release, no close: as if killed
    """)
    assert dead.returncode == 0 and "holding" in dead.stdout, dead.stderr

    async def scenario() -> None:
        counters = RedisCounters(url, prefix=prefix, slot_ttl=1.0)
        with pytest.raises(LimitExceeded) as busy:
            await counters.acquire("k", KeyLimits(max_concurrent=1))
        assert busy.value.reason == "concurrency"
        deadline = time.monotonic() + 3.0
        while True:
            try:
                await counters.acquire("k", KeyLimits(max_concurrent=1))
                break
            except LimitExceeded:
                assert time.monotonic() < deadline, "the dead process's slot never expired"
                await asyncio.sleep(0.1)
        await counters.release("k", 0.0)
        await counters.close()

    _run(scenario)


def test_a_live_request_keeps_its_slot_past_the_ttl() -> None:
    url, prefix = require_redis_url(), fresh_prefix()

    async def scenario() -> None:
        running, other = RedisCounters(url, prefix=prefix, slot_ttl=0.6), RedisCounters(url, prefix=prefix)
        await running.acquire("k", KeyLimits(max_concurrent=1))
        await asyncio.sleep(1.5)  # 2.5 TTLs: only the heartbeat keeps the slot
        with pytest.raises(LimitExceeded):
            await other.acquire("k", KeyLimits(max_concurrent=1))
        await running.release("k", 0.0)
        await other.acquire("k", KeyLimits(max_concurrent=1))
        await other.release("k", 0.0)
        await running.close()
        await other.close()

    _run(scenario)


def test_redis_down_refuses_with_a_clear_error_instead_of_admitting() -> None:
    async def scenario() -> None:
        counters = RedisCounters("redis://127.0.0.1:9/0")
        with pytest.raises(CountersUnavailable, match=r"server\.redis_url"):
            await counters.acquire("k", KeyLimits(daily_cost_usd=1.0))
        await counters.close()

    _run(scenario)


def test_build_counters_picks_redis_only_when_a_url_is_configured() -> None:
    assert isinstance(build_counters(None), InProcessCounters)
    shared = build_counters("redis://:hunter2secret@127.0.0.1:9/0")
    assert isinstance(shared, RedisCounters) and "hunter2secret" not in repr(shared)
    with pytest.raises(ConfigError, match=r"server\.redis_url must be a redis://") as bad:
        build_counters("hunter2secret@127.0.0.1:6379")
    assert "hunter2secret" not in str(bad.value)


def test_two_server_replicas_on_one_redis_share_a_keys_rate_limit_and_cost_cap(llm: Any) -> None:
    """Two apps (as two uvicorn workers or replicas would be), each its own engine and counters, one Redis."""
    import httpx

    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT
    from tests.server.harness import ACME_KEY, GLOBEX_KEY, Served, tenant_settings

    url = require_redis_url().rsplit("/", 1)[0] + "/15"  # a database of its own: the app's keys use the default prefix
    import redis

    redis.Redis.from_url(url).flushdb()  # counters of an earlier run (a day's cost) must not refuse this one
    server = llm({ROOT: by_turn("FINAL(Lyon)")})
    priced = {"model_name": ROOT, "base_url": server.base_url, "max_retries": 0,
              "pricing": {"input": 0.001, "output": 0.001}}  # every query costs well over $0.01
    settings = tenant_settings(redis_url=url, acme_limits={"requests_per_minute": 3},
                               globex_limits={"daily_cost_usd": 0.01})
    assert "redis" not in repr(settings)

    def ask(served: Served, key: str) -> httpx.Response:
        return httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "deeprecall", "messages": [{"role": "user", "content": "Where?"}]}, timeout=30)

    with Served(server, settings, backend_kwargs=priced) as one, Served(server, settings, backend_kwargs=priced) as two:
        assert [ask(one, ACME_KEY).status_code, ask(two, ACME_KEY).status_code, ask(one, ACME_KEY).status_code] \
            == [200, 200, 200]
        refused = ask(two, ACME_KEY)  # the 4th of the minute, counted across both replicas
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit"
        assert int(refused.headers["Retry-After"]) >= 1

        assert ask(one, GLOBEX_KEY).status_code == 200  # spends the day's $0.01 on replica one
        deadline = time.monotonic() + 5
        while (capped := ask(two, GLOBEX_KEY)).status_code == 200:  # its release (and bill) is async
            assert time.monotonic() < deadline, "replica two never saw replica one's spending"
        assert capped.status_code == 429 and capped.json()["error"]["code"] == "daily_cost"
