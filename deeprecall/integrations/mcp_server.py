"""DeepRecall as an MCP server: tools ``query`` and ``search``, the store's description as a resource.

Why a thin layer over the engine: MCP clients (desktop assistants, editors, agent frameworks) call tools
and read resources; everything a query does is already reported on the engine's one event stream
(``engine.astream()``, ``deeprecall/events.py``), so progress notifications are that stream's steps,
and cancelling the MCP request leaves the stream, which cancels the query (no more LLM calls, worker
killed). Tenancy is the engine's: the host's enforced filters (config ``search.filters`` / ``--filter``)
are ANDed with whatever a client passes, so a client can only narrow them.

Built on the official ``mcp`` SDK 1.x (``mcp.server.fastmcp.FastMCP``; 2.x renamed it), imported only
here, behind the ``mcp`` extra. ``deeprecall mcp`` (``interfaces/cli_mcp.py``) runs it over stdio or
streamable HTTP.

No ``from __future__ import annotations`` here: FastMCP reads the tools' annotations at runtime, and
they name a local (``Context``, ``max_top_k``).
"""

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from pydantic import Field

from deeprecall.errors import DeepRecallError, MissingDependencyError, redact
from deeprecall.events import preview
from deeprecall.vectorstores import filters as filter_language

if TYPE_CHECKING:
    from mcp.server.fastmcp import Context, FastMCP

    from deeprecall.engine.engine import DeepRecall
    from deeprecall.results import QueryResult

STORE_RESOURCE = "deeprecall://store"
MESSAGE_CHARS = 120  # a progress message is one short line
log = logging.getLogger(__name__)

FiltersArg = Annotated[dict[str, Any] | None, Field(
    description="optional metadata filter in DeepRecall's filter language, e.g. {\"year\": {\"$gte\": 2023}}; "
                "ANDed with the server's enforced filters, so it can only narrow what the server allows")]


def build_mcp_server(engine: "DeepRecall", *, name: str = "deeprecall", host: str = "127.0.0.1",
                     port: int = 8000) -> "FastMCP":
    """An MCP server (FastMCP) whose tools and resource run on ``engine``; the caller owns the engine."""
    try:
        from mcp.server.fastmcp import Context, FastMCP
        from mcp.server.fastmcp.exceptions import ToolError
    except ImportError as e:
        raise MissingDependencyError("mcp", "mcp", "the MCP server (deeprecall mcp)") from e

    server = FastMCP(name, instructions=INSTRUCTIONS, host=host, port=port, log_level="WARNING")
    max_top_k = engine.config.max_top_k

    @server.tool(description="Answer a question from the document store, with the sources the answer rests on. "
                             "Slow (several model calls); progress is reported per step.")
    async def query(question: Annotated[str, Field(min_length=1, description="the question to answer")],
                    ctx: Context,
                    filters: FiltersArg = None) -> dict[str, Any]:
        try:
            return await _run_query(engine, question, filters, ctx)
        except DeepRecallError as e:  # bad filters, a closed engine, a store that fails: the message names the fix
            raise ToolError(redact(str(e))) from None
        except Exception as e:  # a bug: its type and a redacted message (FastMCP would send str(e) unredacted)
            log.error("query tool failed: %s", type(e).__name__)
            raise ToolError(redact(f"the query failed: {type(e).__name__}: {e}")) from None

    @server.tool(description="Raw similarity search over the document store: the top_k hits with their ids, "
                             "content, metadata and scores. Fast; no model is called.")
    async def search(query: Annotated[str, Field(min_length=1, description="text to search for")],
                     top_k: Annotated[int, Field(ge=1, le=max_top_k, description="how many hits")] = 5,
                     filters: FiltersArg = None) -> dict[str, Any]:
        try:
            return await anyio.to_thread.run_sync(_search, engine, query, top_k, filters)
        except DeepRecallError as e:
            raise ToolError(redact(str(e))) from None
        except Exception as e:
            log.error("search tool failed: %s", type(e).__name__)
            raise ToolError(redact(f"the search failed: {type(e).__name__}: {e}")) from None

    @server.resource(STORE_RESOURCE, name="store", mime_type="application/json",
                     description="The document store: kind, collection, number of documents, metadata keys "
                                 "(the description the query's model gets), top_k bounds, whether the server scopes "
                                 "every search with enforced filters.")
    async def store_description() -> str:
        return json.dumps(await anyio.to_thread.run_sync(describe_store, engine), default=str)

    return server


def serve(server: "FastMCP", transport: str) -> None:
    """Run ``server`` over ``stdio`` or ``http`` (streamable HTTP at /mcp) until the client or a signal ends it."""
    if transport == "http":
        logging.getLogger("mcp.server.streamable_http").addFilter(_quiet_client_disconnect)
    server.run(transport="stdio" if transport == "stdio" else "streamable-http")


def _quiet_client_disconnect(record: logging.LogRecord) -> bool:
    """Drop mcp 1.x's error log (with a traceback) for a client that closed its session's event stream:
    that is an ordinary disconnect, and a user reading the log would take it for a fault."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, anyio.ClosedResourceError)


INSTRUCTIONS = ("DeepRecall answers questions over one document store. Use `query` for a question that needs an "
                "answer with sources (it runs a model that searches the store, several steps, with progress), "
                "`search` for raw hits, and the resource " + STORE_RESOURCE + " to see what the store holds.")


async def _run_query(engine: "DeepRecall", question: str, filters: dict[str, Any] | None,
                     ctx: "Context") -> dict[str, Any]:
    """Run the query on the engine's event stream, one progress notification per step; a client that asked
    for no progress gets the plain query (no events built, the model not streamed: ~3 ms less CPU)."""
    meta = ctx.request_context.meta
    if meta is None or meta.progressToken is None:
        return query_result(await engine.aquery(question, filters))
    steps = 0
    async with engine.astream(question, filters) as events:  # ConfigError/FilterError raise here, before it runs
        async for event in events:
            message = progress_message(event)
            if message is not None:
                steps += 1
                await ctx.report_progress(steps, None, message)
    result = events.result
    if result is None:  # cannot happen: a stream that ended without raising has its result
        raise RuntimeError("the query ended without a result")
    return query_result(result)


def progress_message(event: Any) -> str | None:
    """One short line for a step of the query (search, turn, cell, sub-call, a limit); None for the rest."""
    kind = event.type
    if kind == "search":
        found = f"{len(event.hit_ids)} hits" if event.error is None else f"failed: {event.error}"
        text = f"searched {event.query!r}: {found}"
    elif kind == "model_turn":
        text = f"turn {event.step}: {event.model} replied ({event.output_tokens} tokens, {event.seconds:.1f}s)"
    elif kind == "cell_started":
        text = f"turn {event.step}: running code cell {event.cell}"
    elif kind == "sub_call":
        text = f"sub-call to {event.model}" + (f" failed: {event.error}" if event.error else f" ({event.ms:.0f} ms)")
    elif kind == "limit":
        text = f"stopping: {event.reason}"
    else:
        return None
    return preview(" ".join(text.split()), MESSAGE_CHARS)


def query_result(result: "QueryResult") -> dict[str, Any]:
    """What the ``query`` tool returns: the answer, its sources, usage and how the query ended."""
    usage = result.usage
    return {
        "answer": result.answer,
        "sources": [_document(s.id, s.content, s.metadata, s.score) for s in result.sources],
        "grounded": result.grounded,
        "error": result.error,
        "error_message": result.error_message,
        "usage": {"root_calls": usage.root_calls, "sub_calls": usage.sub_calls, "search_calls": usage.search_calls,
                  "total_tokens": usage.total_tokens, "total_cost_usd": usage.total_cost_usd},
        "seconds": round(result.seconds, 3),
        "query_id": result.query_id,
    }


def _search(engine: "DeepRecall", query: str, top_k: int, filters: dict[str, Any] | None) -> dict[str, Any]:
    """The store's hits under the host's filters ANDed with the client's (a client can only narrow)."""
    enforced = filter_language.combine(engine.config.filters, filter_language.validate(filters))
    hits = engine.store.search(query, top_k=top_k, filters=enforced)
    return {"hits": [_document(h.id, h.content, h.metadata, h.score) for h in hits]}


def describe_store(engine: "DeepRecall") -> dict[str, Any]:
    """The store as the query's model sees it (``context["store"]``), plus the search bounds."""
    return {**engine.store.describe(), "default_top_k": engine.config.top_k, "max_top_k": engine.config.max_top_k,
            "scoped_by_host": bool(engine.config.filters)}


def _document(doc_id: str, content: str, metadata: dict[str, Any], score: float) -> dict[str, Any]:
    title = metadata.get("title") or metadata.get("source") or metadata.get("path")
    return {"id": doc_id, "title": title, "score": score, "metadata": dict(metadata), "content": content}
