"""The server's optional answer cache: the same question, over the same documents, answered the same way.

Off by default (``server.cache.enabled``). A cached answer is served only when all of these are equal:

- the question (exact text, outer whitespace stripped);
- the EFFECTIVE filters: the API key's enforced (tenant) filters ANDed with the request's, as the query would
  run with them. Two tenants with different filters never share an entry, and a request that names another
  tenant's filter only narrows its own (tenant AND other != other), so it cannot reach the other's entry;
- the config (``config_fingerprint``: a hash of every setting, secrets left out, ``trace_dir`` ignored);
- the store's ``fingerprint()`` (Chroma: collection id, count and a revision each write records). A store
  without one (``None``) is never cached: an answer could outlive the documents it came from;
- anything else the server passes that changes the answer (the requested model, ``top_k``).

The key is a SHA-256 of those values; nothing readable about a question or a tenant is stored in a key name.
Only answers that ended without an error are kept, for ``ttl_seconds`` (default 300), which also bounds how
long a change the fingerprint cannot see (an in-place write by another tool) goes unseen.

Where entries live: this process (``InProcessAnswerCache``, an LRU of ``max_entries``), or Redis when
``server.redis_url`` is set (``RedisAnswerCache``), shared by every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from deeprecall.config import DeepRecallConfig, redact_kwargs
from deeprecall.events import AnswerEvent
from deeprecall.vectorstores import filters as filter_language
from deeprecall.vectorstores.base import VectorStore

DEFAULT_TTL_SECONDS = 300.0
DEFAULT_MAX_ENTRIES = 1024
_IGNORED_SETTINGS = ("trace_dir",)  # where traces go changes no answer


@runtime_checkable
class AnswerCache(Protocol):
    """Where cached answers live: ``get`` a JSON-able dict by key, ``put`` one for ``ttl`` seconds."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None: ...

    async def close(self) -> None: ...


class InProcessAnswerCache:
    """An LRU in this process's memory (each replica keeps its own)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._max = max(max_entries, 1)
        self._lock = threading.Lock()

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    async def close(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisAnswerCache:
    """Entries in Redis (``SET key value EX ttl``), shared by every replica that points at it."""

    def __init__(self, url: str, *, prefix: str = "deeprecall") -> None:
        from deeprecall.server.redis_limits import redis_client

        self._client = redis_client(url)
        self._prefix = f"{prefix}:answer:"

    def __repr__(self) -> str:
        return f"RedisAnswerCache(prefix={self._prefix!r})"

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self._client.get(self._prefix + key)
        except Exception:  # a cache that cannot answer is a miss, never an error for the user
            return None
        return None if raw is None else dict(json.loads(raw))

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        try:
            await self._client.set(self._prefix + key, json.dumps(value), px=max(int(ttl * 1000), 1))
        except Exception:
            return None

    async def close(self) -> None:
        await self._client.aclose()


def build_answer_cache(redis_url: str | None, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                       prefix: str = "deeprecall") -> AnswerCache:
    """Redis when ``server.redis_url`` is set (shared by replicas), else this process's memory."""
    return RedisAnswerCache(redis_url, prefix=prefix) if redis_url else InProcessAnswerCache(max_entries)


def config_fingerprint(config: DeepRecallConfig) -> str:
    """A stable hash of the settings that can change an answer (all of them but ``trace_dir``; keys and
    tokens are left out, so rotating a key keeps the cache)."""
    values = config.model_dump(mode="json", exclude=set(_IGNORED_SETTINGS))
    values["backend_kwargs"] = redact_kwargs(values["backend_kwargs"])
    values["other_backend_kwargs"] = [redact_kwargs(k) for k in values["other_backend_kwargs"]]
    values["environment_kwargs"] = redact_kwargs(values["environment_kwargs"])
    return _digest(values)


def answer_key(question: str, effective_filters: dict[str, Any] | None, config_hash: str, store_fingerprint: str,
               extra: dict[str, Any] | None = None) -> str:
    """The cache key: SHA-256 over the question, the effective filters, the config and the store's state."""
    return _digest({"question": question.strip(), "filters": effective_filters, "config": config_hash,
                    "store": store_fingerprint, "extra": extra or {}})


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheLookup:
    """``key`` is None when this request cannot be cached (its store has no fingerprint); ``hit`` is the
    cached answer as an ``AnswerEvent`` (a new ``query_id``, empty usage: nothing was spent)."""

    key: str | None
    hit: AnswerEvent | None = None


class CachedAnswers:
    """What the server calls: ``lookup`` before a query; ``expect(query_id, key)`` once the query has an id.

    It is also an engine-wide subscriber: the ``AnswerEvent`` of an expected query that ended without an
    error is put in the cache (read from the one event stream, like every other watcher of a query).
    ``tenant_filters`` are the API key's enforced filters, ``request_filters`` the request's; the key uses
    them combined, as the engine will enforce them (the config's own filters are in the config hash).
    """

    wants_deltas = False

    def __init__(self, cache: AnswerCache, config: DeepRecallConfig, store: VectorStore, *,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS, on_lookup: Callable[[str], None] | None = None) -> None:
        self.cache = cache
        self._config_hash = config_fingerprint(config)
        self._store = store
        self._ttl = ttl_seconds
        self._on_lookup = on_lookup or (lambda result: None)
        self._expected: dict[str, tuple[str, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()

    async def lookup(self, question: str, tenant_filters: dict[str, Any] | None,
                     request_filters: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> CacheLookup:
        fingerprint = await asyncio.to_thread(self._fingerprint)
        if not fingerprint:
            self._on_lookup("uncacheable")
            return CacheLookup(None)
        effective = filter_language.combine(filter_language.validate(tenant_filters),
                                            filter_language.validate(request_filters))
        key = answer_key(question, effective, self._config_hash, str(fingerprint), extra)
        entry = await self.cache.get(key)
        self._on_lookup("miss" if entry is None else "hit")
        return CacheLookup(key, None if entry is None else _answer_from(entry))

    def _fingerprint(self) -> str | None:
        """The store's fingerprint; None (uncacheable) when it has none or reading it fails."""
        fingerprint_of = getattr(self._store, "fingerprint", None)
        try:
            return fingerprint_of() if callable(fingerprint_of) else None
        except Exception:  # a store that cannot say what it holds now is not cached, never an error
            return None

    def expect(self, query_id: str, key: str | None) -> None:
        """Keep query ``query_id``'s answer under ``key`` when it ends well. Call it on the event loop."""
        if key is not None:
            with self._lock:
                self._expected[query_id] = (key, asyncio.get_running_loop())

    def __call__(self, event: Any) -> None:
        if event.type != "answer":
            return
        with self._lock:
            expected = self._expected.pop(event.query_id, None)
        if expected is None or event.error is not None:
            return
        key, loop = expected
        entry = {"answer": event.answer, "grounded": event.grounded, "sources": list(event.sources),
                 "query_id": event.query_id}
        with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nothing to keep
            asyncio.run_coroutine_threadsafe(self.cache.put(key, entry, self._ttl), loop)

    async def close(self) -> None:
        await self.cache.close()


def _answer_from(entry: dict[str, Any]) -> AnswerEvent:
    """A hit as the ``AnswerEvent`` the server formats: the original answer and sources, no usage."""
    return AnswerEvent.model_construct(
        type="answer", query_id=uuid.uuid4().hex, t=0.0, step=0, answer=str(entry["answer"]),
        sources=list(entry.get("sources", [])), grounded=bool(entry.get("grounded")), usage={}, seconds=0.0,
        error=None, error_message=None, result=None)


class AnswerCacheSettings(BaseModel):
    """``server.cache`` in the config file: off unless ``enabled``; in Redis when ``server.redis_url`` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    ttl_seconds: float = Field(default=DEFAULT_TTL_SECONDS, gt=0)
    max_entries: int = Field(default=DEFAULT_MAX_ENTRIES, ge=1)  # per process, for the in-process cache


def build_cached_answers(settings: AnswerCacheSettings, redis_url: str | None, engine: Any,
                         on_lookup: Callable[[str], None] | None = None) -> CachedAnswers | None:
    """The server's cache per its settings, or None when it is off (the default)."""
    if not settings.enabled:
        return None
    cache = build_answer_cache(redis_url, max_entries=settings.max_entries)
    return CachedAnswers(cache, engine.config, engine.store, ttl_seconds=settings.ttl_seconds, on_lookup=on_lookup)
