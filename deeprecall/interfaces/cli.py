"""``deeprecall``: the command line, a thin caller of the Python API.

    deeprecall query "question" --docs PATH      ingest PATH into ./.deeprecall, then answer (steps shown live
                                                 on stderr; --json-events prints the events as JSON lines)
    deeprecall ingest PATH                       ingest only
    deeprecall init                              write a commented starter deeprecall.yaml
    --config FILE / --store KIND --store-url ... any store (the file's store: section, or flags; read-only
                                                 unless writable: true / --writable): see cli_store
    deeprecall providers | doctor                what this machine can reach and run
    deeprecall trace view FILE                   a query's trace file (--trace-dir) as one HTML page
    deeprecall batch Q.jsonl --out A.jsonl       answer a questions file, resumable (--ray: on Ray)

Errors print one line and exit 2; a user never sees a traceback for a
configuration problem.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from typing import Any

from deeprecall.errors import ConfigError, DeepRecallError

NO_LLM_MESSAGE = """no LLM is configured. Do one of:
  export OPENAI_API_KEY=sk-...                      (OpenAI; --model picks the model, default gpt-4o-mini)
  --backend openai-compatible --base-url URL --model NAME
                                                    (any OpenAI-compatible server: vLLM, Ollama, LM Studio ...;
                                                     or set DEEPRECALL_BASE_URL and DEEPRECALL_MODEL)
  --config deeprecall.yaml                          (see docs/configuration.md)
  scripts/local_llm.sh                              (the embedded local model, offline on CPU: builds llama-cpp-python
                                                     and fetches Qwen2.5-Coder-1.5B; or pip install 'deeprecall[local-llm]'
                                                     && deeprecall models fetch)"""
EMBEDDED_NOTICE = ("deeprecall: no API key or base URL set: using the embedded local model {name} (CPU, slow, small). "
                   "For a real provider set OPENAI_API_KEY, or DEEPRECALL_BASE_URL + DEEPRECALL_MODEL, or --backend.")

# Subcommands that live in their own modules: name -> module with add_parser(subparsers) and run(args).
PLUGGED_COMMANDS = {
    "providers": "deeprecall.interfaces.cli_providers",
    "doctor": "deeprecall.interfaces.cli_doctor",
    "models": "deeprecall.interfaces.cli_models",
    "trace": "deeprecall.interfaces.cli_trace",
    "serve": "deeprecall.interfaces.cli_serve",
    "batch": "deeprecall.interfaces.cli_batch",
    "init": "deeprecall.interfaces.cli_init",
    "mcp": "deeprecall.interfaces.cli_mcp",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeprecall", description="Answer questions over your vector store.")
    commands = parser.add_subparsers(dest="command", required=True)
    query = commands.add_parser("query", help="answer a question, with sources")
    query.add_argument("question")
    query.add_argument("--docs", help="files or folder to ingest before answering")
    _store_options(query)
    _llm_options(query)
    query.add_argument("--environment", default=None, help="sandbox: local (default), docker, modal, e2b, daytona, prime")
    query.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="enforced metadata filter")
    query.add_argument("--max-iterations", type=int, default=None)
    query.add_argument("--trace-dir", help="write the query's trace into this folder (JSONL in rlms's log format, "
                                           "see docs/traces.md); `deeprecall trace view FILE` renders one")
    shown = query.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the whole result as JSON")
    shown.add_argument("--json-events", action="store_true",
                       help="print the query's events as they happen, one JSON object a line, the answer event last")
    shown.add_argument("-q", "--quiet", action="store_true", help="show no steps while the query runs")
    ingest = commands.add_parser("ingest", help="add files to the store (content-addressed: re-runs add nothing twice)")
    ingest.add_argument("path")
    ingest.add_argument("--config", help="deeprecall.yaml whose store section says where to ingest")
    _store_options(ingest)
    for name, module_name in PLUGGED_COMMANDS.items():
        try:
            importlib.import_module(module_name).add_parser(commands)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            commands.add_parser(name, help="(not available in this build)")
    return parser


def _store_options(parser: argparse.ArgumentParser) -> None:
    from deeprecall.interfaces.cli_store import add_store_flags

    add_store_flags(parser)


def _llm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="deeprecall.yaml with backends, sandbox and limits")
    parser.add_argument("--backend", help="openai, openai-compatible, or any backend from `deeprecall providers`")
    parser.add_argument("--base-url", help="base URL of an OpenAI-compatible server")
    parser.add_argument("--model", help="model name")
    parser.add_argument("--sub-model", help="cheaper model for llm_query() sub-calls")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "query":
            return run_query(args)
        if args.command == "ingest":
            return run_ingest(args)
        return int(importlib.import_module(PLUGGED_COMMANDS[args.command]).run(args))
    except DeepRecallError as e:
        print(f"deeprecall: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def llm_settings(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Backend settings from flags, then the environment; ``ConfigError`` if there are none."""
    env = dict(os.environ) if env is None else env
    if args.config:
        from deeprecall.config_file import load_config_file

        from_file = load_config_file(args.config)
        from_file.pop("store", None)
        from_file.pop("server", None)
        return from_file
    base_url = args.base_url or env.get("DEEPRECALL_BASE_URL")
    backend = args.backend or ("openai-compatible" if base_url else "openai" if env.get("OPENAI_API_KEY") else None)
    if backend is None:
        return embedded_llm_settings()
    backend = "vllm" if backend in ("openai-compatible", "openai_compatible", "compatible") else backend
    model = args.model or env.get("DEEPRECALL_MODEL") or ("gpt-4o-mini" if backend == "openai" else None)
    if not model:
        raise ConfigError(f"--model is required with --backend {args.backend or 'openai-compatible'} (or set DEEPRECALL_MODEL)")
    kwargs: dict[str, Any] = {"model_name": model}
    if base_url:
        kwargs["base_url"] = base_url
    if env.get("DEEPRECALL_API_KEY"):
        kwargs["api_key"] = env["DEEPRECALL_API_KEY"]
    values: dict[str, Any] = {"backend": backend, "backend_kwargs": kwargs}
    if args.sub_model:
        values.update(other_backends=[backend], other_backend_kwargs=[{**kwargs, "model_name": args.sub_model}])
    return values


def embedded_llm_settings() -> dict[str, Any]:
    """The embedded model when it is installed (root and sub-calls on separate contexts), else ``NO_LLM_MESSAGE``."""
    from deeprecall.providers.local_models import DEFAULT_MODEL, local_llm_missing

    if local_llm_missing() is not None:
        raise ConfigError(NO_LLM_MESSAGE)
    print(EMBEDDED_NOTICE.format(name=DEFAULT_MODEL), file=sys.stderr)
    kwargs = {"model_name": DEFAULT_MODEL}
    return {"backend": "llama-cpp", "backend_kwargs": kwargs, "other_backends": ["llama-cpp"],
            "other_backend_kwargs": [dict(kwargs)]}


def open_store(args: argparse.Namespace) -> Any:
    """The store the flags and the config's ``store:`` section name (see cli_store); read-only unless writable."""
    from deeprecall.interfaces.cli_store import store_spec
    from deeprecall.vectorstores.spec import open_store as open_spec

    spec = store_spec(args)
    if args.command == "ingest" or getattr(args, "docs", None):
        spec.check_writable()  # before connecting: refused by name, not after a slow open
    return open_spec(spec)


def embedding_function(spec: str) -> Any:
    from deeprecall.embeddings.spec import embedding_from_spec

    return embedding_from_spec(spec)


def ingest(store: Any, path: str) -> Any:
    """Ingest ``path``; if that fails, remove the collection when this run created it and left it empty.

    Why: otherwise a failed first run leaves ./.deeprecall bound to its embedding,
    and the retry with another ``--embedding`` stops on an embedding conflict.
    """
    from deeprecall.ingest import ingest_path

    try:
        return ingest_path(store, path, progress=sys.stderr.isatty())
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the ingest's own error is the one to report
            store.discard_if_unused()
        raise


def run_ingest(args: argparse.Namespace) -> int:
    print(ingest(open_store(args), args.path))
    return 0


def run_query(args: argparse.Namespace) -> int:
    from deeprecall import DeepRecall

    settings = llm_settings(args)  # before any slow work: no LLM means stop at once
    if args.environment:
        settings["environment"] = args.environment
    if args.max_iterations:
        settings["max_iterations"] = args.max_iterations
    if args.trace_dir:
        settings["trace_dir"] = args.trace_dir
    store = open_store(args)
    if args.docs:
        ingest(store, args.docs)
    filters = dict(_parse_filter(f) for f in args.filter) or None
    from deeprecall.interfaces.cli_live import choose_view

    view = choose_view(json_events=args.json_events, quiet=args.quiet or args.json, stdout=sys.stdout, stderr=sys.stderr)
    with DeepRecall(vectorstore=store, **settings) as engine:
        if view is None:
            result = engine.query(args.question, filters=filters)
        else:  # the query runs on its own thread; Ctrl-C here leaves the stream, which cancels it
            with view, engine.stream(args.question, filters=filters) as events:
                for event in events:
                    view(event)
            if events.result is None:  # cannot happen: a stream that ended without raising has its result
                raise RuntimeError("the query ended without a result")
            result = events.result
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    elif not args.json_events:
        print_result(result, summary=view is None)
    return 0 if result.error is None else 1


def _parse_filter(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--filter takes KEY=VALUE; got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def print_result(result: Any, *, summary: bool = True) -> None:
    """The answer and its sources on stdout; the bill on stderr unless a step view already showed it."""
    print(result.answer)
    if result.sources:
        print("\nSources:")
        for source in result.sources:
            where = source.metadata.get("source") or source.metadata.get("path") or ""
            preview = " ".join(source.content.split())[:100]
            print(f"  [{source.id[:12]}] {where} (score {source.score:.2f}) {preview}")
    if not summary:
        return
    usage = result.usage
    print(f"\n{len(result.steps)} steps, {usage.root_calls} root + {usage.sub_calls} sub LLM calls, "
          f"{usage.search_calls} searches, {usage.total_tokens} tokens, {result.seconds:.1f}s", file=sys.stderr)
    if result.error:
        print(f"stopped early: {result.error}: {result.error_message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
