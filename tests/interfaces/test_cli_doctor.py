"""``deeprecall doctor`` reports the isolation the local sandbox would really use."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

from deeprecall.interfaces import cli_doctor
from deeprecall.sandboxes import isolation


def _run(*argv: str) -> tuple[int, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    cli_doctor.add_parser(parser.add_subparsers())
    args = parser.parse_args(["doctor", *argv])
    return args.func(args), args


def _runs(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _tool_that_works_here() -> str | None:
    """Found without deeprecall's own probe: can bwrap, else unshare, make a network and PID namespace?"""
    if shutil.which("bwrap") and _runs(["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--dev", "/dev",
                                        "--proc", "/proc", sys.executable, "-c", "pass"]):
        return "bwrap"
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    if shutil.which("unshare") and _runs(["unshare", *user, "--mount", "--net", "--pid", "--fork", sys.executable, "-c", "pass"]):
        return "unshare"
    return None


@pytest.mark.isolation
def test_doctor_reports_the_namespace_tool_that_works_here(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run("--json")
    report = json.loads(capsys.readouterr().out)
    expected = _tool_that_works_here()
    assert report["local"]["tool"] == expected, report["local"]
    assert code == (0 if expected else 1) and report["local"]["why"]
    if expected:
        assert report["local"]["why"].startswith(f"{expected} works")
    assert set(report["cloud"]) == {"modal", "e2b", "daytona", "prime"}


def test_doctor_explains_a_fallback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(isolation, "detect", lambda python, tool="auto": isolation.Isolation(None, "bwrap is not installed; unshare failed", python))
    monkeypatch.setenv("E2B_API_KEY", "e2b_secret_value_123")
    code, _ = _run()
    out = capsys.readouterr().out
    assert code == 1
    assert "process isolation" in out and "bwrap is not installed" in out and "apt-get install bubblewrap" in out
    assert "E2B_API_KEY" in out and "e2b_secret_value_123" not in out
