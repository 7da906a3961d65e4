"""``deeprecall doctor`` reports the isolation the local sandbox would really use."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from deeprecall.interfaces import cli_doctor
from deeprecall.sandboxes import isolation


def _run(*argv: str) -> tuple[int, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    cli_doctor.add_parser(parser.add_subparsers())
    args = parser.parse_args(["doctor", *argv])
    return args.func(args), args


def test_doctor_agrees_with_the_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run("--json")
    report = json.loads(capsys.readouterr().out)
    found = isolation.detect(sys.executable)
    assert report["local"]["tool"] == found.tool and report["local"]["why"] == found.reason
    assert code == (0 if found.available else 1)
    assert set(report["cloud"]) == {"modal", "e2b", "daytona", "prime"}


def test_doctor_explains_a_fallback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(isolation, "detect", lambda python, tool="auto": isolation.Isolation(None, "bwrap is not installed; unshare failed", python))
    monkeypatch.setenv("E2B_API_KEY", "e2b_secret_value_123")
    code, _ = _run()
    out = capsys.readouterr().out
    assert code == 1
    assert "process isolation" in out and "bwrap is not installed" in out and "apt-get install bubblewrap" in out
    assert "E2B_API_KEY" in out and "e2b_secret_value_123" not in out
