"""The answer cache on a real engine and store: a repeated question is served from the cache, and never
across tenants (the attack: the same question from another tenant, or with the other tenant's filter),
never across store changes or config changes; errors are not kept; Redis shares entries between replicas."""

from __future__ import annotations

import asyncio
from typing import Any

from deeprecall import DeepRecall
from deeprecall.config import DeepRecallConfig
from deeprecall.server.answer_cache import (
    AnswerCache,
    CachedAnswers,
    InProcessAnswerCache,
    RedisAnswerCache,
    config_fingerprint,
)
from deeprecall.testing.function_model import FunctionChatModel
from deeprecall.vectorstores import filters as filter_language
from tests.conftest import make_store
from tests.server.redis_service import fresh_prefix, require_redis_url

ACME = {"tenant": "acme"}
GLOBEX = {"tenant": "globex"}


def tenant_of_hits(messages: list[dict[str, Any]]) -> str:
    """The model answers with whose documents its first turn was shown (the engine's first search)."""
    text = " ".join(str(m["content"]) for m in messages)
    if "Acme" in text and "Globex" not in text:
        return "FINAL(acme documents)"
    if "Globex" in text and "Acme" not in text:
        return "FINAL(globex documents)"
    return "FINAL(no tenant's documents)"


async def ask(engine: DeepRecall, answers: CachedAnswers, question: str, tenant: dict[str, Any] | None,
              request: dict[str, Any] | None = None) -> tuple[str, bool]:
    """What the server does per request: look up; on a miss run the query and let the cache keep it."""
    lookup = await answers.lookup(question, tenant, request)
    if lookup.hit is not None:
        return lookup.hit.answer, True
    stream = engine.astream(question, filter_language.combine(tenant, request))
    answers.expect(stream.query_id, lookup.key)
    answer = ""
    async with stream:
        async for event in stream:
            if event.type == "answer":
                answer = event.answer
    await asyncio.sleep(0.01)  # the put was scheduled on this loop by the query's thread
    return answer, False


def test_a_tenant_is_never_served_another_tenants_cached_answer() -> None:
    model = FunctionChatModel(tenant_of_hits, model_name="fn-root")
    store = make_store()
    looked_up: list[str] = []
    with DeepRecall(store, chat_model=model, environment_kwargs={"pool_size": 1}) as engine:
        answers = CachedAnswers(InProcessAnswerCache(), engine.config, store, on_lookup=looked_up.append)
        engine.subscribe(answers)
        question = "How did revenue change in 2023?"

        async def scenario() -> None:
            assert await ask(engine, answers, question, ACME) == ("acme documents", False)
            calls = len(model.calls)
            assert await ask(engine, answers, question, ACME) == ("acme documents", True)  # a hit, no model call
            assert len(model.calls) == calls
            assert await ask(engine, answers, question, ACME, {}) == ("acme documents", True)  # {} adds nothing

            # The attack: globex asks acme's question, then asks it naming acme's tenant as its own filter.
            assert await ask(engine, answers, question, GLOBEX) == ("globex documents", False)
            answer, cached = await ask(engine, answers, question, GLOBEX, ACME)
            assert not cached and answer != "acme documents"  # globex AND acme: narrower, never acme's entry
            assert await ask(engine, answers, question, GLOBEX) == ("globex documents", True)

            # A narrower request of acme's is its own entry too.
            assert (await ask(engine, answers, question, ACME, {"year": 2023}))[1] is False

            # The store changes: the entry no longer matches.
            store.add_documents(["Acme's revenue grew 14% in 2023 (restated)."], [{"tenant": "acme", "year": 2023}])
            assert await ask(engine, answers, question, ACME) == ("acme documents", False)

        asyncio.run(scenario())
    assert looked_up.count("hit") == 3 and "uncacheable" not in looked_up


def test_errors_are_not_kept_and_a_store_without_fingerprint_is_never_cached() -> None:
    def stuck(messages: list[dict[str, Any]]) -> str:
        return "Lyon" if messages[-1]["content"].startswith("Answer the question from") else "```repl\nx = 1\n```"

    store = make_store()
    with DeepRecall(store, chat_model=FunctionChatModel(stuck), max_iterations=1,
                    environment_kwargs={"pool_size": 1}) as engine:
        answers = CachedAnswers(InProcessAnswerCache(), engine.config, store)
        engine.subscribe(answers)

        class NoFingerprint:
            def fingerprint(self) -> None:
                return None

        plain = CachedAnswers(InProcessAnswerCache(), engine.config, NoFingerprint())  # type: ignore[arg-type]

        async def scenario() -> None:
            assert await ask(engine, answers, "Where is the factory?", ACME) == ("Lyon", False)  # max_iterations
            assert (await ask(engine, answers, "Where is the factory?", ACME))[1] is False  # not kept
            assert (await plain.lookup("Where is the factory?", ACME, None)).key is None

        asyncio.run(scenario())


def test_the_config_hash_follows_settings_that_change_answers_but_not_secrets() -> None:
    base = DeepRecallConfig(backend_kwargs={"model_name": "m", "api_key": "sk-aaaaaaaaaaaa"})
    same = config_fingerprint(base)
    assert config_fingerprint(DeepRecallConfig(backend_kwargs={"model_name": "m", "api_key": "sk-bbbbbbbbbbbb"})) == same
    assert config_fingerprint(DeepRecallConfig(backend_kwargs={"model_name": "m2", "api_key": "sk-a"})) != same
    assert config_fingerprint(base.model_copy(update={"top_k": 9})) != same
    assert config_fingerprint(base.model_copy(update={"filters": ACME})) != same
    assert config_fingerprint(base.model_copy(update={"trace_dir": "/tmp/traces"})) == same


def test_redis_shares_entries_between_replicas_and_keys_reveal_nothing() -> None:
    url, prefix = require_redis_url(), fresh_prefix()
    store = make_store()
    config = DeepRecallConfig(backend_kwargs={"model_name": "m"})

    async def scenario() -> None:
        one: AnswerCache = RedisAnswerCache(url, prefix=prefix)
        two: AnswerCache = RedisAnswerCache(url, prefix=prefix)
        replica_one, replica_two = CachedAnswers(one, config, store), CachedAnswers(two, config, store)
        lookup = await replica_one.lookup("Where is the factory?", ACME, None)
        assert lookup.key is not None and lookup.hit is None
        await one.put(lookup.key, {"answer": "Lyon", "grounded": True, "sources": [{"id": "doc1"}], "query_id": "q1"}, 60)
        hit = (await replica_two.lookup("Where is the factory?", ACME, None)).hit
        assert hit is not None and hit.answer == "Lyon" and hit.sources == [{"id": "doc1"}] and hit.usage == {}
        assert hit.query_id != "q1"
        assert (await replica_two.lookup("Where is the factory?", GLOBEX, None)).hit is None
        import redis.asyncio as redis_asyncio

        client = redis_asyncio.from_url(url)
        names = [k.decode() async for k in client.scan_iter(f"{prefix}:*")]
        assert names == [f"{prefix}:answer:{lookup.key}"] and "acme" not in names[0] and "factory" not in names[0]
        assert 0 < await client.ttl(names[0]) <= 60
        await client.aclose()
        await one.close()
        await two.close()

    asyncio.run(scenario())


def test_the_server_marks_a_hit_and_never_serves_it_to_another_tenant(llm: Any) -> None:
    """Through the real server: acme's repeated question is a hit (whole and streamed), globex's same question
    is not, nor is globex's request naming acme's tenant in its own filters; the hit costs no model call."""
    import httpx

    from tests.conftest import ROOT
    from tests.server.harness import ACME_KEY, GLOBEX_KEY, Served, tenant_settings

    def root(request: Any) -> str:
        return tenant_of_hits(request.messages)

    server = llm({ROOT: root})
    settings = tenant_settings(cache={"enabled": True, "ttl_seconds": 60})

    def ask(served: Served, key: str, filters: dict[str, Any] | None = None, stream: bool = False) -> Any:
        body: dict[str, Any] = {"model": "deeprecall", "stream": stream,
                                "messages": [{"role": "user", "content": "How did revenue change in 2023?"}]}
        if filters:
            body["deeprecall"] = {"filters": filters}
        reply = httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        if not stream:
            data = reply.json()
            return data["choices"][0]["message"]["content"], data["deeprecall"].get("cached", False)
        from tests.server.test_app import sse_payloads

        payloads = sse_payloads(reply.text)
        assert payloads[-1] == "[DONE]" and payloads[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p["choices"])
        return text, payloads[-2]["deeprecall"].get("cached", False)

    with Served(server, settings) as served:
        assert ask(served, ACME_KEY) == ("acme documents", False)
        calls = len(server.requests)
        assert ask(served, ACME_KEY) == ("acme documents", True)
        assert ask(served, ACME_KEY, stream=True) == ("acme documents", True)
        assert len(server.requests) == calls  # hits reached no model
        assert ask(served, GLOBEX_KEY) == ("globex documents", False)
        answer, cached = ask(served, GLOBEX_KEY, filters={"tenant": "acme"})
        assert not cached and answer != "acme documents"
        metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert 'deeprecall_answer_cache_total{result="hit"} 2' in metrics
    assert 'deeprecall_answer_cache_total{result="miss"} 3' in metrics


def test_the_cache_is_off_by_default(llm: Any) -> None:
    import httpx

    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT
    from tests.server.harness import ACME_KEY, Served

    server = llm({ROOT: by_turn("FINAL(Lyon)", "FINAL(Lyon)")})
    with Served(server) as served:
        for _ in range(2):
            reply = httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {ACME_KEY}"},
                               json={"model": "m", "messages": [{"role": "user", "content": "Where?"}]}, timeout=30)
            assert reply.status_code == 200 and "cached" not in reply.json()["deeprecall"]
    assert len(server.requests) == 2
