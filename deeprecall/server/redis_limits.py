"""``Counters`` in Redis, shared by every server process that points at the same Redis.

Why Redis and Lua: several processes behind one port (uvicorn workers, replicas) must see one count per
API key. Each check-and-admit is one Lua script, so it is atomic on the Redis server: two processes can
never both take the last slot. Time is Redis's own clock (``TIME`` in the script), so replicas whose
clocks drift still agree on the minute window and the UTC day.

Keys (``{key_id}`` is a hash tag, so one key's counters sit on one Redis Cluster slot)::

    <prefix>:{key_id}:rate          sorted set: one member per admitted request, scored by its time (ms)
    <prefix>:{key_id}:slots         sorted set: one member per running request, scored by when it expires
    <prefix>:{key_id}:cost:<day>    float: USD spent on that UTC day (days since 1970), kept two days

A running request's slot expires ``slot_ttl`` seconds after its last heartbeat: this process refreshes
its slots every ``slot_ttl / 3`` seconds while they run, so a process that dies (OOM, SIGKILL, a lost
node) gives its slots back within ``slot_ttl`` instead of holding them forever.

Redis unreachable: ``acquire`` raises ``CountersUnavailable`` (the server answers 503). Limits fail
closed: a cost cap that cannot be checked is not waived.

``redis`` (redis-py) is imported here only, lazily: ``pip install 'deeprecall[redis]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from deeprecall.errors import ConfigError, DeepRecallError, MissingDependencyError
from deeprecall.server.limits import Counters, InProcessCounters, KeyLimits, LimitExceeded

log = logging.getLogger("deeprecall.server")

SLOT_TTL_SECONDS = 30.0
UNLIMITED = -1

# KEYS: rate, slots, cost base. ARGV: rpm, max_concurrent, daily cap (-1 = none), token, slot ttl (ms).
# Returns {0} when admitted, else {reason (1 rate, 2 concurrency, 3 cost), retry_after_ms, detail}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, conc, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, ttl = ARGV[4], tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
if rpm >= 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = 60000
    if oldest[2] then wait = tonumber(oldest[2]) + 60000 - now end
    return {1, wait, tostring(n)}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if conc >= 0 then
  local running = redis.call('ZCARD', KEYS[2])
  if running >= conc then return {2, 1000, tostring(running)} end
end
if cap >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[3] .. ':' .. math.floor(now / 86400000)) or '0')
  if spent >= cap then return {3, 86400000 - now % 86400000, tostring(spent)} end
end
redis.call('ZADD', KEYS[1], now, token)
redis.call('PEXPIRE', KEYS[1], 61000)
redis.call('ZADD', KEYS[2], now + ttl, token)
redis.call('PEXPIRE', KEYS[2], ttl + 1000)
return {0, 0, ''}
"""

# KEYS: slots, cost base. ARGV: token, cost (USD, as text).
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local cost = tonumber(ARGV[2])
if cost > 0 then
  local t = redis.call('TIME')
  local key = KEYS[2] .. ':' .. math.floor(tonumber(t[1]) / 86400)
  redis.call('INCRBYFLOAT', key, ARGV[2])
  redis.call('EXPIRE', key, 172800)
end
return 0
"""

# KEYS: slots. ARGV: ttl (ms), tokens... Pushes the expiry of slots that still exist (XX: a slot that already
# expired stays gone; another request may hold it now).
_HEARTBEAT = """
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + 1000)
return 0
"""

_REASONS = {1: "rate_limit", 2: "concurrency", 3: "daily_cost"}


class CountersUnavailable(DeepRecallError):
    """The shared counters (Redis) cannot be reached; the request is refused (503), not admitted unchecked."""


def redis_client(url: str) -> Any:
    """An asyncio Redis client for ``server.redis_url``; a URL of the wrong shape is a ``ConfigError``
    (never quoted: it may hold a password)."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("server.redis_url must be a redis://, rediss:// or unix:// URL, "
                          "e.g. redis://127.0.0.1:6379/0 (or redis://:PASSWORD@host:6379/0)")
    return _redis_asyncio().from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)


def _redis_asyncio() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError as e:
        raise MissingDependencyError("redis", "redis", "server.redis_url (shared limits and cache)") from e
    return redis_asyncio


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


def build_counters(redis_url: str | None, *, prefix: str = "deeprecall") -> Counters:
    """``RedisCounters`` when ``server.redis_url`` is set, else ``InProcessCounters`` (one process only)."""
    return RedisCounters(redis_url, prefix=prefix) if redis_url else InProcessCounters()


class RedisCounters:
    """The ``Counters`` Protocol on a Redis server shared by several processes (see the module doc)."""

    def __init__(self, url: str, *, prefix: str = "deeprecall", slot_ttl: float = SLOT_TTL_SECONDS) -> None:
        self._client = redis_client(url)
        self._prefix = prefix
        self._ttl_ms = max(int(slot_ttl * 1000), 100)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._heartbeat = self._client.register_script(_HEARTBEAT)
        self._held: dict[str, list[str]] = {}  # key_id -> this process's running slot tokens
        self._beating: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RedisCounters(prefix={self._prefix!r})"  # the URL may hold a password

    def _key(self, key_id: str, what: str) -> str:
        return f"{self._prefix}:{{{key_id}}}:{what}"

    async def acquire(self, key_id: str, limits: KeyLimits) -> None:
        token = uuid.uuid4().hex
        args = [_or_unlimited(limits.requests_per_minute), _or_unlimited(limits.max_concurrent),
                _or_unlimited(limits.daily_cost_usd), token, self._ttl_ms]
        keys = [self._key(key_id, "rate"), self._key(key_id, "slots"), self._key(key_id, "cost")]
        reply = await self._call(self._acquire, keys, args)
        code, wait_ms, detail = int(reply[0]), int(reply[1]), _text(reply[2])
        if code:
            raise _refusal(_REASONS[code], limits, max(wait_ms, 0) / 1000.0, detail)
        self._held.setdefault(key_id, []).append(token)
        self._ensure_heartbeat()

    async def release(self, key_id: str, cost_usd: float) -> None:
        tokens = self._held.get(key_id)
        if not tokens:
            log.warning("release() without a matching acquire() for a key; ignored")
            return
        token = tokens.pop()
        if not tokens:
            del self._held[key_id]
        await self._call(self._release, [self._key(key_id, "slots"), self._key(key_id, "cost")],
                         [token, repr(float(max(cost_usd, 0.0)))])

    async def spent_today(self, key_id: str) -> float:
        """The key's cost so far today (UTC, by Redis's clock): for /metrics and the tests."""
        now_s = int((await self._client.time())[0])
        value = await self._client.get(f"{self._key(key_id, 'cost')}:{now_s // 86400}")
        return float(value or 0.0)

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beating
            self._beating = None
        await self._client.aclose()

    def _ensure_heartbeat(self) -> None:
        if self._beating is None or self._beating.done():
            self._beating = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        """Keep this process's running slots alive; a process that dies stops, and its slots expire."""
        while self._held:
            await asyncio.sleep(self._ttl_ms / 3000.0)
            for key_id, tokens in list(self._held.items()):
                if tokens:
                    try:
                        await self._heartbeat(keys=[self._key(key_id, "slots")], args=[self._ttl_ms, *tokens])
                    except Exception as e:  # Redis away for a moment: the next beat tries again
                        log.warning("concurrency slot heartbeat failed: %s", type(e).__name__)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except _redis_error() as e:
            raise CountersUnavailable(f"the shared limit counters in Redis are unreachable ({type(e).__name__}); "
                                      "check server.redis_url and that Redis is running") from e


def _or_unlimited(value: float | None) -> float:
    return UNLIMITED if value is None else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _refusal(reason: str, limits: KeyLimits, retry_after: float, detail: str) -> LimitExceeded:
    if reason == "rate_limit":
        message = f"rate limit of {limits.requests_per_minute} requests per minute reached for this key"
    elif reason == "concurrency":
        message = (f"this key already has {detail} requests running (limit {limits.max_concurrent}); "
                   "retry when one ends")
    else:
        message = (f"this key's daily cost cap of ${limits.daily_cost_usd:.2f} is spent "
                   f"(${float(detail):.4f} today, UTC)")
    return LimitExceeded(reason, message, retry_after)
