"""The MCP server through the official SDK's in-memory client: a real engine, a real Chroma store, the
scripted LLM server and the real sandbox; the client is the SDK's ClientSession."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import ClientSession, types
from mcp.shared.memory import create_connected_server_and_client_session

from deeprecall.integrations.mcp_server import STORE_RESOURCE, build_mcp_server, progress_message
from deeprecall.testing.scripted_server import by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_query import SEARCH_AND_SUMMARISE, SUBMIT, repl

QUESTION = "How much did Acme's revenue grow in 2023?"
SECRET = "sk-mcp-test-secret-0123456789abcdef"


def run_client(engine: Any, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with create_connected_server_and_client_session(build_mcp_server(engine)) as session:
            return await body(session)

    return asyncio.run(main())


def payload(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.isError, result.content
    assert result.structuredContent is not None
    return result.structuredContent


def error_text(result: types.CallToolResult) -> str:
    assert result.isError
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def test_lists_the_tools_and_describes_the_store_as_a_resource(llm, make_engine):
    engine = make_engine(llm(by_turn("unused")), filters={"tenant": "acme"}, max_top_k=20)

    async def body(session: ClientSession) -> tuple[Any, Any, Any]:
        return await session.list_tools(), await session.list_resources(), await session.read_resource(STORE_RESOURCE)

    tools, resources, store = run_client(engine, body)
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == {"query", "search"}
    assert by_name["query"].inputSchema["required"] == ["question"]
    assert by_name["search"].inputSchema["properties"]["top_k"]["maximum"] == 20
    assert [str(r.uri) for r in resources.resources] == [STORE_RESOURCE]
    description = json.loads(store.contents[0].text)
    assert description["kind"] == "chroma" and description["documents"] == 5
    assert {"tenant", "year", "topic"} <= set(description["metadata_keys"])
    assert description["scoped_by_host"] is True and description["max_top_k"] == 20
    assert "acme" not in json.dumps(description)  # the host's filter values are not shown, as to the model


def test_query_answers_with_sources_usage_and_one_progress_notification_per_step(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    engine = make_engine(server, backend_kwargs={"model_name": ROOT, "base_url": server.base_url, "max_retries": 0,
                                                 "api_key": SECRET})
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def body(session: ClientSession) -> types.CallToolResult:
        return await session.call_tool("query", {"question": QUESTION}, progress_callback=on_progress)

    result = run_client(engine, body)
    out = payload(result)
    assert out["answer"] == "Acme revenue grew 12% in 2023." and out["error"] is None and out["grounded"] is True
    assert [s["id"] for s in out["sources"]] == ["doc0"]
    assert out["sources"][0]["metadata"]["tenant"] == "acme" and "12%" in out["sources"][0]["content"]
    assert isinstance(out["sources"][0]["score"], float)
    assert out["usage"]["root_calls"] == 2 and out["usage"]["sub_calls"] == 1 and out["usage"]["search_calls"] == 2
    messages = [m for _, _, m in progress]
    assert [v for v, _, _ in progress] == list(range(1, len(progress) + 1))
    # the engine's first search, turn 1 (its cell, the search and the sub-call in it), turn 2 (its cell)
    assert messages[0] == 'searched "How much did Acme\'s revenue grow in 2023?": 5 hits', messages
    assert [m.split(" (")[0] for m in messages[1:]] == [
        "turn 1: root-model replied", "turn 1: running code cell 1", "searched 'Acme revenue growth 2023': 5 hits",
        "sub-call to sub-model", "turn 2: root-model replied", "turn 2: running code cell 2"]
    assert all(m and len(m) <= 150 for m in messages)
    assert SECRET not in json.dumps(out) and SECRET not in json.dumps(messages)


def test_a_filter_cannot_widen_the_hosts(llm, make_engine):
    widen = repl('hits = search_db("revenue", filters={"tenant": "globex"})\nprint(len(hits))\n'
                 'answer["content"] = "none"\nanswer["ready"] = True')
    server = llm(by_turn(widen))
    engine = make_engine(server, filters={"tenant": "acme"})

    async def body(session: ClientSession) -> list[types.CallToolResult]:
        return [await session.call_tool("search", {"query": "revenue 2023", "top_k": 5, "filters": {"tenant": "globex"}}),
                await session.call_tool("search", {"query": "revenue 2023", "top_k": 5,
                                                   "filters": {"$or": [{"tenant": "globex"}, {"tenant": "acme"}]}}),
                await session.call_tool("search", {"query": "revenue 2023", "top_k": 5}),
                await session.call_tool("query", {"question": "Globex revenue?", "filters": {"tenant": "globex"}})]

    globex, either, plain, query = run_client(engine, body)
    assert payload(globex)["hits"] == []
    assert {h["metadata"]["tenant"] for h in payload(either)["hits"]} == {"acme"}
    plain_hits = payload(plain)["hits"]
    assert plain_hits and {h["metadata"]["tenant"] for h in plain_hits} == {"acme"}
    assert plain_hits[0]["id"] and plain_hits[0]["content"] and isinstance(plain_hits[0]["score"], float)
    assert payload(query)["sources"] == []
    seen = json.dumps([r.messages for r in server.requests])
    assert "fell 3%" not in seen and "Scorpio" not in seen  # the model never saw another tenant's documents
    assert "(no documents matched)" in seen


def test_bad_arguments_get_a_clear_tool_error(llm, make_engine):
    engine = make_engine(llm(by_turn("unused")), max_top_k=10)

    async def body(session: ClientSession) -> list[types.CallToolResult]:
        return [await session.call_tool("search", {"query": "x", "top_k": 500}),
                await session.call_tool("search", {"query": "x", "filters": {"year": {"$near": 1}}}),
                await session.call_tool("query", {"question": "q", "filters": {"$xor": []}}),
                await session.call_tool("query", {}),
                await session.call_tool("query", {"question": ""})]

    too_many, bad_op, bad_top, missing, empty = run_client(engine, body)
    assert "top_k" in error_text(too_many) and "less than or equal to 10" in error_text(too_many)
    assert "unknown operator '$near'" in error_text(bad_op)
    assert "unknown operator '$xor'" in error_text(bad_top)
    assert "question" in error_text(missing) and "required" in error_text(missing).lower()
    assert "question" in error_text(empty)


def test_cancelling_the_request_cancels_the_query(llm, make_engine):
    slow_turns = [repl('hits = search_db("Acme")\nprint(len(hits))')] * 6
    server = llm(by_turn(*slow_turns), latency=0.4)
    engine = make_engine(server, max_iterations=6)

    async def body(session: ClientSession) -> tuple[int, int]:
        first_step = asyncio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            if message and "running code cell" in message:
                first_step.set()

        request_id = session._request_id  # the id (and progress token) the next request gets
        call = asyncio.create_task(session.call_tool("query", {"question": "q"}, progress_callback=on_progress))
        await asyncio.wait_for(first_step.wait(), 20)
        await session.send_notification(types.ClientNotification(types.CancelledNotification(
            params=types.CancelledNotificationParams(requestId=request_id, reason="user stopped"))))
        call.cancel()
        at_cancel = len(server.requests)
        await asyncio.sleep(1.5)
        return at_cancel, len(server.requests)

    at_cancel, later = run_client(engine, body)
    assert later <= at_cancel + 1  # at most the call already on the wire; no turn starts after the cancel
    deadline = time.monotonic() + 5
    while engine._running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine._running  # the query ended (its worker killed with it)


def test_progress_messages_name_each_step_in_one_short_line():
    from deeprecall.events import CellStarted, LimitTripped, ModelDelta, SearchDone, SubCallDone

    assert progress_message(SearchDone(query_id="q", query="a\nb " * 100, top_k=5, hit_ids=["1", "2"])) is not None
    long = progress_message(SearchDone(query_id="q", query="x" * 500, top_k=5))
    assert long is not None and len(long) < 160 and "\n" not in long
    assert progress_message(CellStarted(query_id="q", step=2, cell=3, code="print(1)")) == "turn 2: running code cell 3"
    assert progress_message(SubCallDone(query_id="q", model="m", prompt_preview="p", error="llm_error")) == \
        "sub-call to m failed: llm_error"
    assert progress_message(LimitTripped(query_id="q", reason="max_iterations", message="m")) == "stopping: max_iterations"
    assert progress_message(ModelDelta(query_id="q", model="m", text="tok")) is None
