"""``POST /v1/chat/completions``: one query per request, answered whole or streamed live as OpenAI chunks.

Order of checks, cheapest first, so a refused request costs nothing: the key (401), the body's size and
arrival time (413 / 408), its shape (400), then the key's counters (429). Only then does a query start.

Both forms run the query through ``engine.astream()``: its events become the stream's chunks, its
``query_id`` names the response, and leaving the iteration (the client hung up, the server's timeout, the
server shutting down) cancels the query: no LLM call starts after it and its worker is killed.

What a cancelled query spent still counts against the key's daily cap: an engine-wide subscriber
(``CostMeter``) reads the cost from the query's closing ``AnswerEvent``, which arrives after the cancel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from deeprecall.errors import ConfigError
from deeprecall.server import openai_wire as wire
from deeprecall.server.answer_cache import CachedAnswers
from deeprecall.server.auth import authenticate, bearer_token
from deeprecall.server.limits import Counters, LimitExceeded
from deeprecall.server.settings import ApiKeySettings, ServerSettings
from deeprecall.vectorstores import filters as filter_language

log = logging.getLogger("deeprecall.server")
COST_WAIT_SECONDS = 10.0  # how long a cancelled query's bill is waited for before its slot is freed anyway
COST_KEEP_SECONDS = 6 * COST_WAIT_SECONDS  # how long a cost nobody collected is kept


def error_response(status: int, message: str, type_: str, code: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(wire.error_body(message, type_, code, param), status_code=status, headers=headers)


class CostMeter:
    """Engine-wide subscriber: the cost of every finished top query, by ``query_id``, for the daily caps.
    Needs no model deltas (so alone it never makes a model stream).

    Only what a request will collect is kept: a child query's (rlm_query, max_depth > 1) cost is already in
    its top query's usage and nobody waits for its id, and an answer that comes after its request stopped
    waiting (``COST_WAIT_SECONDS``) is dropped ``keep_seconds`` later; either kept would grow a long-running
    server by one entry per query."""

    wants_deltas = False

    def __init__(self, keep_seconds: float = COST_KEEP_SECONDS) -> None:
        self._lock = threading.Lock()
        self._costs: dict[str, tuple[float, float]] = {}  # query_id -> (cost, recorded at), oldest first
        self.keep_seconds = keep_seconds

    def __call__(self, event: Any) -> None:
        if event.type == "answer" and getattr(event, "parent_query_id", None) is None:
            now = time.monotonic()
            with self._lock:
                while self._costs:  # oldest first (insertion order): stops at the first one still fresh
                    oldest = next(iter(self._costs))
                    if now - self._costs[oldest][1] < self.keep_seconds:
                        break
                    del self._costs[oldest]
                self._costs[event.query_id] = (float(event.usage.get("total_cost_usd") or 0.0), now)

    async def wait(self, query_id: str, timeout: float) -> float:
        """The query's cost once its answer event came, or 0.0 after ``timeout``; forgets it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if query_id in self._costs:
                    return self._costs.pop(query_id)[0]
            if time.monotonic() > deadline:
                return 0.0
            await asyncio.sleep(0.05)


class Chat:
    """The endpoint, bound to one engine, its settings and the key counters."""

    def __init__(self, engine: Any, settings: ServerSettings, counters: Counters, meter: CostMeter,
                 answers: CachedAnswers | None = None) -> None:
        self.engine = engine
        self.answers = answers  # the answer cache, None when off
        self.settings = settings
        self.counters = counters
        self.meter = meter
        self._releases: set[asyncio.Task[None]] = set()

    async def handle(self, request: Request) -> Response:
        key = authenticate(self.settings, bearer_token(request.headers.get("authorization")))
        if key is None:
            missing = bearer_token(request.headers.get("authorization")) is None
            return error_response(401, "no API key: send Authorization: Bearer <key>" if missing else
                                  "the API key is not valid", "invalid_request_error",
                                  "missing_api_key" if missing else "invalid_api_key")
        try:
            asked = wire.parse_chat_request(await self._body(request), max_messages=self.settings.max_messages,
                                            max_question_chars=self.settings.max_question_chars)
            filters = filter_language.combine(key.filters, filter_language.validate(asked.filters))
        except wire.RequestInvalid as e:
            return error_response(e.status, str(e), "invalid_request_error", e.code, e.param)
        except ConfigError as e:  # a bad filter (FilterError) names its problem
            return error_response(400, str(e), "invalid_request_error", "invalid_filters", "deeprecall.filters")
        try:
            await self.counters.acquire(key.name, key.limits)
        except LimitExceeded as e:
            return error_response(429, str(e), "rate_limit_exceeded" if e.reason == "rate_limit" else "insufficient_quota",
                                  e.reason, headers={"Retry-After": str(max(1, round(e.retry_after)))})
        except Exception as e:  # the counters cannot be reached (Redis down): limits fail closed
            log.error("key counters unavailable: %s", type(e).__name__)
            return error_response(503, "the server cannot check this key's limits right now; retry shortly",
                                  "server_error", "counters_unavailable")
        model = self.settings.model_name
        lookup = (None if self.answers is None else  # keyed by the tenant's AND the request's filters
                  await self.answers.lookup(asked.question, key.filters, asked.filters, {"top_k": asked.top_k}))
        if lookup is not None and lookup.hit is not None:
            self._release(key, None, lookup.hit)  # a hit spends nothing
            return self._cached(lookup.hit, model, asked.stream, asked.include_usage)
        try:
            stream = self.engine.astream(asked.question, filters, top_k=asked.top_k, deltas=False)  # steps, not tokens
        except ConfigError as e:  # top_k out of range, a closed engine
            self._release(key, None, None)
            return error_response(400, str(e), "invalid_request_error", "invalid_request")
        except Exception as e:  # the store cannot describe itself (down): the slot must not leak with it
            self._release(key, None, None)
            log.error("query could not start: %s", type(e).__name__)
            return error_response(503, f"the query could not start ({type(e).__name__}); see /healthz",
                                  "server_error", "query_not_started")
        if lookup is not None and self.answers is not None:
            self.answers.expect(stream.query_id, lookup.key)
        if asked.stream:
            return EventSourceResponse(self._chunks(stream, key, model, asked.include_usage))
        return await self._whole(stream, key, model, request.receive)

    def _cached(self, hit: Any, model: str, stream: bool, include_usage: bool) -> Response:
        """A cached answer, whole or as a stream, marked ``deeprecall.cached: true``."""
        if not stream:
            body = wire.completion(hit, model)
            body["deeprecall"]["cached"] = True
            return JSONResponse(body)

        async def chunks() -> AsyncIterator[bytes]:
            writer = wire.ChunkWriter(hit.query_id, model)
            yield sse(writer.role())
            for chunk in writer.answer(hit):
                if "deeprecall" in chunk:
                    chunk["deeprecall"]["cached"] = True
                yield sse(chunk)
            if include_usage:
                yield sse(writer.usage(hit))
            yield b"data: [DONE]\n\n"

        return EventSourceResponse(chunks())

    async def _body(self, request: Request) -> Any:
        """The JSON body, refused when too large (413) or not fully sent within the body timeout (408)."""
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise wire.RequestInvalid(f"the body is {length} bytes; this server accepts at most {limit}",
                                      status=413, code="body_too_large")

        async def read() -> bytes:
            parts, size = [], 0
            async for part in request.stream():
                size += len(part)
                if size > limit:
                    raise wire.RequestInvalid(f"the body is over {limit} bytes, the most this server accepts",
                                              status=413, code="body_too_large")
                parts.append(part)
            return b"".join(parts)

        try:
            raw = await asyncio.wait_for(read(), self.settings.body_timeout_seconds)
        except asyncio.TimeoutError:
            raise wire.RequestInvalid(f"the request body did not arrive within {self.settings.body_timeout_seconds:g} s",
                                      status=408, code="body_timeout") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise wire.RequestInvalid("the body is not valid JSON") from None

    async def _whole(self, stream: Any, key: ApiKeySettings, model: str, receive: Receive) -> Response:
        """Run the query to its end; a client that hangs up first cancels it."""
        answer: Any = None
        left = False
        consume = asyncio.ensure_future(_last_event(stream))
        hangup = asyncio.ensure_future(_disconnected(receive))
        try:
            done, _ = await asyncio.wait({consume, hangup}, timeout=self.settings.query_timeout_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            left = hangup in done and consume not in done
            if consume in done:
                answer = consume.result()
        except Exception as e:
            log.error("query %s failed: %s", stream.query_id, type(e).__name__)
            return error_response(500, f"the query failed ({type(e).__name__}); see the server log",
                                  "server_error", "query_failed")
        finally:
            for task in (consume, hangup):
                task.cancel()
            self._release(key, stream.query_id, answer)
        if left:  # nobody will read this; nginx's 499 keeps /metrics honest
            return error_response(499, "the client closed the request; its query was cancelled",
                                  "invalid_request_error", "client_closed_request")
        if answer is None:
            return error_response(504, f"the query did not finish within {self.settings.query_timeout_seconds:g} s "
                                  "and was cancelled", "server_error", "query_timeout")
        return JSONResponse(wire.completion(answer, model))

    async def _chunks(self, stream: Any, key: ApiKeySettings, model: str, include_usage: bool) -> AsyncIterator[bytes]:
        """The SSE body: the role, each step as reasoning, the answer, the last chunk, usage, ``[DONE]``.
        A step can take minutes (a long cell); an SSE comment every ``heartbeat_seconds`` of silence keeps
        proxies from closing the connection as idle (clients skip comments)."""
        writer = wire.ChunkWriter(stream.query_id, model)
        answer: Any = None
        deadline = time.monotonic() + self.settings.query_timeout_seconds
        waiting: asyncio.Future[Any] | None = None
        try:
            yield sse(writer.role())
            while True:
                waiting = waiting or asyncio.ensure_future(stream.__anext__())
                left = deadline - time.monotonic()
                await asyncio.wait({waiting}, timeout=max(min(left, self.settings.heartbeat_seconds), 0.0))
                if not waiting.done():
                    if left > self.settings.heartbeat_seconds:
                        yield b": keep-alive\n\n"
                        continue
                    await stream.aclose()
                    yield sse(writer.chunk({}, "length", deeprecall={
                        "query_id": stream.query_id, "error": "query_timeout",
                        "error_message": f"the query did not finish within {self.settings.query_timeout_seconds:g} s"}))
                    break
                try:
                    event = waiting.result()
                except StopAsyncIteration:
                    break
                waiting = None
                if event.type == "answer" and event.parent_query_id is None:  # not a child query's (rlm_query)
                    answer = event
                    for chunk in writer.answer(event):
                        yield sse(chunk)
                elif (step := writer.step(event)) is not None:
                    yield sse(step)
            if answer is not None and include_usage:
                yield sse(writer.usage(answer))
            yield b"data: [DONE]\n\n"
        except Exception as e:  # the query raised after its answer event (error="exception"): the stream still ends
            log.error("query %s failed: %s", stream.query_id, type(e).__name__)
            yield b"data: [DONE]\n\n"
        finally:
            if waiting is not None:
                waiting.cancel()
            await stream.aclose()
            self._release(key, stream.query_id, answer)

    def _release(self, key: ApiKeySettings, query_id: str | None, answer: Any) -> None:
        """Free the key's slot and bill it, in a task of its own: it may have to wait for a cancelled
        query's answer event, and must run even when the caller is being cancelled."""
        async def release() -> None:
            if answer is not None:
                cost = float(answer.usage.get("total_cost_usd") or 0.0)
                if query_id is not None:
                    await self.meter.wait(query_id, 0)  # forget the meter's copy
            else:
                cost = await self.meter.wait(query_id, COST_WAIT_SECONDS) if query_id is not None else 0.0
            try:
                await self.counters.release(key.name, cost)
            except Exception as e:
                log.error("could not release key %s's slot: %s", key.name, type(e).__name__)

        task = asyncio.get_running_loop().create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def drain(self) -> None:
        """Wait for the pending releases (at shutdown, after the queries ended)."""
        if self._releases:
            await asyncio.wait(set(self._releases), timeout=COST_WAIT_SECONDS)


async def _last_event(stream: Any) -> Any:
    """Consume a query's events; its ``AnswerEvent`` (the last one)."""
    answer = None
    async with stream:
        async for event in stream:
            if event.type == "answer" and event.parent_query_id is None:  # not a child query's (rlm_query)
                answer = event
    return answer


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the request body was read before this is called)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), default=str).encode() + b"\n\n"


class EventSourceResponse(Response):
    """Server-sent events from an async iterator of encoded events, ended at once when the client hangs up.

    Why not Starlette's ``StreamingResponse``: under ASGI 2.4 (uvicorn) it notices a gone client only
    when a write fails, and a query waiting on its model writes nothing for seconds, so the query would
    run on, spending, for nobody. Here a task waits for ``http.disconnect`` and cancels the body."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes]) -> None:  # not Response.__init__: it would send Content-Length: 0
        self.status_code = 200
        self.background = None
        self.events = body
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.ensure_future(self._pump(send))
        hangup = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({pump, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, hangup):
                task.cancel()
            await asyncio.gather(pump, hangup, return_exceptions=True)
            await _close(self.events)

    async def _pump(self, send: Send) -> None:
        try:
            async for data in self.events:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass


async def _close(events: AsyncIterator[bytes]) -> None:
    closer: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if closer is not None:
        await closer()
