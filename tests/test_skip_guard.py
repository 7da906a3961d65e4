"""tests/skip_guard.py: under DEEPRECALL_REQUIRE_ISOLATION=1 a skipped security/isolation test fails.

Runs pytest on a small throwaway suite in a subprocess, with and without the variable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITE = '''
import pytest

@pytest.fixture
def namespaces():
    pytest.skip("bwrap is not installed")

@pytest.mark.security
def test_security_skip_in_body():
    pytest.skip("no engine")

@pytest.mark.isolation
def test_isolation_skip_in_fixture(namespaces):
    pass

@pytest.mark.security
@pytest.mark.skipif(True, reason="skip marker")
def test_security_skip_marker():
    pass

@pytest.mark.security
def test_security_importorskip():
    pytest.importorskip("deeprecall_no_such_module")

@pytest.mark.security
def test_security_passes():
    pass

@pytest.mark.security
@pytest.mark.xfail(reason="known", strict=True)
def test_security_xfail():
    assert False

def test_unmarked_skip():
    pytest.skip("optional extra")
'''


def run_suite(tmp_path: Path, require: str | None) -> tuple[int, dict[str, str], str]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "DEEPRECALL_REQUIRE_ISOLATION"}
    if require is not None:
        env["DEEPRECALL_REQUIRE_ISOLATION"] = require
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_guard", "-p", "no:cacheprovider", "-v", "-rfEs",
                           "-W", "ignore::pytest.PytestUnknownMarkWarning", "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    outcomes = dict(re.findall(r"^test_suite\.py::(test_\w+) (PASSED|FAILED|SKIPPED|XFAIL|ERROR)", done.stdout, re.M))
    return done.returncode, outcomes, done.stdout


def test_without_the_variable_marked_tests_skip(tmp_path: Path) -> None:
    code, outcomes, out = run_suite(tmp_path, None)
    assert code == 0, out
    assert outcomes == {"test_security_skip_in_body": "SKIPPED", "test_isolation_skip_in_fixture": "SKIPPED",
                        "test_security_skip_marker": "SKIPPED", "test_security_importorskip": "SKIPPED",
                        "test_security_passes": "PASSED", "test_security_xfail": "XFAIL",
                        "test_unmarked_skip": "SKIPPED"}, out


def test_under_the_variable_every_skip_of_a_marked_test_fails_with_its_reason(tmp_path: Path) -> None:
    code, outcomes, out = run_suite(tmp_path, "1")
    assert code == 1, out
    assert outcomes == {"test_security_skip_in_body": "FAILED", "test_isolation_skip_in_fixture": "ERROR",
                        "test_security_skip_marker": "ERROR", "test_security_importorskip": "FAILED",
                        "test_security_passes": "PASSED", "test_security_xfail": "XFAIL",
                        "test_unmarked_skip": "SKIPPED"}, out
    assert "DEEPRECALL_REQUIRE_ISOLATION=1, but this security test was skipped: no engine" in out
    assert "DEEPRECALL_REQUIRE_ISOLATION=1, but this isolation test was skipped: bwrap is not installed" in out
    assert "this security test was skipped: skip marker" in out


@pytest.mark.parametrize("path", ["tests/security", "tests/sandboxes/test_local_isolation.py",
                                  "tests/sandboxes/test_docker.py"])
def test_the_isolation_suites_are_marked(path: str) -> None:
    """Every test there is guarded: none is left when security and isolation tests are deselected."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "not security and not isolation", path], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 5, done.stdout + done.stderr  # 5: every collected test was deselected
    assert re.search(r"no tests collected \(\d+ deselected\)", done.stdout), done.stdout
