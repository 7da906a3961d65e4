"""``deeprecall serve``: the OpenAI-compatible server (deeprecall/server/) on uvicorn, from the config file.

    deeprecall serve --config deeprecall.yaml [--host 127.0.0.1] [--port 8000]
    deeprecall serve --new-key            a fresh API key and the key_sha256 line for server.keys
    echo -n "$KEY" | deeprecall serve --hash-key      the key_sha256 of an existing key

The config file gives the engine (backends, sandbox, limits, search), the store, and the ``server:``
section (keys, tenants, limits; deeprecall/server/settings.py). One engine per process; for more
processes behind one port use replicas with shared counters (docs/server.md).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve the store as an OpenAI-compatible chat API (needs the extra: pip install 'deeprecall[server]')")
    parser.add_argument("--config", help="deeprecall.yaml: backends, sandbox, store and the server: section")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    from deeprecall.interfaces.cli_store import add_store_flags

    add_store_flags(parser)  # the config's store: section, or these flags (read-only unless --writable)
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--hash-key", action="store_true", help="read a key on stdin, print its key_sha256")
    keys.add_argument("--new-key", action="store_true", help="print a fresh API key and its key_sha256")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from deeprecall.server.auth import hash_key, new_key

    if args.hash_key or args.new_key:
        key = new_key() if args.new_key else sys.stdin.read().strip()
        if args.new_key:
            print(f"key:        {key}")
        print(f"key_sha256: {hash_key(key)}")
        return 0
    from deeprecall.errors import ConfigError, MissingDependencyError

    if not args.config:
        raise ConfigError("deeprecall serve needs --config deeprecall.yaml (its server: section holds the API keys; "
                          "see docs/server.md)")
    try:
        import uvicorn
    except ImportError as e:
        raise MissingDependencyError("uvicorn", "server", "deeprecall serve") from e
    from deeprecall.config_file import load_config_file
    from deeprecall.server.app import create_app
    from deeprecall.server.settings import ServerSettings

    values = load_config_file(args.config)
    settings = ServerSettings.from_section(values.pop("server", None))
    values.pop("store", None)
    store = _store(args)
    from deeprecall.engine.engine import DeepRecall

    engine = DeepRecall(vectorstore=store, **values)
    app = create_app(engine, settings)
    try:  # the app's lifespan closes the engine; a forced exit (a second Ctrl-C) skips it, hence finally
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                    timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds))
    finally:
        engine.close()
    return 0


def _store(args: argparse.Namespace) -> Any:
    """The config's ``store:`` section and the store flags, opened as ``deeprecall query`` opens them."""
    from deeprecall.interfaces.cli import open_store

    return open_store(args)
