"""``create_app(engine, settings)``: the ASGI app ``deeprecall serve`` runs on uvicorn.

    POST /v1/chat/completions   a query (deeprecall/server/chat.py): whole, or streamed live as SSE
    GET  /v1/models             the one model this server answers as (``server.model_name``)
    GET  /healthz               store, sandbox and provider checks; 200 when all pass, else 503
    GET  /metrics               Prometheus text, from the engine's events (deeprecall/server/metrics.py)
    GET  /openapi.json          the API's OpenAPI 3.1 description (deeprecall/server/openapi.py)

Why Starlette and not FastAPI: the app is four routes whose wire shapes are OpenAI's, not ours, so
FastAPI's model-driven validation would have to be overridden to give OpenAI-shaped errors, and its
request parsing reads the whole body before we can refuse an oversized or trickling one. Starlette is the
layer FastAPI sits on; it is already installed with the ``mcp`` SDK, adds no pydantic pass per request,
and leaves the body, the stream and the errors in our hands.

One engine per process. Shutdown (SIGTERM/SIGINT to uvicorn): no new connections; queries in flight get
``server.shutdown_grace_seconds`` to finish (uvicorn's graceful timeout), then their tasks are cancelled,
which cancels the queries; then ``engine.close()`` kills every worker and closes the models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deeprecall.server.answer_cache import build_cached_answers
from deeprecall.server.chat import Chat, CostMeter, error_response
from deeprecall.server.health import health_report
from deeprecall.server.limits import Counters
from deeprecall.server.metrics import CONTENT_TYPE, QueryMetrics, ResponseCounter
from deeprecall.server.openapi import openapi_document
from deeprecall.server.redis_limits import build_counters
from deeprecall.server.settings import ServerSettings

log = logging.getLogger("deeprecall.server")


def create_app(engine: Any, settings: ServerSettings, *, counters: Counters | None = None,
               close_engine: bool = True, warm: bool = True) -> Starlette:
    """The app serving ``engine`` (a ``DeepRecall``; the app closes it at shutdown unless ``close_engine``
    is False). ``counters`` default to Redis ones when ``server.redis_url`` is set, else in-process ones."""
    counters = counters if counters is not None else build_counters(settings.redis_url)
    meter = CostMeter()
    metrics = QueryMetrics(pool_stats=getattr(engine, "sandbox_pool", None))
    answers = build_cached_answers(settings.cache, settings.redis_url, engine, metrics.count_cache)
    unsubscribers = [engine.subscribe(sink) for sink in (meter, metrics, answers) if sink is not None]
    chat = Chat(engine, settings, counters, meter, answers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm:  # workers and the store's description ready before the first request, not during it
            try:
                await asyncio.to_thread(engine.warm)
            except Exception as e:  # /healthz reports it; queries start their own workers
                log.warning("warming the engine failed: %s", type(e).__name__)
        try:
            yield
        finally:
            await chat.drain()
            for unsubscribe in unsubscribers:
                unsubscribe()
            if answers is not None:
                await answers.close()
            if close_engine:
                await asyncio.to_thread(engine.close)
            await counters.close()

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "deeprecall"}]})

    async def healthz(request: Request) -> Response:
        report = await health_report(engine)
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(settings))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route {request.method} {request.url.path}; see /openapi.json",
                              "invalid_request_error", "not_found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}",
                              "invalid_request_error", "method_not_allowed")

    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("unhandled %s on %s", type(exc).__name__, request.url.path)
        return error_response(500, "internal server error; see the server log", "server_error", "internal_error")

    routes = [Route("/v1/chat/completions", chat.handle, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", metrics_text, methods=["GET"]),
              Route("/openapi.json", openapi, methods=["GET"])]
    counted = Middleware(ResponseCounter, metrics=metrics, routes=[r.path for r in routes])
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[counted],
                    exception_handlers={404: not_found, 405: not_allowed, Exception: crashed})
    app.state.engine, app.state.settings, app.state.counters = engine, settings, counters
    return app
