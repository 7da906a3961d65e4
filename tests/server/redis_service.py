"""The real ``redis-server`` the shared-counter and cache tests run against (``scripts/services.sh redis``).

``require_redis_url()`` skips without one, and fails instead under ``DEEPRECALL_REQUIRE_REDIS=1`` (``make
test``), like the other required tiers: a CI machine that lost Redis must not pass these tests by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest

REQUIRE_ENV = "DEEPRECALL_REQUIRE_REDIS"
URL_ENV = "DEEPRECALL_TEST_REDIS_URL"


def require_redis_url() -> str:
    """The test Redis's URL, checked to answer PING; skip (or under DEEPRECALL_REQUIRE_REDIS=1, fail) otherwise."""
    url = os.environ.get(URL_ENV)
    why = f"{URL_ENV} is not set (eval \"$(bash scripts/services.sh env)\" after scripts/services.sh redis)"
    if url:
        why = _unreachable(url)
        if not why:
            return url
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
    pytest.skip(f"REDIS NOT RUN: {why}")


def _unreachable(url: str) -> str:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(16).startswith(b"+PONG"):
                return ""
    except OSError as e:
        return f"no Redis answers at {url}: {e}"
    return f"the server at {url} did not answer PING with PONG"


def fresh_prefix() -> str:
    """A key prefix no other test uses, so tests share one Redis without seeing each other's counters."""
    return f"dr-test-{uuid.uuid4().hex[:12]}"
