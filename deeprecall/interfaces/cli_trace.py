"""``deeprecall trace``: read the trace files ``trace_dir=`` / ``--trace-dir`` writes.

    deeprecall trace view FILE [--out page.html] [--open]   one self-contained HTML page; prints its path
    deeprecall trace list [DIR]                              the traces in DIR, newest last: time, turns, status, question

The logic is in ``deeprecall.observability``, so Python callers get the same.
"""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser("trace", help="view the trace files of past queries")
    actions = parser.add_subparsers(dest="trace_command", required=True)
    view = actions.add_parser("view", help="render one trace file as a self-contained HTML page")
    view.add_argument("file", help="a .jsonl trace file (DeepRecall's, or a plain rlms log)")
    view.add_argument("--out", help="where to write the page (default: the trace's path with .html)")
    view.add_argument("--open", action="store_true", help="also open the page in the default browser")
    listing = actions.add_parser("list", help="the trace files in a folder, oldest first")
    listing.add_argument("dir", nargs="?", default=".", help="the trace_dir (default: the current folder)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.trace_command == "view":
        return _view(Path(args.file), Path(args.out) if args.out else None, args.open)
    return _list(Path(args.dir))


def _view(file: Path, out: Path | None, open_it: bool) -> int:
    from deeprecall.observability.trace_viewer import render_file

    if not file.is_file():
        raise ConfigError(f"no trace file at {file}")
    out = out or file.with_suffix(".html")
    try:
        page = render_file(file)
        out.write_text(page, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot render {file} to {out}: {e}") from None
    print(out.resolve())
    if open_it:
        webbrowser.open(out.resolve().as_uri())
    return 0


def _list(directory: Path) -> int:
    from deeprecall.observability.trace_file import read_trace

    if not directory.is_dir():
        raise ConfigError(f"no folder at {directory}")
    for path in sorted(directory.glob("*.jsonl")):  # names start with the UTC start time: sorted = oldest first
        trace = read_trace(path)
        status = "running/unfinished" if trace.result is None else (trace.result.get("error") or "answered")
        question = " ".join(str(trace.ours.get("question") or "").split())[:80]
        print(f"{path.name}\t{len(trace.iterations)} turns\t{status}\t{question}")
    return 0
