"""``GET /healthz``: can this process answer a query now? The store, the sandbox and the root model.

Each check is bounded by ``CHECK_SECONDS`` and run off the event loop (stores and sandboxes block).
The sandbox check is the engine's own ``warm()``: it starts a worker if none is idle, which is what
``deeprecall doctor`` checks by hand, done the way a query will do it. The provider check asks an
OpenAI-compatible ``base_url`` for ``/models`` (no tokens spent); other backends report their name only.
Error texts are cut and never carry keys (the engine's config hides them).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

CHECK_SECONDS = 5.0


async def _check(fn: Any) -> dict[str, Any]:
    start = time.monotonic()
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(fn), CHECK_SECONDS)
        return {"ok": True, **(detail or {}), "ms": round((time.monotonic() - start) * 1000, 1)}
    except asyncio.TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_SECONDS:g} s"}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}


def _store(engine: Any) -> dict[str, Any]:
    return {"documents": engine.store.count()}


def _sandbox(engine: Any) -> dict[str, Any]:
    engine.warm()
    sandbox = engine.sandbox
    return {"environment": engine.config.environment, "isolation": getattr(sandbox, "mode", None)}


def _provider(engine: Any) -> dict[str, Any]:
    kwargs = engine.config.backend_kwargs
    detail = {"backend": engine.config.backend, "model": kwargs.get("model_name")}
    base_url = kwargs.get("base_url")
    if isinstance(base_url, str) and base_url.startswith(("http://", "https://")):
        response = httpx.get(base_url.rstrip("/") + "/models", timeout=CHECK_SECONDS - 1)
        if response.status_code >= 500:
            raise RuntimeError(f"{base_url} answered {response.status_code}")
        detail["reachable"] = True
    return detail


async def health_report(engine: Any) -> dict[str, Any]:
    """``{"status": "ok"|"failing", "checks": {"store": ..., "sandbox": ..., "provider": ...}}``."""
    store, sandbox, provider = await asyncio.gather(_check(lambda: _store(engine)), _check(lambda: _sandbox(engine)),
                                                    _check(lambda: _provider(engine)))
    checks = {"store": store, "sandbox": sandbox, "provider": provider}
    return {"status": "ok" if all(c["ok"] for c in checks.values()) else "failing", "checks": checks}
