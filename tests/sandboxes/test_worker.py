"""The worker's wire codec: the C half of json where the interpreter has it, the json module otherwise.
Both must put on the wire exactly what the host's json.loads reads back."""

from __future__ import annotations

import builtins
import importlib
import json
import math

import pytest

from deeprecall.sandboxes import worker


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


MESSAGES = [
    {"type": "call", "id": 7, "fn": "search_db", "args": {"query": "été ☃ \U0001f600", "top_k": 5, "filters": None}},
    {"type": "result", "stdout": "line\n\ttab \"quoted\" \\ back", "answer": {"content": "", "ready": False}},
    {"nested": [[1, 2.5, -3e300], {"1": True}], "empty": {}, "list": []},
]


def codecs() -> list[object]:
    return [pytest.param(worker.dumps, worker.loads, id="C-json"), pytest.param(*_fallback_codec(), id="json-module")]


def _fallback_codec() -> tuple[object, object]:
    real_import = builtins.__import__

    def no_c_json(name: str, *args: object, **kwargs: object) -> object:
        if name == "_json":
            raise ImportError("no _json here")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    builtins.__import__ = no_c_json  # type: ignore[assignment]
    try:
        dumps, loads = importlib.reload(worker).wire_codec()
        assert loads is json.loads, "without _json the worker must fall back to the json module"
        return dumps, loads
    finally:
        builtins.__import__ = real_import
        importlib.reload(worker)


def test_the_worker_uses_the_c_codec_when_it_can():
    assert worker.loads is not json.loads and worker.dumps.__name__ == "dumps"  # wire_codec's C-half functions


@pytest.mark.parametrize(("dumps", "loads"), codecs())
def test_messages_round_trip_as_ascii_json(dumps, loads):
    for msg in MESSAGES:
        text = dumps(msg)
        assert text.isascii() and "\n" not in text
        assert json.loads(text) == msg and loads(text + "\n") == msg


@pytest.mark.parametrize(("dumps", "loads"), codecs())
def test_values_json_cannot_hold_go_as_their_repr(dumps, loads):
    decoded = json.loads(dumps({"obj": Opaque(), "tuple": (1, 2), "nan": float("nan"), "inf": float("inf")}))
    assert decoded["obj"] == "<opaque>" and decoded["tuple"] == [1, 2]
    assert math.isnan(decoded["nan"]) and decoded["inf"] == float("inf")


@pytest.mark.parametrize(("dumps", "loads"), codecs())
def test_bad_input_raises_value_error(dumps, loads):
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        dumps({"loop": loop})
    for text in ("{not json", '{"a": 1} trailing', ""):
        with pytest.raises(ValueError):
            loads(text)


def test_the_worker_starts_without_importing_re_or_enum():
    """What the C halves are for: ~10 ms of every worker's start-up (measured in benchmarks/sandbox_overhead.py)."""
    import subprocess
    import sys

    from deeprecall.sandboxes.protocol import launch_command, worker_source

    proc = subprocess.Popen(launch_command(sys.executable, ("-u", "-I", "-S")), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    code = "import sys\nprint(sorted(m for m in ('re', 'enum', 'json') if m in sys.modules))"
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(worker_source())
        for msg in ({"type": "init", "id": 1, "context": {}, "output_cap": 1000, "limits": {}},
                    {"type": "exec", "id": 2, "code": code, "timeout": 10}):
            proc.stdin.write((json.dumps(msg) + "\n").encode())
        proc.stdin.flush()
        replies = [json.loads(proc.stdout.readline()) for _ in range(3)]  # hello, ready, result
    finally:
        proc.kill()
        proc.wait()
    assert [r["type"] for r in replies] == ["hello", "ready", "result"]
    assert replies[2]["stdout"].strip() == "[]"
