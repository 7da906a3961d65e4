"""A pytest plugin (loaded by tests/conftest.py): security and isolation tests may not skip in CI.

Tests marked ``security`` or ``isolation`` check DeepRecall's main promise, that model code cannot reach the
host. They need things a machine may lack (working namespaces, a Docker engine), so they skip without them,
and a CI machine that loses bubblewrap would otherwise show a green run that tested none of it. Under
``DEEPRECALL_REQUIRE_ISOLATION=1`` (``make test`` sets it) such a skip, whatever raised it (a fixture, an
importorskip, a skip marker), is reported as a failure that carries the skip's reason.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

ENV = "DEEPRECALL_REQUIRE_ISOLATION"
GUARDED = ("security", "isolation")


def required() -> bool:
    return os.environ.get(ENV) == "1"


def _reason(report: pytest.TestReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                            pytest.TestReport]:
    report = yield
    if not report.skipped or hasattr(report, "wasxfail") or not required():
        return report
    marks = [name for name in GUARDED if item.get_closest_marker(name) is not None]
    if marks:
        report.outcome = "failed"
        report.longrepr = f"{ENV}=1, but this {marks[0]} test was skipped: {_reason(report)}"
    return report
