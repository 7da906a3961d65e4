"""StreamChannel: lines out of arbitrary chunks, a size limit, and kill unblocking readers."""

from __future__ import annotations

import threading
import time

from deeprecall.sandboxes.streams import StreamChannel


def _channel() -> tuple[StreamChannel, list[bytes], list[bool]]:
    sent: list[bytes] = []
    stopped: list[bool] = []
    return StreamChannel(send=sent.append, stop=lambda: stopped.append(True)), sent, stopped


def test_lines_are_reassembled_from_chunks() -> None:
    channel, sent, _ = _channel()
    channel.feed(b'{"a"')
    channel.feed(': 1}\n{"b": 2}\n{"c"')
    assert channel.readline() == b'{"a": 1}\n'
    assert channel.readline() == b'{"b": 2}\n'
    channel.feed("é}\n")  # text streams (E2B, Daytona) are encoded back to bytes
    assert channel.readline() == '{"c"é}\n'.encode()
    channel.write(b"x")
    assert sent == [b"x"]


def test_limit_cuts_a_long_line_and_eof_returns_the_rest() -> None:
    channel, _, _ = _channel()
    channel.feed(b"a" * 100)
    assert channel.readline(10) == b"a" * 10
    channel.end()
    assert channel.readline() == b"a" * 90
    assert channel.readline() == b""


def test_kill_unblocks_a_waiting_reader_and_stops_once() -> None:
    channel, _, stopped = _channel()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(channel.readline()))
    reader.start()
    time.sleep(0.1)
    channel.kill()
    channel.kill()
    reader.join(2)
    assert got == [b""] and stopped == [True]


def test_stderr_keeps_only_a_tail() -> None:
    channel, _, _ = _channel()
    for i in range(1000):
        channel.feed_stderr(f"line {i}\n" * 10)
    tail = channel.diagnostics()
    assert "line 999" in tail and len(tail) <= 20_000
