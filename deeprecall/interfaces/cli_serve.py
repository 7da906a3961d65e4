"""``deeprecall serve``: the OpenAI-compatible server (deeprecall/server/) on uvicorn, from the config file.

    deeprecall serve --config deeprecall.yaml [--host 127.0.0.1] [--port 8000] [--workers N]
    deeprecall serve --new-key            a fresh API key and the key_sha256 line for server.keys
    echo -n "$KEY" | deeprecall serve --hash-key      the key_sha256 of an existing key

The config file gives the engine (backends, sandbox, limits, search), the store, and the ``server:``
section (keys, tenants, limits; deeprecall/server/settings.py). One engine per process; ``--workers N`` runs N
processes behind the port (uvicorn's supervisor), each building its own engine; set ``server.redis_url`` so
they share the keys' limits (docs/server.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

ARGS_ENV = "DEEPRECALL_SERVE_ARGS"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve the store as an OpenAI-compatible chat API (needs the extra: pip install 'deeprecall[server]')")
    parser.add_argument("--config", help="deeprecall.yaml: backends, sandbox, store and the server: section")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes behind the port, one engine each (share limits with server.redis_url)")
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
    if args.workers < 1:
        raise ConfigError(f"--workers must be 1 or more; got {args.workers}")
    settings = _settings(args)  # a bad server: section stops here, before any process starts
    _cap_malloc_arenas()
    options: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": args.log_level,
                               "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_seconds)}
    if args.workers > 1:  # each worker process imports the factory and builds its own engine from the same flags
        if settings.redis_url is None:
            print(f"deeprecall serve: {args.workers} workers without server.redis_url: each process counts the "
                  f"keys' limits on its own, so a key may get up to {args.workers}x its limits", file=sys.stderr)
        os.environ[ARGS_ENV] = json.dumps({k: v for k, v in vars(args).items() if k != "func"})
        uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=args.workers, **options)
        return 0
    engine = _engine(args)
    from deeprecall.server.app import create_app

    try:  # the app's lifespan closes the engine; a forced exit (a second Ctrl-C) skips it, hence finally
        uvicorn.run(create_app(engine, settings), **options)
    finally:
        engine.close()
    return 0


def _cap_malloc_arenas() -> None:
    """A long-running server's RSS creeps up by glibc's per-thread arenas keeping freed memory (each query starts
    short-lived threads; docs/server.md#memory-over-time). This process is ours, so cap them at 2, unless the
    operator chose: in the environment for the worker processes uvicorn spawns, with mallopt for this one."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    os.environ["MALLOC_ARENA_MAX"] = "2"
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX; not glibc: no such symbol, nothing to cap
    except (OSError, AttributeError):
        pass


def app_from_environment() -> Any:
    """uvicorn's app factory for ``--workers N``: this worker process's engine and app, from the serve flags
    the parent left in ``DEEPRECALL_SERVE_ARGS``."""
    from deeprecall.server.app import create_app

    args = argparse.Namespace(**json.loads(os.environ[ARGS_ENV]))
    return create_app(_engine(args), _settings(args))


def _settings(args: argparse.Namespace) -> Any:
    from deeprecall.config_file import load_config_file
    from deeprecall.server.settings import ServerSettings

    return ServerSettings.from_section(load_config_file(args.config).get("server"))


def _engine(args: argparse.Namespace) -> Any:
    """One engine: the config file's backends, sandbox, limits and search; its store (or the store flags)."""
    from deeprecall.config_file import load_config_file
    from deeprecall.engine.engine import DeepRecall

    values = load_config_file(args.config)
    values.pop("server", None)
    values.pop("store", None)
    return DeepRecall(vectorstore=_store(args), **values)


def _store(args: argparse.Namespace) -> Any:
    """The config's ``store:`` section and the store flags, opened as ``deeprecall query`` opens them."""
    from deeprecall.interfaces.cli import open_store

    return open_store(args)
