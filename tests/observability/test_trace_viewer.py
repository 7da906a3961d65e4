"""The trace page: what it shows, that hostile text stays text, that it needs nothing beyond itself, and the same
checked in a real headless Chromium (DOM after its script ran, a screenshot kept under build/artifacts/)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deeprecall.observability.trace_file import TraceDir, read_trace
from deeprecall.observability.trace_viewer import SCRIPT, render_file, render_trace
from tests.observability.browser import Dom, run
from tests.observability.sample import ANSWER, XSS, sample_events

ARTIFACTS = Path(os.environ.get("DEEPRECALL_ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "build" / "artifacts")
# What the sample query holds: the page must show exactly this many of each.
COUNTS = {"turn": 2, "cell": 2, "search": 2, "hit": 4, "subcall": 2, "source": 1}


def trace_of(tmp_path: Path, events: list[Any]) -> Path:
    sink = TraceDir(tmp_path / "traces")
    for event in events:
        sink(event)
    return next((tmp_path / "traces").iterdir())


def page_of(tmp_path: Path, events: list[Any] | None = None) -> Path:
    page = tmp_path / "page.html"
    page.write_text(render_file(trace_of(tmp_path, sample_events() if events is None else events)), encoding="utf-8")
    return page


# -- the page as text ---------------------------------------------------------------------------------------------------
def test_hostile_text_is_escaped_everywhere(tmp_path: Path) -> None:
    html = page_of(tmp_path).read_text()
    assert html.count("<script") == 1 and html.count("</script>") == 1  # only the page's own
    assert "onerror=" not in html.replace("onerror=&quot;", "")  # the attribute exists only as escaped text
    assert html.count("&lt;script&gt;document.body.dataset.pwned") >= 6  # answer, source, stdout, hit, sub-call, reply


def test_the_page_needs_nothing_beyond_itself(tmp_path: Path) -> None:
    html = page_of(tmp_path).read_text()
    links = re.findall(r'\b(?:src|href|action|srcset)\s*=\s*"([^"]*)"', html)
    assert links and all(link.startswith("#turn-") for link in links)
    assert "http://" not in html and "https://" not in html and "@import" not in html and "url(" not in html
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and f"script-src 'sha256-{digest}'" in csp.group(1) and "default-src 'none'" in csp.group(1)


def test_a_plain_rlms_log_renders(tmp_path: Path) -> None:
    """A file written by rlms's own RLMLogger (no DeepRecall keys) opens too: its question, code and output."""
    from tests.observability.test_trace_file import rlms_types

    types = rlms_types()
    from rlm.logger.rlm_logger import RLMLogger

    logger = RLMLogger(log_dir=str(tmp_path))
    logger.log_metadata(types.RLMMetadata(root_model="gpt-x", max_depth=1, max_iterations=5, backend="openai",
                                          backend_kwargs={}, environment_type="local", environment_kwargs={}))
    result = types.REPLResult(stdout="42\n", stderr="", locals={"x": 42}, execution_time=0.1)
    logger.log(types.RLMIteration(prompt=[{"role": "user", "content": "What is six times seven, " + XSS}],
                                  response="```repl\nprint(6*7)\n```", code_blocks=[types.CodeBlock("print(6*7)", result)],
                                  final_answer="42", iteration_time=0.5))
    assert logger.log_file_path is not None
    trace = read_trace(logger.log_file_path)
    html = render_trace(trace)
    assert "What is six times seven" in html and "print(6*7)" in html and "42" in html
    assert html.count("<script") == 1 and "gpt-x" in html


def test_an_unfinished_trace_says_so(tmp_path: Path) -> None:
    html = page_of(tmp_path, sample_events(answered=False)).read_text()
    assert "No result line" in html and 'id="turn-1"' in html and 'id="turn-2"' not in html


def test_a_limit_shows_the_reason_and_the_partial_answer(tmp_path: Path) -> None:
    html = page_of(tmp_path, sample_events(limit=True)).read_text()
    assert "Stopped early: <b>max_search_calls</b>" in html and "best partial" in html
    assert 'class="note"><b>limit</b> max_search_calls' in html


def test_a_child_query_names_its_parent_and_a_parent_its_children(tmp_path: Path) -> None:
    from deeprecall.results import QueryResult

    child = sample_events()
    child[0] = child[0].model_copy(update={"parent_query_id": "p" * 32, "depth": 2})
    html = page_of(tmp_path / "child", child).read_text()
    assert f"child query (depth 2) of query {'p' * 32}" in html and 'id="children"' not in html
    parent = sample_events()
    parent[-1].result.children.append(QueryResult(question="sub-task", answer="x", query_id="c" * 32))
    html = page_of(tmp_path / "parent", parent).read_text()
    assert f"each in its own trace file): {'c' * 32}</div>" in html and "child query (depth" not in html


# -- the page in Chromium ---------------------------------------------------------------------------------------------
def test_a_missing_browser_skips_loudly_or_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.observability.browser import REQUIRE_ENV, require_chromium

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="BROWSER NOT RUN"):
        require_chromium()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_ENV}=1 but no chromium"):
        require_chromium()


@pytest.mark.browser
def test_chromium_shows_turns_code_hits_answer_and_sources_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = page_of(tmp_path)
    dom = Dom(run(page, "--dump-dom").stdout)
    assert dom.body.get("data-ready") == "1"  # the page's own script ran
    assert "data-pwned" not in dom.body  # no script or handler from a reply, a document or an output did
    counts = dom.by_id["dom-counts"]  # counted by the page's script from the DOM Chromium built
    assert {k: int(counts[f"data-{k}"]) for k in COUNTS} == COUNTS
    assert {k: dom.classes.get(k, 0) for k in COUNTS} == COUNTS
    text = dom.text
    for shown in ["How did Acme's revenue change in 2023?", "Turn 1", "Turn 2", "hits = search_db('revenue')",
                  "ZeroDivisionError: division by zero", "revenue 2023", "doc2", "The Acme widget line",
                  "Summarise doc2", "It grew 12%.", "worker restarted", "grounded in the sources below",
                  "1,757 tokens", "$0.0015", ANSWER]:
        assert shown in text, shown
    assert "<script>document.body.dataset.pwned='1'</script>" in text  # hostile text shown as text
    assert dom.scripts == 1

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "trace-viewer.png"
    shot.unlink(missing_ok=True)
    run(page, f"--screenshot={shot}", "--window-size=1280,1900")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
    with capsys.disabled():
        print(f"\ntrace viewer screenshot: {shot}")


class _Beacon(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Beacon.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.browser
@pytest.mark.parametrize("with_csp", [True, False])
def test_the_pages_policy_stops_a_script_or_fetch_that_slipped_through(tmp_path: Path, with_csp: bool) -> None:
    """Escaping is the first wall; the CSP is the second. Inject raw markup past the escaping, load the page with
    the network on and a server listening: with the policy nothing runs or fetches; without it (the control,
    proving the test can fail) both happen."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Beacon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Beacon.hits = []
    try:
        html = page_of(tmp_path).read_text()
        if not with_csp:
            html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
        url = f"http://127.0.0.1:{server.server_port}"
        injected = (f"<script>document.body.dataset.pwned='1'</script><img src='{url}/img'>"
                    f"<link rel=stylesheet href='{url}/css'></body>")
        page = tmp_path / "injected.html"
        page.write_text(html.replace("</body>", injected), encoding="utf-8")
        dom = Dom(run(page, "--dump-dom", "--virtual-time-budget=3000", offline=False).stdout)
    finally:
        server.shutdown()
    if with_csp:
        assert "data-pwned" not in dom.body and _Beacon.hits == []
        assert dom.body.get("data-ready") == "1"  # the page's own hashed script still ran
    else:
        assert dom.body.get("data-pwned") == "1" and set(_Beacon.hits) >= {"/img"}
