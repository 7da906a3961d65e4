"""One self-contained HTML page for one trace file: the turns, each cell's code and output, searches and their hits,
sub-calls, tokens and cost per step, the answer and its sources.

Why server-rendered HTML with every text escaped here: model output and documents are hostile (a reply or a
document can hold ``<script>``), and a page built from escaped strings stays inert even if its script never runs.
The one inline script (counts, expand/collapse) is allowed by its sha256 in the page's Content-Security-Policy,
which also forbids every network fetch, so a text that did slip through could neither run nor phone home.
The page needs nothing beyond itself: no CDN, no fonts, no images.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path
from typing import Any

from deeprecall.observability.trace_file import KEY, Trace, read_trace

HIT_PREVIEW = 240
SCRIPT = """(function () {
  var kinds = {turn: "turns", cell: "cells", search: "searches", hit: "hits", subcall: "sub-calls", source: "sources"};
  var box = document.getElementById("dom-counts"), parts = [];
  Object.keys(kinds).forEach(function (k) {
    var n = document.querySelectorAll("." + k).length;
    box.setAttribute("data-" + k, String(n));
    parts.push(n + " " + (n === 1 ? k.replace("subcall", "sub-call") : kinds[k]));
  });
  box.textContent = "on this page: " + parts.join(" \\u00b7 ");
  function all(open) {
    document.querySelectorAll("details").forEach(function (d) { d.open = open; });
  }
  document.getElementById("expand").addEventListener("click", function () { all(true); });
  document.getElementById("collapse").addEventListener("click", function () { all(false); });
  document.body.setAttribute("data-ready", "1");
})();"""
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:16px 20px 60px}
h1{font-size:20px;margin:8px 0 4px}h2{font-size:16px;margin:22px 0 8px}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #dde1e8;border-radius:4px;
padding:8px;margin:4px 0;font:12.5px/1.4 "DejaVu Sans Mono",ui-monospace,monospace;max-height:420px;overflow:auto}
.meta,.label,.muted{color:#5b6475;font-size:12.5px}.stats span{margin-right:14px}
.banner{padding:8px 12px;border-radius:4px;margin:10px 0;background:#e8f5ec;border:1px solid #9ed1ad}
.banner.error{background:#fdecec;border-color:#e5a3a3}.banner.open{background:#fff6e0;border-color:#e9c979}
.answer{font:15px/1.5 system-ui,"DejaVu Sans",sans-serif;border-left:4px solid #2f7d4a}
details.turn{background:#fff;border:1px solid #d5d9e0;border-radius:6px;margin:10px 0;padding:4px 12px 10px}
details.turn>summary{cursor:pointer;font-weight:600;padding:6px 0}
.cell,.search,.subcall,.note,.evidence{border-left:3px solid #c3cad6;padding:2px 0 2px 10px;margin:10px 0}
.cell{border-color:#5b7fd6}.search{border-color:#d69a2d}.subcall{border-color:#8c5bd6}.note{border-color:#d65b5b}
pre.code{background:#f3f5fb}pre.stderr{background:#fdf1f1}
table.hits{border-collapse:collapse;width:100%;font-size:12.5px}
.hits td{border-top:1px solid #e3e6ec;padding:3px 6px;vertical-align:top}.hits td.id{white-space:nowrap;font-family:monospace}
.timeline{display:flex;gap:2px;height:26px;margin:6px 0}
.timeline a{flex:none;background:#5b7fd6;color:#fff;text-decoration:none;font-size:11px;text-align:center;
line-height:26px;border-radius:3px;min-width:18px;overflow:hidden}
.msg .role{font-weight:600;font-size:12px;text-transform:uppercase;color:#5b6475}
button{font:inherit;font-size:12px;margin-right:6px}.source{margin:6px 0}
"""


def render_file(path: str | Path) -> str:
    return render_trace(read_trace(path))


def render_trace(trace: Trace) -> str:
    """The page as one string (UTF-8 HTML)."""
    title = _question(trace) or trace.path.name
    body = "".join([_header(trace), _answer(trace), _timeline(trace), _turns(trace), _footer(trace)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e('DeepRecall trace: ' + title[:120])}</title>\n<style>{STYLE}</style></head>\n"
            f"<body><main>{body}</main>\n<script>{SCRIPT}</script></body></html>\n")


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
            "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# -- header, answer, timeline -------------------------------------------------------------------------------------
def _question(trace: Trace) -> str:
    question = trace.ours.get("question")
    if question:
        return str(question)
    for iteration in trace.iterations[:1]:  # a plain rlms log: its first user message
        for msg in iteration.get("prompt") or []:
            if isinstance(msg, dict) and msg.get("role") == "user":
                return str(msg.get("content", ""))[:300]
    return ""


def _header(trace: Trace) -> str:
    meta, ours = trace.metadata, trace.ours
    facts = [meta.get("root_model"), meta.get("backend"), meta.get("environment_type"), ours.get("data_source"),
             meta.get("timestamp"), ours.get("query_id") and f"query {ours['query_id']}",
             ours.get("parent_query_id") and f"child query (depth {ours.get('depth')}) of query {ours['parent_query_id']}"]
    children = (trace.result or {}).get("children") or []  # rlm_query's child queries: each in its own file
    totals = _totals(trace)
    stats = "".join(f'<span data-stat="{k}"><b>{_e(v)}</b> {_e(k.replace("_", " "))}</span>' for k, v in totals.items())
    filters = ours.get("filters")
    return (f'<h1 id="question">{_e(_question(trace) or "(no question recorded)")}</h1>'
            f'<div class="meta">{" · ".join(_e(f) for f in facts if f)}</div>'
            + (f'<div class="meta">filters: <code>{_e(_json(filters))}</code></div>' if filters else "")
            + (f'<div class="meta" id="children">child queries (each in its own trace file): '
               f'{_e(", ".join(str(c) for c in children))}</div>' if children else "")
            + f'<div class="stats" id="stats">{stats}</div>'
            '<div class="meta" id="dom-counts"></div>'
            '<div><button id="expand" type="button">expand all</button>'
            '<button id="collapse" type="button">collapse all</button></div>' + _banner(trace))


def _totals(trace: Trace) -> dict[str, Any]:
    usage = (trace.result or {}).get("usage") or {}
    steps = [_step_cost(it) for it in trace.iterations]
    tokens = usage.get("total_tokens", sum(s["tokens"] for s in steps))
    cost = usage.get("total_cost_usd") if trace.result else _sum_cost(s["cost"] for s in steps)
    blocks = [b for it in trace.iterations for b in it.get("code_blocks") or []]
    return {"turns": len(trace.iterations), "cells": len(blocks),
            "searches": len(_all_searches(trace)), "sub_calls": sum(len(_calls(b)) for b in blocks)
            + sum(len(_ours(it).get("sub_calls") or []) for it in trace.iterations),
            "tokens": tokens, "cost": _money(cost), "seconds": _secs((trace.result or {}).get("seconds"))}


def _banner(trace: Trace) -> str:
    result = trace.result
    if result is None:
        return ('<div class="banner open" id="status">No result line: the query was still running, or its process '
                'stopped, when this file was read. Every finished turn is below.</div>')
    if result.get("error"):
        return (f'<div class="banner error" id="status">Stopped early: <b>{_e(result["error"])}</b> '
                f'{_e(result.get("error_message") or "")}. The answer below is the best partial one.</div>')
    return '<div class="banner" id="status">Answered.</div>'


def _answer(trace: Trace) -> str:
    result = trace.result
    if result is None:
        final = next((it.get("final_answer") for it in reversed(trace.iterations) if it.get("final_answer")), None)
        if final is None:
            return ""
        result = {"answer": final[1] if isinstance(final, list) else final, "sources": []}
    sources = result.get("sources") or []
    grounded = "grounded in the sources below" if result.get("grounded") else "not grounded: no retrieved document backs it"
    items = "".join(
        f'<li class="source" data-id="{_e(s.get("id"))}"><b>{_e(s.get("id"))}</b> '
        f'<span class="muted">score {_num(s.get("score"))} {_e(_where(s.get("metadata")))}</span>'
        f'<pre>{_e(s.get("content"))}</pre></li>' for s in sources)
    return (f'<h2>Answer</h2><pre class="answer" id="answer">{_e(result.get("answer"))}</pre>'
            f'<div class="muted">{_e(grounded)}</div>'
            + (f'<h2>Sources ({len(sources)})</h2><ol id="sources">{items}</ol>' if sources else ""))


def _timeline(trace: Trace) -> str:
    times = [float(it.get("iteration_time") or 0.0) for it in trace.iterations]
    total = sum(times) or 1.0
    bars = "".join(
        f'<a href="#turn-{i}" title="turn {i}: {_secs(t)}" style="width:{max(2.0, 96.0 * t / total):.1f}%">{i}</a>'
        for i, t in enumerate(times, 1))
    return f'<h2>Timeline</h2><div class="timeline" id="timeline">{bars}</div>' if bars else ""


def _footer(trace: Trace) -> str:
    skipped = f" · {trace.skipped_lines} unreadable line(s) skipped" if trace.skipped_lines else ""
    return f'<p class="muted">Rendered by <code>deeprecall trace view</code> from {_e(trace.path.name)}{skipped}.</p>'


# -- turns ----------------------------------------------------------------------------------------------------------
def _turns(trace: Trace) -> str:
    documents = (trace.result or {}).get("documents") or {}
    parts: list[str] = []
    previous: list[Any] = []
    for index, iteration in enumerate(trace.iterations, 1):
        parts.append(_turn(index, iteration, previous, documents))
        previous = iteration.get("prompt") or []
    return "<h2>Turns</h2>" + "".join(parts) if parts else '<h2>Turns</h2><p class="muted">No turn was recorded.</p>'


def _turn(index: int, it: dict[str, Any], previous: list[Any], documents: dict[str, Any]) -> str:
    ours, cost = _ours(it), _step_cost(it)
    blocks = it.get("code_blocks") or []
    summary = " · ".join(x for x in [
        f"Turn {index}", _e(ours.get("model")), f"{cost['tokens']:,} tokens", _money(cost["cost"]),
        _secs(it.get("iteration_time")), f"{len(blocks)} cell{'s' if len(blocks) != 1 else ''}",
        f"{cost['searches']} search{'es' if cost['searches'] != 1 else ''}", f"{cost['sub_calls']} sub-call(s)",
        "final answer" if it.get("final_answer") else ""] if x)
    root = (f'<div class="label">root call: {ours.get("input_tokens", 0):,} in / {ours.get("output_tokens", 0):,} out · '
            f'{_money(ours.get("cost_usd"))} · {_secs(ours.get("seconds"))}'
            + (f' · finish: {_e(ours["finish_reason"])}' if ours.get("finish_reason") else "") + "</div>")
    body = [_prompt(it.get("prompt") or [], previous), root,
            f'<div class="label">reply</div><pre class="response">{_e(it.get("response"))}</pre>']
    body += [_search(s, documents) for s in ours.get("searches") or []]
    body += [_cell(b, documents) for b in blocks]
    body += [_subcall(c) for c in ours.get("sub_calls") or []]
    body += [_evidence(c) for c in ours.get("evidence_calls") or []]
    body += [_note(n) for n in ours.get("notes") or []]
    return f'<details class="turn" id="turn-{index}" open><summary>{summary}</summary>{"".join(body)}</details>'


def _prompt(messages: list[Any], previous: list[Any]) -> str:
    """Each line holds the whole history; show only what is new since the last turn (else the page grows as n²)."""
    same = 0
    while same < min(len(messages), len(previous)) and messages[same] == previous[same]:
        same += 1
    new = messages[same:]
    shown = "".join(f'<div class="msg"><span class="role">{_e(m.get("role"))}</span><pre>{_e(m.get("content"))}</pre></div>'
                    for m in new if isinstance(m, dict))
    earlier = f", after the {same} of the previous turn" if same else ""
    return (f'<details class="prompt"><summary class="label">prompt: {len(new)} new message(s){earlier}</summary>'
            f"{shown}</details>")


def _cell(block: dict[str, Any], documents: dict[str, Any]) -> str:
    result, ours = block.get("result") or {}, _ours(block)
    flags = " · did not finish" if ours and not ours.get("ended", True) else ""
    flags += f" · {_e(ours['error'])}" if ours.get("error") else ""
    out = "".join(f'<div class="label">{name}</div><pre class="{name}">{_e(result.get(name))}</pre>'
                  for name in ("stdout", "stderr") if result.get(name))
    inner = [_search(s, documents) for s in ours.get("searches") or []] + [_subcall(c) for c in _calls(block)]
    return (f'<div class="cell"><div class="label">cell {_e(ours.get("cell", ""))} · '
            f'{_secs(result.get("execution_time"))}{flags}</div><pre class="code">{_e(block.get("code"))}</pre>'
            f'{out}{"".join(inner)}</div>')


def _search(search: dict[str, Any], documents: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr class="hit"><td class="id">{_e(hit)}</td><td>{_num(score)}</td>'
        f'<td>{_e(_preview(documents.get(hit)))}</td></tr>'
        for hit, score in zip(search.get("hit_ids") or [], _pad(search.get("scores"), search.get("hit_ids")), strict=False))
    error = f' · <b>error</b> {_e(search["error"])}' if search.get("error") else ""
    where = " · before turn 1" if search.get("step") == 0 else ""
    return (f'<div class="search"><div class="label">search <b>{_e(search.get("query"))}</b> · top_k '
            f'{_e(search.get("top_k"))} · filters <code>{_e(_json(search.get("filters")))}</code> · '
            f'{_num(search.get("ms"))} ms · {len(search.get("hit_ids") or [])} hit(s){where}{error}</div>'
            f'<table class="hits">{rows}</table></div>')


def _subcall(call: dict[str, Any]) -> str:
    ours = _ours(call)
    error = f' · <b>error</b> {_e(call["error"])}' if call.get("error") else ""
    return (f'<div class="subcall"><div class="label">sub-call {_e(call.get("root_model"))} · '
            f'{call.get("prompt_tokens", 0):,} in / {call.get("completion_tokens", 0):,} out · {_money(ours.get("cost_usd"))} · '
            f'{_secs(call.get("execution_time"))}{error}</div><pre class="prompt">{_e(call.get("prompt"))}</pre>'
            f'<pre class="reply">{_e(call.get("response"))}</pre></div>')


def _evidence(call: dict[str, Any]) -> str:
    return (f'<div class="evidence"><div class="label">answer from the retrieved documents (the loop ended without '
            f'one) · {_e(call.get("model"))} · {call.get("input_tokens", 0):,} in / {call.get("output_tokens", 0):,} out · '
            f'{_money(call.get("cost_usd"))}</div><pre>{_e(call.get("text"))}</pre></div>')


def _note(note: dict[str, Any]) -> str:
    what = "limit" if note.get("type") == "limit" else "worker restarted"
    return (f'<div class="note"><b>{what}</b> {_e(note.get("reason"))} '
            f'<span class="muted">{_e(note.get("message") or "")}</span></div>')


# -- numbers ----------------------------------------------------------------------------------------------------------
def _ours(entry: Any) -> dict[str, Any]:
    value = entry.get(KEY) if isinstance(entry, dict) else None
    return value if isinstance(value, dict) else {}


def _calls(block: dict[str, Any]) -> list[dict[str, Any]]:
    return list((block.get("result") or {}).get("rlm_calls") or [])


def _all_searches(trace: Trace) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for it in trace.iterations:
        found += _ours(it).get("searches") or []
        for block in it.get("code_blocks") or []:
            found += _ours(block).get("searches") or []
    return found


def _step_cost(it: dict[str, Any]) -> dict[str, Any]:
    """Tokens and cost of one step: its root call, its sub-calls (in cells or not), an evidence call."""
    ours = _ours(it)
    calls = [c for b in it.get("code_blocks") or [] for c in _calls(b)] + list(ours.get("sub_calls") or [])
    extra = list(ours.get("evidence_calls") or [])
    tokens = (ours.get("input_tokens", 0) + ours.get("output_tokens", 0)
              + sum(c.get("prompt_tokens", 0) + c.get("completion_tokens", 0) for c in calls)
              + sum(c.get("input_tokens", 0) + c.get("output_tokens", 0) for c in extra))
    cost = _sum_cost([ours.get("cost_usd"), *(_ours(c).get("cost_usd") for c in calls), *(c.get("cost_usd") for c in extra)])
    searches = len(ours.get("searches") or []) + sum(len(_ours(b).get("searches") or []) for b in it.get("code_blocks") or [])
    return {"tokens": tokens, "cost": cost, "searches": searches, "sub_calls": len(calls)}


def _sum_cost(costs: Any) -> float | None:
    known = [c for c in costs if isinstance(c, int | float)]
    return sum(known) if known else None


def _money(value: Any) -> str:
    return f"${value:.4f}" if isinstance(value, int | float) else "cost unknown"


def _secs(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else "? s"


def _num(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else _e(value)


def _pad(scores: Any, ids: Any) -> list[Any]:
    scores = list(scores or [])
    return scores + [None] * (len(ids or []) - len(scores))


def _preview(document: Any) -> str:
    if not isinstance(document, dict):
        return ""
    text = " ".join(str(document.get("content") or "").split())
    where = _where(document.get("metadata"))
    text = text if len(text) <= HIT_PREVIEW else text[:HIT_PREVIEW] + "…"
    return f"{where} {text}".strip()


def _where(metadata: Any) -> str:
    if not isinstance(metadata, dict):
        return ""
    return str(metadata.get("source") or metadata.get("path") or metadata.get("title") or "")
