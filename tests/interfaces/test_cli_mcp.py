"""``deeprecall mcp`` as a real subprocess, launched by the official SDK's stdio client, with the LLM from a
deeprecall.yaml pointing at the scripted server, a real Chroma folder and the real sandbox."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from deeprecall.embeddings import HashingEmbedding
from deeprecall.testing.scripted_server import by_turn
from deeprecall.vectorstores.chroma import ChromaStore
from tests.conftest import DOCS, ROOT, SUB
from tests.engine.test_query import SEARCH_AND_SUMMARISE, SUBMIT
from tests.interfaces.test_cli import clean_env

SECRET = "sk-mcp-stdio-secret-0123456789abcdef"
CONFIG = """\
root: {type: vllm, model_name: root-model, base_url: "${LLM_URL}", api_key: "${LLM_KEY}", max_retries: 0}
sub_backends: [{type: vllm, model_name: sub-model, base_url: "${LLM_URL}", api_key: "${LLM_KEY}", max_retries: 0}]
sandbox: {type: local, pool_size: 1}
search: {filters: {tenant: acme}}
"""


def chroma_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "chroma"
    store = ChromaStore("docs", persist_directory=str(folder), embedding_fn=HashingEmbedding())
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    return folder


def test_stdio_subprocess_lists_queries_with_progress_searches_and_refuses_bad_arguments(tmp_path, llm):
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    config = tmp_path / "deeprecall.yaml"
    config.write_text(CONFIG)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "deeprecall.interfaces.cli", "mcp", "--config", str(config), "--persist-dir",
              str(chroma_folder(tmp_path)), "--collection", "docs", "--embedding", "hashing"],
        env=clean_env(LLM_URL=server.base_url, LLM_KEY=SECRET), cwd=str(tmp_path))
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def main() -> dict[str, Any]:
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return {
                    "tools": await session.list_tools(),
                    "store": await session.read_resource("deeprecall://store"),
                    "query": await session.call_tool("query", {"question": "How much did Acme's revenue grow?"},
                                                     progress_callback=on_progress),
                    "search": await session.call_tool("search", {"query": "revenue", "top_k": 3,
                                                                 "filters": {"tenant": "globex"}}),
                    "mine": await session.call_tool("search", {"query": "revenue", "top_k": 3}),
                    "bad": await session.call_tool("search", {"query": "revenue", "top_k": 0}),
                }

    out = asyncio.run(asyncio.wait_for(main(), 120))
    stderr = (tmp_path / "stderr.log").read_text()
    assert {t.name for t in out["tools"].tools} == {"query", "search"}
    assert json.loads(out["store"].contents[0].text)["documents"] == len(DOCS)
    query = out["query"]
    assert not query.isError, (query.content, stderr)
    answer = query.structuredContent
    assert answer["answer"] == "Acme revenue grew 12% in 2023." and [s["id"] for s in answer["sources"]] == ["doc0"]
    assert answer["usage"]["root_calls"] == 2 and answer["usage"]["sub_calls"] == 1
    assert len(progress) == 7 and progress[0].startswith("searched") and "sub-call to sub-model" in progress[4]
    assert out["search"].structuredContent["hits"] == []  # the config's tenant filter, narrowed by the client's
    assert {h["metadata"]["tenant"] for h in out["mine"].structuredContent["hits"]} == {"acme"}
    bad = out["bad"]
    assert bad.isError and "top_k" in bad.content[0].text and "greater than or equal to 1" in bad.content[0].text
    assert server.requests[0].headers.get("authorization") == f"Bearer {SECRET}"  # the key did reach the LLM ...
    results = json.dumps([r.model_dump(mode="json") for r in (query, out["search"], out["mine"], bad)])
    assert SECRET not in results and SECRET not in stderr and SECRET not in json.dumps(progress)  # ... and nowhere else
    assert "Traceback" not in stderr


def test_a_bad_config_stops_with_one_line_before_serving(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "deeprecall.interfaces.cli", "mcp", "--config", str(tmp_path / "no.yaml")],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # stdout is the protocol: nothing else is ever written there


def test_streamable_http_serves_the_same_tools_with_progress(tmp_path, llm):
    import socket
    import subprocess
    import time

    import httpx
    from mcp.client.streamable_http import streamable_http_client

    from tests.conftest import free_port

    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    config = tmp_path / "deeprecall.yaml"
    config.write_text(CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeprecall.interfaces.cli", "mcp", "--transport", "http", "--port", str(port),
         "--config", str(config), "--persist-dir", str(chroma_folder(tmp_path)), "--collection", "docs",
         "--embedding", "hashing"],
        env=clean_env(LLM_URL=server.base_url, LLM_KEY=SECRET), cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1] if proc.poll() else "slow"
            time.sleep(0.1)
        progress: list[str] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")

        async def main() -> tuple[Any, Any]:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _), \
                    ClientSession(read, write) as session:
                await session.initialize()
                return (await session.call_tool("query", {"question": "How much did Acme's revenue grow?"},
                                                progress_callback=on_progress),
                        await session.call_tool("search", {"query": "revenue", "top_k": 2}))

        query, search = asyncio.run(asyncio.wait_for(main(), 120))
        assert not query.isError and query.structuredContent["answer"] == "Acme revenue grew 12% in 2023."
        assert len(progress) == 7 and progress[0].startswith("searched")
        assert len(search.structuredContent["hits"]) == 2
        # DNS rebinding: a page on another host name cannot drive the loopback server from a browser
        rebound = httpx.post(f"http://127.0.0.1:{port}/mcp", headers={"Host": "evil.example", "Accept":
                             "application/json, text/event-stream"}, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert rebound.status_code in (403, 421)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert SECRET not in stderr and "Traceback" not in stderr
