"""The server through real clients: the official openai SDK (whole and streamed), httpx and curl -N, against
uvicorn on a free port, a real engine, sandbox and Chroma store, and the scripted LLM server."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import openai
import pytest

from deeprecall.testing.scripted_server import by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_query import repl
from tests.server.harness import ACME_KEY, GLOBEX_KEY, Served

QUESTION = "Where did Acme open a factory?"
FIRST = repl('hits = search_db("Acme factory")\nprint(llm_query("Which city? " + hits[0]["content"]))', prose="Looking.")
SECOND = repl('answer["content"] = "Lyon"\nanswer["sources"] = [hits[0]["id"]]\nanswer["ready"] = True', prose="Found.")


def scripts() -> dict[str, Any]:
    return {ROOT: by_turn(FIRST, SECOND), SUB: lambda request: "Lyon."}


def sse_payloads(text: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, ``[DONE]`` as the string."""
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_openai_sdk_whole_answer_with_sources_and_usage(llm):
    with Served(llm(scripts())) as served:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=ACME_KEY, max_retries=0)
        reply = client.chat.completions.create(model="deeprecall", messages=[{"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content == "Lyon" and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.total_tokens > reply.usage.prompt_tokens
    extra: Any = reply.model_extra["deeprecall"]
    assert extra["error"] is None and extra["grounded"] is True
    assert [s["metadata"]["tenant"] for s in extra["sources"]] == ["acme"] and "Lyon" in extra["sources"][0]["content"]
    assert reply.id == f"chatcmpl-{extra['query_id']}"


def test_openai_sdk_stream_live_role_steps_answer_finish_usage(llm):
    server = llm(scripts())
    with Served(server) as served:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=ACME_KEY, max_retries=0)
        chunks = list(client.chat.completions.create(model="deeprecall", stream=True,
                                                     stream_options={"include_usage": True},
                                                     messages=[{"role": "user", "content": QUESTION}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    steps = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks if c.choices)
    kinds = [line.split("] ", 1)[1].split()[0] for line in steps.splitlines()]
    assert kinds == ["start", "search", "turn", "cell", "search", "sub-call", "cell", "turn", "cell", "cell"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Lyon"
    last, usage = chunks[-2], chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.model_extra["deeprecall"]["sources"][0]["metadata"]["tenant"] == "acme"
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1
    assert not any(r.stream for r in server.requests)  # steps are streamed, not tokens: plain model calls


def test_curl_streams_sse_ending_with_done_and_httpx_lists_models(llm):
    with Served(llm(scripts())) as served:
        body = json.dumps({"model": "x", "stream": True, "messages": [{"role": "user", "content": QUESTION}]})
        proc = subprocess.run(["curl", "-sN", f"{served.url}/v1/chat/completions", "-H", f"Authorization: Bearer {ACME_KEY}",
                               "-H", "Content-Type: application/json", "-d", body], capture_output=True, text=True, timeout=60)
        models = httpx.get(f"{served.url}/v1/models").json()
    payloads = sse_payloads(proc.stdout)
    assert payloads[-1] == "[DONE]" and payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in payloads[-2] and all(p["choices"] for p in payloads[:-1])  # no usage chunk unless asked
    assert models == {"object": "list", "data": [{"id": "deeprecall", "object": "model", "created": 0, "owned_by": "deeprecall"}]}


def test_missing_and_wrong_keys_are_401_in_openai_shape(llm):
    with Served(llm(scripts())) as served:
        body = {"model": "x", "messages": [{"role": "user", "content": QUESTION}]}
        missing = httpx.post(f"{served.url}/v1/chat/completions", json=body)
        wrong = httpx.post(f"{served.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer dr-nope"})
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="dr-nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="x", messages=body["messages"])
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.status_code == 401 and wrong.json()["error"] == {
        "message": "the API key is not valid", "type": "invalid_request_error", "code": "invalid_api_key", "param": None}


def test_a_request_filter_cannot_reach_another_tenant(llm):
    """acme asks for globex's documents by filter: the key's tenant filter is ANDed, so nothing of globex's."""
    seen: list[str] = []

    def root(request):
        seen.append(request.text)
        return repl('hits = search_db("revenue", filters={"tenant": "globex"})\nprint([h["content"] for h in hits])\n'
                    'answer["content"] = str(len(hits))\nanswer["ready"] = True')

    server = llm({ROOT: root, SUB: lambda r: "x"})
    with Served(server) as served:
        reply = httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {ACME_KEY}"}, json={
            "model": "x", "messages": [{"role": "user", "content": "What was Globex's revenue?"}],
            "deeprecall": {"filters": {"$or": [{"tenant": "globex"}, {"tenant": "acme"}]}}}, timeout=60).json()
        globex = httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {GLOBEX_KEY}"}, json={
            "model": "x", "messages": [{"role": "user", "content": "What was Globex's revenue?"}]}, timeout=60).json()
    assert "fell 3%" not in seen[0] and "Scorpio" not in seen[0]  # the engine's first search, under acme's filter, found none of globex's documents
    assert reply["choices"][0]["message"]["content"] == "0"
    assert all(s["metadata"]["tenant"] == "acme" for s in reply["deeprecall"]["sources"])
    assert globex["choices"][0]["message"]["content"] != "0"  # the same code under globex's key finds them


def test_healthz_reports_each_check_and_fails_when_the_model_is_gone(llm):
    server = llm(scripts())
    with Served(server) as served:
        healthy = httpx.get(f"{served.url}/healthz", timeout=30)
        server.stop()
        failing = httpx.get(f"{served.url}/healthz", timeout=30)
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    checks = healthy.json()["checks"]
    assert checks["store"] == {"ok": True, "documents": 5, "ms": checks["store"]["ms"]}
    assert checks["sandbox"]["ok"] and checks["sandbox"]["isolation"] in ("namespace", "process")
    assert checks["provider"]["reachable"] is True
    assert failing.status_code == 503 and failing.json()["status"] == "failing"
    assert failing.json()["checks"]["provider"]["ok"] is False and failing.json()["checks"]["store"]["ok"] is True
