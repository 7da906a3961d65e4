"""Pools on LiteLLM's Router: failover, cooldown, Retry-After, timeouts, strategies, pricing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from deeprecall.errors import ConfigError, ProviderError
from deeprecall.providers import build_chat_model
from deeprecall.testing.scripted_server import Reply
from tests.providers.conftest import MSGS, sequence


def member(server, model="gpt-4o-mini", **extra):
    return {"backend": "vllm", "model_name": model, "base_url": server.base_url, **extra}


def test_fails_over_to_the_next_member_and_cools_the_failing_one_down(llm):
    bad = llm(lambda r: Reply(status=500, text="boom"))
    good = llm(lambda r: "from good")
    pool = build_chat_model("pool", {"members": [member(bad, weight=100), member(good, weight=1)],
                                     "cooldown_seconds": 60, "timeout": 5})
    answers = [pool.complete(MSGS).text for _ in range(6)]
    assert answers == ["from good"] * 6
    assert len(bad.requests) == 1, "after one failure the member is cooling down and not called again"
    assert len(good.requests) == 6
    pool.close()


def test_a_hanging_member_times_out_and_the_pool_fails_over(llm):
    hang = llm(lambda r: Reply(hang=True))
    good = llm(lambda r: "answered")
    pool = build_chat_model("pool", {"strategy": "ordered", "members": [member(hang), member(good)]})
    start = time.monotonic()
    assert pool.complete(MSGS, timeout=1.0).text == "answered"
    assert time.monotonic() - start < 6
    assert len(hang.requests) == 1
    pool.close()


def test_retry_after_is_honoured_when_no_other_member_is_healthy(llm):
    server = llm(sequence(Reply(status=429, text="slow down", headers={"Retry-After": "1"}), "finally"))
    pool = build_chat_model("pool", {"members": [member(server)], "retries": 2})
    start = time.monotonic()
    assert pool.complete(MSGS).text == "finally"
    assert time.monotonic() - start >= 1.0, "the pool waited as long as Retry-After asked"
    assert len(server.requests) == 2
    pool.close()


def test_without_fallback_the_first_error_surfaces_as_retryable(llm):
    bad = llm(lambda r: Reply(status=503, text="overloaded"))
    pool = build_chat_model("pool", {"fallback": False, "members": [member(bad)]})
    with pytest.raises(ProviderError) as err:
        pool.complete(MSGS)
    assert err.value.retryable and err.value.status == 503
    assert len(bad.requests) == 1
    pool.close()


def test_all_members_failing_raises_a_provider_error(llm):
    bad1 = llm(lambda r: Reply(status=500))
    bad2 = llm(lambda r: Reply(status=502))
    pool = build_chat_model("pool", {"members": [member(bad1), member(bad2)], "retries": 1})
    with pytest.raises(ProviderError) as err:
        pool.complete(MSGS)
    assert err.value.retryable
    assert bad1.requests and bad2.requests, "both members were tried before the pool gave up"
    pool.close()


def test_weights_split_traffic(llm):
    heavy = llm(lambda r: "heavy")
    light = llm(lambda r: "light")
    # Health handling is other tests' subject: here one transient connection error on a busy CI machine
    # must not cool the heavy member down for 30 s and hand the rest of the run to the light one.
    pool = build_chat_model("pool", {"members": [member(heavy, weight=9), member(light, weight=1)],
                                     "allowed_fails": 1_000})
    for _ in range(60):
        pool.complete(MSGS)
    # 9:1 over 60 calls: light expects 6 (sd 2.3); 15 or more happens about once in 10,000 runs.
    assert len(heavy.requests) > 3 * len(light.requests), (len(heavy.requests), len(light.requests))
    pool.close()


def test_ordered_strategy_uses_the_first_healthy_member(llm):
    first = llm(lambda r: "first")
    second = llm(lambda r: "second")
    pool = build_chat_model("pool", {"strategy": "ordered", "members": [member(first), member(second)]})
    assert {pool.complete(MSGS).text for _ in range(5)} == {"first"}
    assert not second.requests
    pool.close()


def test_latency_strategy_prefers_the_fast_member(llm):
    slow = llm(lambda r: Reply(text="slow", delay=0.3))
    fast = llm(lambda r: "fast")
    pool = build_chat_model("pool", {"strategy": "latency", "members": [member(slow), member(fast)]})
    for _ in range(4):  # both get measured
        pool.complete(MSGS)
    answers = [pool.complete(MSGS).text for _ in range(8)]
    assert answers.count("fast") >= 6
    pool.close()


def test_least_busy_strategy_avoids_the_busy_member(llm):
    """While one member holds a long call, new calls go to the idle one.

    LiteLLM updates its in-flight counts in a success callback on a background thread, so a call started the
    instant the previous one returned can still see the old count (a tie, broken at random); the short pause
    lets the count settle, and most calls, not all, are required to avoid the busy member."""
    release = threading.Event()

    def script(name: str):
        def reply(request):
            if request.last_user == "long":
                release.wait(30)
            return name
        return reply

    a, b = llm(script("a")), llm(script("b"))
    pool = build_chat_model("pool", {"strategy": "least-busy", "members": [member(a), member(b)]})
    long_call = ThreadPoolExecutor(1)
    held = long_call.submit(pool.complete, [{"role": "user", "content": "long"}])
    while not (a.requests or b.requests):
        time.sleep(0.01)
    busy, idle = ("a", "b") if a.requests else ("b", "a")
    answers = []
    for _ in range(10):
        answers.append(pool.complete(MSGS).text)
        time.sleep(0.1)
    assert not held.done(), "the long call was in flight throughout"
    release.set()
    assert held.result(timeout=30).text == busy
    long_call.shutdown()
    assert answers.count(idle) >= 8, answers
    pool.close()


def test_pool_prices_each_call_by_the_member_that_served_it(llm):
    cheap = llm(lambda r: Reply(text="x", usage=(1000, 100)))
    pool = build_chat_model("pool", {"model_name": "llm-pool", "members": [
        member(cheap, "gpt-4o-mini", pricing={"input_per_mtok": 1.0, "output_per_mtok": 2.0}),
    ]})
    assert pool.model_name == "llm-pool" and pool.has_price
    c = pool.complete(MSGS)
    assert c.model == "gpt-4o-mini" and (c.input_tokens, c.output_tokens) == (1000, 100)
    assert c.cost_usd == pytest.approx(1000 * 1e-6 + 100 * 2e-6)
    pool.close()


def test_pool_has_no_price_if_one_member_has_none(llm):
    s = llm(lambda r: "x")
    pool = build_chat_model("pool", {"members": [member(s, pricing={"input": 0, "output": 0}), member(s, "local-thing")]})
    assert pool.has_price is False
    pool.close()


@pytest.mark.parametrize(("backend", "model", "key"), [
    ("anthropic", "claude-sonnet-4-6", "sk-ant-test"),
    ("gemini", "gemini-2.5-flash", "AIza-test"),
])
def test_pool_members_speak_their_own_protocol(llm, backend, model, key):
    s = llm(lambda r: f"{r.protocol}:{r.model}")
    pool = build_chat_model("pool", {"members": [{"backend": backend, "model_name": model, "api_key": key,
                                                  "base_url": s.root_url}]})
    c = pool.complete(MSGS)
    per_mtok = {"anthropic": (3.00, 15.00), "gemini": (0.30, 2.50)}[backend]  # list prices, not table_price()
    assert c.text == f"{backend}:{model}" and c.model == model and pool.has_price
    assert c.cost_usd == pytest.approx((c.input_tokens * per_mtok[0] + c.output_tokens * per_mtok[1]) / 1e6)
    assert c.input_tokens > 0 and c.output_tokens > 0
    assert s.requests[-1].messages == [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "What grew in 2023?"}]
    pool.close()


def test_pool_works_as_a_sub_backend_entry(llm):
    s = llm({"root": lambda r: "root", "sub": lambda r: "sub"})
    subs = [build_chat_model(b, k) for b, k in [("pool", {"model_name": "cheap", "members": [member(s, "sub")]})]]
    assert subs[0].model_name == "cheap" and subs[0].complete(MSGS).text == "sub"
    subs[0].close()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"members": []}, "members"),
    ({"members": [{"model_name": "x"}]}, "backend"),
    ({"members": [{"backend": "pool"}]}, "cannot be a pool member"),
    ({"members": [{"backend": "vllm", "model_name": "m"}], "strategy": "fastest"}, "strategy"),
    ({"members": [{"backend": "vllm", "model_name": "m"}], "colour": "red"}, "colour"),
    ({"members": [{"backend": "openai", "model_name": "gpt-4o"}]}, "OPENAI_API_KEY"),
])
def test_pool_config_errors_name_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_chat_model("pool", kwargs)


def test_pool_repr_and_errors_hide_keys(llm):
    bad = llm(lambda r: Reply(status=401, text="bad key sk-secret-abcdef123456"))
    pool = build_chat_model("pool", {"fallback": False, "members": [
        {"backend": "openai", "model_name": "gpt-4o-mini", "api_key": "sk-secret-abcdef123456", "base_url": bad.base_url}]})
    assert "sk-secret" not in repr(pool) and "sk-secret" not in repr(pool.members)
    with pytest.raises(ProviderError) as err:
        pool.complete(MSGS)
    assert "sk-secret" not in str(err.value) and not err.value.retryable
    pool.close()
