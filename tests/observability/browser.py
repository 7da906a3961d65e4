"""Headless Chromium for the trace viewer's tests (Debian's ``chromium``; scripts/services.sh apt installs it).

Why the command line (``--dump-dom``, ``--screenshot``) and not Playwright: Playwright's browser download needs
its CDN, which a machine with only PyPI/Debian/npm cannot reach, and its Python package brings a Node driver we
would use for two calls. Debian's chromium installs from the same mirror as everything else, and the page's only
script runs at load, so the DOM Chromium prints after loading is what a user sees.

Offline: the browser runs in a new network namespace (``unshare --net``, root) when it can, so the page is
checked with no network at all; elsewhere a dead proxy stands in. ``require_chromium()`` skips loudly without a
browser, and fails instead under ``DEEPRECALL_REQUIRE_BROWSER=1`` (``make test``), like the other required tiers.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

REQUIRE_ENV = "DEEPRECALL_REQUIRE_BROWSER"
NAMES = ("chromium", "chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--disable-background-networking"]
DEAD_PROXY = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def require_chromium() -> str:
    """The browser's path; skip (or, under DEEPRECALL_REQUIRE_BROWSER=1, fail) when there is none."""
    found = next((path for name in NAMES if (path := shutil.which(name))), None)
    if found:
        return found
    why = "no chromium on PATH (bash scripts/services.sh apt installs it)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
    pytest.skip(f"BROWSER NOT RUN: {why}")


@functools.cache
def can_unshare_net() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0


def run(page: Path, *args: str, offline: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Load ``page`` from its file:// URL in a fresh profile with ``args`` (``--dump-dom``, ``--screenshot=...``)."""
    browser = require_chromium()
    with tempfile.TemporaryDirectory(prefix="deeprecall-chromium-") as profile:
        command = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
        if offline:
            command = ["unshare", "--net", *command] if can_unshare_net() else [*command, *DEAD_PROXY]
        proc = subprocess.run([*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


class Dom(HTMLParser):
    """What a dumped DOM shows: its text, each element's attributes by id, how many elements carry each class."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text_parts: list[str] = []
        self.by_id: dict[str, dict[str, str]] = {}
        self.classes: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self.scripts = 0
        self._skip = 0
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = values
        if tag in ("script", "style"):
            self.scripts += tag == "script"
            self._skip += 1
        if "id" in values:
            self.by_id[values["id"]] = values
        for name in values.get("class", "").split():
            self.classes[name] = self.classes.get(name, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)
