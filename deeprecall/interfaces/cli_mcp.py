"""``deeprecall mcp``: serve the store to MCP clients (desktop assistants, editors, agent frameworks).

    deeprecall mcp [--config deeprecall.yaml] [--filter tenant=acme]        stdio (the client launches it)
    deeprecall mcp --transport http [--host 127.0.0.1] [--port 8000]       streamable HTTP at /mcp

The LLM, sandbox and limits come from the same flags and config file as ``deeprecall query``; ``--filter``
adds host-enforced filters that no client can widen. Over stdio, stdout is the protocol: everything else
goes to stderr. The server is ``deeprecall.integrations.mcp_server``; see docs/mcp.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deeprecall.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
REMOTE_WARNING = ("deeprecall mcp: serving on {host} without authentication: anyone who can reach this port can run "
                  "queries on your store and your model budget. Bind 127.0.0.1 (the default), or put an "
                  "authenticating proxy in front; `deeprecall serve` has API keys and tenants.")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from deeprecall.interfaces import cli

    parser: argparse.ArgumentParser = subparsers.add_parser("mcp", help="serve the store as an MCP server (stdio or HTTP)")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                        help="stdio (default: the MCP client starts this command) or streamable HTTP")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP: port (default 8000); the endpoint is /mcp")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="filter enforced on every query and search (a client can only narrow it)")
    parser.add_argument("--environment", default=None, help="sandbox: local (default), docker, modal, e2b, daytona, prime")
    cli._store_options(parser)
    cli._llm_options(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from deeprecall.engine.engine import DeepRecall
    from deeprecall.integrations.mcp_server import build_mcp_server, serve
    from deeprecall.interfaces import cli
    from deeprecall.vectorstores import filters as filter_language

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535; got {args.port}")
    settings = cli.llm_settings(args)  # before any slow work: no LLM means stop at once
    if args.environment:
        settings["environment"] = args.environment
    enforced = dict(cli._parse_filter(f) for f in args.filter) or None
    if enforced:
        settings["filters"] = filter_language.combine(settings.get("filters"), filter_language.validate(enforced))
    if args.transport == "http" and args.host not in LOOPBACK:
        print(REMOTE_WARNING.format(host=args.host), file=sys.stderr)
    store = cli.open_store(args)
    with DeepRecall(vectorstore=store, **settings) as engine:
        server = build_mcp_server(engine, host=args.host, port=args.port)
        serve(server, args.transport)
    return 0
