"""The chat endpoint's refusals and cancellation, against uvicorn for real: a client hanging up cancels its
query (no further LLM request, its worker's process group killed), and each limit refuses cleanly."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx

from deeprecall.events import AnswerEvent
from deeprecall.server.chat import CostMeter
from deeprecall.testing.scripted_server import Reply, by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_cancel import group_alive, wait_until
from tests.engine.test_query import repl
from tests.server.harness import ACME_KEY, GLOBEX_KEY, Served, tenant_settings

SLEEPY = repl('print("sleeping", flush=True)\nimport time\ntime.sleep(2)\nprint(llm_query("more?"))')
DONE = repl('answer["content"] = "done"\nanswer["ready"] = True')
AUTH = {"Authorization": f"Bearer {ACME_KEY}"}


def ask(question: str = "What did Acme build?", **extra: Any) -> dict[str, Any]:
    return {"model": "deeprecall", "messages": [{"role": "user", "content": question}], **extra}


def post(url: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers or AUTH, timeout=60, **kwargs)


def test_a_client_hanging_up_mid_stream_cancels_its_query(llm):
    server = llm({ROOT: by_turn(SLEEPY, DONE), SUB: lambda r: "sub"})
    with Served(server) as served:
        worker = served.engine._pool._idle[0]._channel.pid
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{served.url}/v1/chat/completions",
                                                               json=ask(stream=True), headers=AUTH) as response:
            for line in response.iter_lines():
                if "cell 1" in line:  # the sleepy cell runs in the worker now
                    break
            requests_before = len(server.requests)
        # leaving the block closed the connection mid-stream
        wait_until(lambda: not group_alive(worker), 2.0, "the query's worker killed after the client left")
        time.sleep(2.5)  # the cell would have ended and asked the sub-model, then the root model's next turn
        assert len(server.requests) == requests_before == 1
        assert not list(served.engine._running)


def test_a_client_hanging_up_on_a_whole_answer_cancels_its_query(llm):
    server = llm({ROOT: by_turn(SLEEPY, DONE), SUB: lambda r: "sub"})
    with Served(server) as served:
        worker = served.engine._pool._idle[0]._channel.pid
        body = json.dumps(ask()).encode()
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + ACME_KEY.encode() + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_until(lambda: len(server.requests) == 1, 10, "the query's first model call")
            time.sleep(0.3)  # the cell is running
        wait_until(lambda: not group_alive(worker), 2.0, "the query's worker killed after the client left")
        time.sleep(2.5)
        assert len(server.requests) == 1
        metrics = httpx.get(f"{served.url}/metrics").text  # counted as the client's doing (499), not a timeout
        assert 'route="/v1/chat/completions",status="499"} 1' in metrics and 'status="504"' not in metrics


def test_limits_refuse_with_429_and_free_their_slot(llm):
    server = llm({ROOT: by_turn(Reply(DONE, delay=1.0)), SUB: lambda r: "sub"})
    settings = tenant_settings(acme_limits={"max_concurrent": 1}, globex_limits={"requests_per_minute": 1})
    with Served(server, settings) as served:
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{served.url}/v1/chat/completions",
                                                               json=ask(stream=True), headers=AUTH) as first:
            lines = first.iter_lines()
            next(lines)  # admitted and running
            busy = post(served.url, ask())
            other = post(served.url, ask(), {"Authorization": f"Bearer {GLOBEX_KEY}"})  # another key is not held up
            list(lines)
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "concurrency"
        assert busy.json()["error"]["type"] == "insufficient_quota" and busy.headers["retry-after"] == "1"
        assert other.status_code == 200
        wait_until(lambda: post(served.url, ask()).status_code == 200, 5, "acme's slot freed after its stream ended")
        fast = post(served.url, ask(), {"Authorization": f"Bearer {GLOBEX_KEY}"})
        assert fast.status_code == 429 and fast.json()["error"]["code"] == "rate_limit"
        assert fast.json()["error"]["type"] == "rate_limit_exceeded" and 1 <= int(fast.headers["retry-after"]) <= 60


def test_daily_cost_cap_refuses_once_spent(llm):
    server = llm({ROOT: by_turn(Reply(DONE, cost=0.03)), SUB: lambda r: "sub"})
    settings = tenant_settings(acme_limits={"daily_cost_usd": 0.05})
    with Served(server, settings) as served:
        assert post(served.url, ask()).json()["deeprecall"]["usage"]["total_cost_usd"] > 0
        wait_until(lambda: post(served.url, ask()).status_code == 429, 5, "the cap reached after two queries")
        refused = post(served.url, ask())
    assert refused.json()["error"]["code"] == "daily_cost" and "$0.05" in refused.json()["error"]["message"]


def test_bad_bodies_are_refused_before_any_query(llm):
    server = llm({ROOT: by_turn(DONE), SUB: lambda r: "sub"})
    settings = tenant_settings(max_body_bytes=4096, max_messages=3, max_question_chars=50)
    with Served(server, settings) as served:
        big = post(served.url, ask("x" * 5000))
        chunked = httpx.post(f"{served.url}/v1/chat/completions", headers=AUTH, timeout=30,
                             content=iter([b'{"model": "x", "messages": [', b" " * 5000, b"]}"]))
        many = post(served.url, {"model": "x", "messages": [{"role": "user", "content": "hi"}] * 4})
        long = post(served.url, ask("y" * 51))
        garbage = httpx.post(f"{served.url}/v1/chat/completions", headers=AUTH, content=b"{nope", timeout=30)
        no_user = post(served.url, {"model": "x", "messages": [{"role": "system", "content": "hi"}]})
        bad_filter = post(served.url, ask(deeprecall={"filters": {"$where": "1"}}))
        unknown = httpx.get(f"{served.url}/v1/nothing")
    assert (big.status_code, big.json()["error"]["code"]) == (413, "body_too_large")
    assert (chunked.status_code, chunked.json()["error"]["code"]) == (413, "body_too_large")  # no Content-Length
    assert (many.status_code, many.json()["error"]["code"]) == (400, "too_many_messages")
    assert (long.status_code, long.json()["error"]["code"]) == (400, "question_too_long")
    assert "at most 50" in long.json()["error"]["message"]
    assert (garbage.status_code, garbage.json()["error"]["message"]) == (400, "the body is not valid JSON")
    assert no_user.status_code == 400 and "role 'user'" in no_user.json()["error"]["message"]
    assert (bad_filter.status_code, bad_filter.json()["error"]["code"]) == (400, "invalid_filters")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert server.requests == []  # none of them reached the model


def test_a_slow_body_times_out_with_408(llm):
    """Slowloris: headers promise a body that trickles in; the server gives up at body_timeout_seconds."""
    server = llm({ROOT: by_turn(DONE), SUB: lambda r: "sub"})
    with Served(server, tenant_settings(body_timeout_seconds=1.0)) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + ACME_KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{")
            start = time.monotonic()
            reply = b""
            for _ in range(20):  # one byte every 0.2 s: each arrives well within any per-read timeout
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                time.sleep(0.2)
                sock.setblocking(False)
                try:
                    reply += sock.recv(65536)
                except BlockingIOError:
                    pass
                sock.setblocking(True)
                if reply:
                    break
            elapsed = time.monotonic() - start
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b'"code":"body_timeout"' in reply.replace(b" ", b"") and elapsed < 3
        assert post(served.url, ask()).status_code == 200  # the server is fine
        assert len(server.requests) == 1


def test_32_concurrent_streams_each_complete_and_in_order(llm):
    """32 clients stream at once, the model answering each call after 0.3 s: every stream gets its own answer,
    its chunks in order (role, steps with rising times, answer, finish, [DONE]), none cut or mixed up."""
    import asyncio
    import re

    def root(request: Any) -> str:
        n = re.search(r"question #(\d+)", request.text).group(1)  # type: ignore[union-attr]
        if request.turn == 0:
            return repl('hits = search_db("Acme")\nprint(llm_query("summarise " + hits[0]["content"]))')
        return repl(f'answer["content"] = "answer #{n}"\nanswer["ready"] = True')

    server = llm({ROOT: root, SUB: lambda r: "summary"}, latency=0.3)

    async def one(client: httpx.AsyncClient, url: str, n: int) -> list[Any]:
        async with client.stream("POST", f"{url}/v1/chat/completions", headers=AUTH,
                                 json=ask(f"question #{n}: what did Acme build?", stream=True)) as response:
            assert response.status_code == 200
            text = "".join([part async for part in response.aiter_text()])
        return [json.loads(b[6:]) if b != "data: [DONE]" else "[DONE]" for b in text.split("\n\n") if b]

    async def burst(url: str) -> tuple[list[list[Any]], float]:
        start = time.monotonic()
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as client:
            streams = await asyncio.gather(*(one(client, url, n) for n in range(32)))
        return list(streams), time.monotonic() - start

    with Served(server, environment_kwargs={"pool_size": 32}) as served:
        streams, seconds = asyncio.run(burst(served.url))
    for n, chunks in enumerate(streams):
        assert chunks[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        kinds = ["role" if "role" in c["choices"][0]["delta"] else
                 "step" if "reasoning_content" in c["choices"][0]["delta"] else
                 "answer" if c["choices"][0]["delta"].get("content") else "finish" for c in chunks[:-1]]
        assert kinds == ["role"] + ["step"] * (len(kinds) - 3) + ["answer", "finish"], kinds
        steps = [c["choices"][0]["delta"]["reasoning_content"] for c, kind in zip(chunks[:-1], kinds, strict=True)
                 if kind == "step"]
        times = [float(line[1:line.index("s]")]) for line in steps]
        assert times == sorted(times) and len(times) >= 8
        assert chunks[-3]["choices"][0]["delta"]["content"] == f"answer #{n}"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["deeprecall"]["error"] is None
        assert len({c["id"] for c in chunks[:-1]}) == 1
    assert len(server.calls_for(ROOT)) == 64 and len(server.calls_for(SUB)) == 32
    print(f"32 streams at 0.3 s model latency: {seconds:.2f} s wall")


def test_a_query_outlasting_the_query_timeout_is_cancelled(llm):
    server = llm({ROOT: by_turn(SLEEPY, DONE), SUB: lambda r: "sub"})
    with Served(server, tenant_settings(query_timeout_seconds=1.0)) as served:
        worker = served.engine._pool._idle[0]._channel.pid
        whole = post(served.url, ask())
        wait_until(lambda: not group_alive(worker), 2.0, "the timed-out query's worker killed")
        streamed = post(served.url, ask(stream=True))
    assert whole.status_code == 504 and whole.json()["error"]["code"] == "query_timeout"
    payloads = [b[6:] for b in streamed.text.split("\n\n") if b]
    last = json.loads(payloads[-2])
    assert payloads[-1] == "[DONE]" and last["choices"][0]["finish_reason"] == "length"
    assert last["deeprecall"]["error"] == "query_timeout"
    time.sleep(2.5)
    assert len(server.requests) == 2  # each query's first turn; nothing after the timeouts


def test_a_silent_step_gets_heartbeat_comments_that_clients_skip(llm):
    """A 2 s cell sends no event; with heartbeat_seconds 0.5 the stream carries SSE comments meanwhile, and the
    openai SDK reads the same chunks as without them."""
    import openai

    server = llm({ROOT: by_turn(SLEEPY, DONE), SUB: lambda r: "sub"})
    with Served(server, tenant_settings(heartbeat_seconds=0.5)) as served:
        raw = post(served.url, ask(stream=True)).text
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=ACME_KEY, max_retries=0)
        chunks = list(client.chat.completions.create(model="x", stream=True, messages=ask()["messages"]))
    assert raw.count(": keep-alive\n\n") >= 3 and raw.rstrip().endswith("data: [DONE]")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "done"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_store_that_fails_before_the_query_starts_does_not_leak_the_keys_slot(llm):
    """The store is down when the query is prepared (its description is read then): 503, and the key's only
    concurrency slot is free again for the next request once the store is back."""
    from tests.conftest import make_store

    class FlakyStore(type(make_store())):  # type: ignore[misc]
        down = True

        def describe(self) -> dict[str, Any]:
            if FlakyStore.down:
                raise ConnectionError("store unreachable")
            return super().describe()

    store = make_store()
    store.__class__ = FlakyStore
    server = llm({ROOT: by_turn(DONE), SUB: lambda r: "sub"})
    with Served(server, tenant_settings(acme_limits={"max_concurrent": 1}), store=store, warm=False) as served:
        failed = post(served.url, ask())
        FlakyStore.down = False
        wait_until(lambda: post(served.url, ask()).status_code == 200, 5, "the slot freed, the store back")
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "query_not_started"
    assert "ConnectionError" in failed.json()["error"]["message"] and server.requests[0].turn == 0


def test_a_child_querys_answer_is_a_step_not_the_reply(llm):
    """With max_depth=2 the model's rlm_query runs a child query whose events share the stream: only the top
    query's answer is the reply (one content delta, one finish), whole and streamed."""
    from tests.engine.test_recursive import CHILD_SEARCHES, PARENT_ASKS, two_levels

    server = llm({ROOT: two_levels(PARENT_ASKS, CHILD_SEARCHES), SUB: lambda r: "unused"})
    with Served(server, max_depth=2) as served:
        whole = post(served.url, ask("Where did Acme open a factory?")).json()
        streamed = post(served.url, ask("Where did Acme open a factory?", stream=True)).text
    assert whole["choices"][0]["message"]["content"] == "Acme opened its factory in Lyon"
    chunks = [json.loads(b[6:]) for b in streamed.split("\n\n") if b.startswith("data: {")]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [c for c in contents if c] == ["Acme opened its factory in Lyon"]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]) == 1


def test_the_cost_meter_keeps_nothing_once_requests_end(llm):
    """A long-running server must not grow per query: the engine-wide CostMeter sees every answer, child
    queries' (rlm_query, max_depth=2) included, and only top queries' costs are collected by their requests.
    It kept one entry per child query for ever."""
    from tests.engine.test_recursive import CHILD_SEARCHES, PARENT_ASKS, two_levels

    server = llm({ROOT: two_levels(PARENT_ASKS, CHILD_SEARCHES), SUB: lambda r: "unused"})
    with Served(server, max_depth=2) as served:
        meter = next(s for s in served.engine._subscribers if isinstance(s, CostMeter))
        for stream in (False, True, False):
            response = post(served.url, ask("Where did Acme open a factory?", stream=stream))
            assert response.status_code == 200 and "Lyon" in response.text
        wait_until(lambda: not meter._costs, 5.0, "every request collected its query's cost")


def test_a_cost_nobody_collects_is_dropped_after_keep_seconds():
    """An answer arriving after its request stopped waiting (a cancelled query winding down) is not kept."""
    meter = CostMeter(keep_seconds=0.2)

    def answer(query_id: str, cost: float, parent: str | None = None) -> AnswerEvent:
        return AnswerEvent.model_construct(query_id=query_id, t=0.0, step=1, answer="a", parent_query_id=parent,
                                           usage={"total_cost_usd": cost})

    meter(answer("late", 0.5))
    meter(answer("child", 0.25, parent="late"))  # in its top query's usage already: never kept
    assert len(meter._costs) == 1
    time.sleep(0.3)
    meter(answer("fresh", 0.125))
    assert len(meter._costs) == 1
    assert asyncio.run(meter.wait("late", 0)) == 0.0
    assert asyncio.run(meter.wait("fresh", 0)) == 0.125 and not meter._costs
