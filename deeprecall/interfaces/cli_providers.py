"""``deeprecall providers``: every provider, whether its key is set, which local servers answer.

A key is reported as set or not set, never shown. Local servers are probed
with a short timeout (``--timeout``), all at once.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from deeprecall.providers.discovery import LocalStatus, discover_local, server_url
from deeprecall.providers.registry import PROVIDERS, ProviderSpec


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "providers", help="list LLM providers, which keys are set and which local servers answer"
    )
    parser.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each local server (default 0.5)")
    parser.add_argument("--no-probe", action="store_true", help="do not contact local servers")
    parser.add_argument("--local", action="store_true", help="list local providers only")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
    return parser


def _key_status(spec: ProviderSpec) -> tuple[str | None, str]:
    """The env var that holds the key (or None) and a short status; never the key itself."""
    found = next((name for name in spec.api_key_env_vars if os.environ.get(name)), None)
    if found:
        return found, f"key set ({found})"
    if not spec.api_key_env_vars:
        return None, "no key needed"
    wanted = " or ".join(spec.api_key_env_vars)
    return None, f"optional: {wanted}" if not spec.requires_api_key else f"no key: set {wanted}"


def _local_status(status: LocalStatus | None) -> str:
    if status is None:
        return "not probed"
    if not status.up:
        return "down"
    if status.error:
        return f"up ({status.error})"
    shown = ", ".join(status.models[:3]) + (", ..." if len(status.models) > 3 else "")
    return f"up: {len(status.models)} model(s)" + (f" ({shown})" if shown else "")


def rows(local: dict[str, LocalStatus], only_local: bool = False) -> list[dict[str, Any]]:
    out = []
    for spec in PROVIDERS:
        if only_local and spec.connection != "local":
            continue
        entry: dict[str, Any] = {"id": spec.id, "name": spec.display_name, "category": spec.category,
                                 "connection": spec.connection, "aliases": list(spec.aliases)}
        if spec.connection == "local":
            status = local.get(spec.id)
            entry.update(url=server_url(spec), status=_local_status(status),
                         up=bool(status and status.up), models=status.models if status else [])
        else:
            env, text = _key_status(spec)
            entry.update(key_env=list(spec.api_key_env_vars), key_set=env is not None, status=text,
                         url=spec.default_base_url or (f"${spec.base_url_env_var}" if spec.base_url_env_var else ""))
        out.append(entry)
    return out


def run(args: argparse.Namespace) -> int:
    local = {} if args.no_probe else {s.provider: s for s in discover_local(timeout=args.timeout)}
    table = rows(local, only_local=args.local)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    width = max(len(r["id"]) for r in table) + 2
    status_width = max(len(r["status"]) for r in table) + 2
    category = ""
    for r in table:
        if r["category"] != category:
            category = r["category"]
            print(f"\n{category}")
        print(f"  {r['id']:<{width}}{r['status']:<{status_width}}{r['url']}")
    print("\nAlso: backend 'pool' (several backends), 'hybrid' (reasoner + executor), 'auto' (from 'provider/model').")
    print("Details: docs/providers.md")
    return 0
