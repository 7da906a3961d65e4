"""What the MCP server adds to a query, against a scripted LLM server in its own process.

    python benchmarks/mcp_overhead.py [--queries 30]

Prints:
1. per query at 0 ms LLM latency (2 turns, 1 sub-call, 2 searches, 200 docs, warm pool), alternating:
   ``await engine.aquery()`` against the MCP ``query`` tool through the SDK's in-memory client with a
   progress callback (8 notifications per query), and without one; medians and the difference. Goal: < 5 ms.
2. the ``search`` tool's round trip in memory (no model call).
3. ``deeprecall mcp`` over stdio: from launching the process to an initialized session (interpreter,
   imports, store, engine warm-up), then one ``search`` round trip over the pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.memory import create_connected_server_and_client_session

from benchmarks.overhead import build_engine, start_server
from deeprecall.integrations.mcp_server import build_mcp_server


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms, min {min(values) * 1000:.1f} ms"


async def in_memory(engine: Any, queries: int) -> None:
    steps = 0

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal steps
        steps += 1

    direct: list[float] = []
    tool: list[float] = []
    quiet: list[float] = []
    search: list[float] = []
    async with create_connected_server_and_client_session(build_mcp_server(engine)) as session:
        await session.call_tool("query", {"question": "warm-up topic-1"})
        for i in range(queries):
            question = f"What about topic-{i % 40} ?"
            started = time.perf_counter()
            result = await engine.aquery(question)
            direct.append(time.perf_counter() - started)
            assert result.answer == f"answer for topic-{i % 40}", result
            started = time.perf_counter()
            reply = await session.call_tool("query", {"question": question}, progress_callback=on_progress)
            tool.append(time.perf_counter() - started)
            assert reply.structuredContent and reply.structuredContent["answer"] == result.answer, reply
            started = time.perf_counter()
            await session.call_tool("query", {"question": question})
            quiet.append(time.perf_counter() - started)
            started = time.perf_counter()
            await session.call_tool("search", {"query": question, "top_k": 5})
            search.append(time.perf_counter() - started)
    print(f"per query at 0 ms LLM latency, {queries} each, alternating:")
    print(f"  engine.aquery():            {ms(direct)}")
    print(f"  MCP query tool (in memory): {ms(tool)}, {steps / queries:.1f} progress notifications per query")
    print(f"  MCP query tool, no progress asked: {ms(quiet)}")
    for name, times in (("with progress", tool), ("no progress", quiet)):
        print(f"  MCP over aquery(), {name}: medians +{(statistics.median(times) - statistics.median(direct)) * 1000:.1f}"
              f" ms, minimums +{(min(times) - min(direct)) * 1000:.1f} ms (goal: < 5 ms)")
    print(f"MCP search tool round trip (in memory): {ms(search)}")


async def over_stdio(base_url: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "deeprecall.yaml"
        config.write_text(f"root: {{type: vllm, model_name: root, base_url: '{base_url}'}}\n"
                          f"sub_backends: [{{type: vllm, model_name: sub, base_url: '{base_url}'}}]\n")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "deeprecall.interfaces.cli", "mcp", "--config", str(config), "--persist-dir", folder,
            "--embedding", "hashing"], env=env, cwd=folder)
        started = time.perf_counter()
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            ready = time.perf_counter() - started
            await session.call_tool("search", {"query": "warm-up"})
            trips = []
            for _ in range(20):
                started = time.perf_counter()
                await session.call_tool("search", {"query": "widget line", "top_k": 5})
                trips.append(time.perf_counter() - started)
    print(f"deeprecall mcp over stdio: launch to initialized session {ready * 1000:.0f} ms; "
          f"search round trip {ms(trips)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    proc, url = start_server(0.0)
    try:
        with build_engine(url, pool=2 * args.queries + 2) as engine:
            engine.warm()
            asyncio.run(in_memory(engine, args.queries))
        asyncio.run(over_stdio(url))
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
