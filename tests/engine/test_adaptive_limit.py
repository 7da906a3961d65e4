"""Sub-call batches run at full speed when the provider allows it and back off when it answers 429:
one adaptive limit per model, shared by the engine's queries, capped by sub_concurrency when set."""

from __future__ import annotations

import threading
import time

from deeprecall.engine.adaptive_limit import START, AdaptiveLimit
from deeprecall.testing.scripted_server import ChatRequest, Reply, by_turn
from tests.conftest import ROOT, SUB, max_in_flight
from tests.engine.test_query import repl

BATCH = repl('outs = llm_query_batched([f"item {i}" for i in range({n})])\n'
             'answer["content"] = "|".join(outs)\nanswer["ready"] = True')


def batch(n: int) -> str:
    return BATCH.replace("{n}", str(n))


class RateLimitedSub:
    """A provider that serves at most ``allowed`` requests at once and answers 429 to the rest."""

    def __init__(self, allowed: int, latency: float) -> None:
        self.allowed, self.latency = allowed, latency
        self.in_flight = self.served = self.refused = self.busiest = 0
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> Reply:
        with self._lock:
            if self.in_flight >= self.allowed:
                self.refused += 1
                return Reply(status=429, text="rate limited: too many concurrent requests")
            self.in_flight += 1
            self.busiest = max(self.busiest, self.in_flight)
        time.sleep(self.latency)
        with self._lock:
            self.in_flight -= 1
            self.served += 1
        return Reply(text="seen " + request.last_user)


def test_a_batch_of_16_runs_in_one_wave_by_default(llm, make_engine):
    """At 1 s per call (long enough that a loaded 2-core host starts all 16 in time; benchmarks/sub_batches.py
    measures 0.3 s): one wave of 16, not two waves of the old fixed 8."""
    server = llm({ROOT: by_turn(batch(16)), SUB: lambda r: Reply(text="seen " + r.last_user, delay=1.0)})
    engine = make_engine(server)
    engine.warm()
    result = engine.query("batch please")
    assert result.error is None and result.answer == "|".join(f"seen item {i}" for i in range(16))
    assert max_in_flight(server.calls_for(SUB)) == 16
    batch_seconds = result.steps[0].sub_calls and max(c.seconds for c in result.steps[0].sub_calls)
    assert batch_seconds < 1.7  # one wave, not two (2 s)


def test_sub_concurrency_caps_the_adaptive_limit(llm, make_engine):
    server = llm({ROOT: by_turn(batch(9)), SUB: lambda r: Reply(text="seen " + r.last_user, delay=0.2)})
    result = make_engine(server, sub_concurrency=3).query("batch please")
    assert result.error is None and max_in_flight(server.calls_for(SUB)) == 3


def test_a_provider_answering_429_above_4_concurrent_gets_every_call_answered(llm, make_engine):
    """The limit halves on 429s (32 -> 16 -> 8 -> 4), the refused calls wait for a slot and go again; no call
    fails and the query ends without error. The next query on the engine starts from what the first learned."""
    provider = RateLimitedSub(allowed=4, latency=0.1)
    server = llm({ROOT: by_turn(batch(24)), SUB: provider})
    engine = make_engine(server)
    first = engine.query("batch please")
    assert first.error is None and first.answer == "|".join(f"seen item {i}" for i in range(24))
    assert provider.served == 24 and provider.refused > 0 and provider.busiest <= 4
    refused_by_first = provider.refused
    second = engine.query("batch again")
    assert second.error is None and second.answer == first.answer
    assert provider.refused - refused_by_first < refused_by_first  # shared per model: it does not start over at 32


def test_429s_the_provider_retries_itself_also_cut_the_limit(llm, make_engine):
    """With the OpenAI-shape client's own retries on (2, the default), a 429 is retried inside the provider and
    may never reach the engine; the client reports each one, so the limit still comes down: far fewer 429s than
    the 24 * 3 attempts a limit stuck at 32 could draw, and every call answered."""
    provider = RateLimitedSub(allowed=4, latency=0.1)
    server = llm({ROOT: by_turn(batch(24)), SUB: provider})
    subs = [{"model_name": SUB, "base_url": server.base_url, "max_retries": 2}]
    result = make_engine(server, other_backend_kwargs=subs).query("batch please")
    assert result.error is None and result.answer == "|".join(f"seen item {i}" for i in range(24))
    assert provider.served == 24 and 0 < provider.refused <= 30


def test_the_limit_halves_once_per_wave_and_grows_back_slowly():
    limit = AdaptiveLimit()
    wave = [limit.acquire() for _ in range(8)]
    for generation in wave:  # eight 429s from one wave: one cut, not eight
        assert generation is not None
        limit.release(generation, rate_limited=True)
    assert limit.limit == START / 2 and limit.cuts == 1
    for _ in range(16):
        generation = limit.acquire()
        assert generation is not None
        limit.release(generation)
    assert START / 2 + 0.9 < limit.limit < START / 2 + 1.1  # +1/limit per success: about one per limit's worth


def test_a_full_limit_makes_callers_wait_until_the_deadline():
    limit = AdaptiveLimit(ceiling=1)
    held = limit.acquire()
    assert held is not None and limit.acquire(deadline=time.monotonic() + 0.05) is None
    limit.release(held)
    assert limit.acquire(deadline=time.monotonic() + 0.05) is not None
