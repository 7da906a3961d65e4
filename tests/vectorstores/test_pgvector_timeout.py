"""PgVectorStore's client-side deadline without a server: the watchdog that shuts a hung call's socket, and the
``timeout`` setting's validation. (A real hung PostgreSQL, SIGSTOPped mid-query: tests/faults/test_store_faults.py.)"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from deeprecall.errors import ConfigError
from deeprecall.vectorstores.pgvector import _WATCHDOG, PgVectorStore


def test_watchdog_shuts_a_blocked_socket_at_its_deadline() -> None:
    client, server = socket.socketpair()
    with client, server:
        watch = _WATCHDOG.arm(client.fileno(), 0.3)
        start = time.monotonic()
        got = client.recv(1)  # the peer never writes: only the watchdog ends this wait
        took = time.monotonic() - start
        assert got == b"" and 0.25 <= took < 3, took
        assert _WATCHDOG.disarm(watch) is True
        assert _WATCHDOG.disarm(watch) is True  # idempotent


def test_watchdog_leaves_a_call_that_ended_in_time_alone() -> None:
    (hung, hung_peer), (done, done_peer) = socket.socketpair(), socket.socketpair()
    with hung, hung_peer, done, done_peer:
        first = _WATCHDOG.arm(hung.fileno(), 0.2)
        ended = _WATCHDOG.arm(done.fileno(), 0.2)
        assert _WATCHDOG.disarm(ended) is False  # ended in time, while still queued behind the first
        time.sleep(0.6)
        assert _WATCHDOG.disarm(first) is True and _WATCHDOG.disarm(ended) is False
        assert hung.recv(1) == b""  # shut
        done_peer.sendall(b"x")
        done.sendall(b"y")
        assert done.recv(1) == b"x" and done_peer.recv(1) == b"y"  # untouched


def test_watchdog_serves_many_threads() -> None:
    pairs = [socket.socketpair() for _ in range(8)]
    fired: list[bool] = []

    def call(sock: socket.socket, seconds: float) -> None:
        watch = _WATCHDOG.arm(sock.fileno(), seconds)
        sock.recv(1)
        fired.append(_WATCHDOG.disarm(watch))

    threads = [threading.Thread(target=call, args=(c, 0.1 + 0.05 * i)) for i, (c, _) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert fired == [True] * len(pairs)
    for a, b in pairs:
        a.close()
        b.close()


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "30", True])
def test_timeout_must_be_positive_seconds_or_none(bad: object) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        PgVectorStore("t", dsn="postgresql://nobody@127.0.0.1:1/x", embedding_fn=None, timeout=bad)  # type: ignore[arg-type]
