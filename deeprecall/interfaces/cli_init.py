"""``deeprecall init``: write a commented starter ``deeprecall.yaml``.

    deeprecall init                                    asks for the store, backend and sandbox (on a terminal)
    deeprecall init --store qdrant --store-url http://localhost:6333 --backend openai --sandbox docker --yes

Why a generator rather than a copied example: the store section's keys differ per kind, and a file that does not
load is worse than none. Every file this writes loads with ``DeepRecallConfig.from_file`` and the CLI's
``--config`` (the tests check each store kind). Secrets are never written: they appear as ``${VAR}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError
from deeprecall.vectorstores.spec import KINDS, url_password

SANDBOXES = ("local", "docker", "modal", "e2b", "daytona", "prime")
BACKENDS = ("openai", "anthropic", "openai-compatible", "llama-cpp")  # offered; any known backend is accepted
DEFAULT_MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "llama-cpp": "qwen2.5-coder-1.5b"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# kind -> (key of its location, default location, writable by default: a folder DeepRecall makes is its own)
LOCATION = {
    "chroma": ("path", "./.deeprecall", True),
    "faiss": ("path", "./.deeprecall-faiss", True),
    "lancedb": ("uri", "./.deeprecall-lance", True),
    "milvus": ("uri", "./milvus.db", True),
    "qdrant": ("url", "http://localhost:6333", False),
    "pgvector": ("dsn", "postgresql://postgres:${PGPASSWORD:-}@localhost:5432/postgres", False),
    "pinecone": ("host", "", False),
}
MAPPING_HINTS = {  # the field-mapping keys each kind takes, written commented out (docs/vectorstores.md)
    "chroma": ["# host: localhost                    # a Chroma server instead of the folder (port: 8000)",
               "# text_key: body                    # a metadata key holding the text (default: the documents)"],
    "qdrant": ["api_key: ${QDRANT_API_KEY:-}         # Qdrant Cloud; empty for a local server",
               "# text_field: text                  # payload key with the text (LangChain: page_content)",
               "# id_field: doc_id                  # payload key with the id (null: the point id)",
               "# metadata_field: metadata          # one nested payload key holding the metadata"],
    "pgvector": ["# id_column: id", "# text_column: content", "# vector_column: embedding",
                 "# metadata_column: metadata           # one JSONB column (LangChain: cmetadata)",
                 "# metadata_columns: [lang, year]      # or plain columns"],
    "faiss": ["# index: ./my.index                 # your own index instead (read-only), with:",
              "# documents: ./docstore.jsonl        # one record per vector, in FAISS id order"],
    "milvus": ["# token: ${MILVUS_TOKEN:-}         # a Milvus server's token", "# text_field: text", "# id_field: id",
               "# vector_field: vector"],
    "lancedb": ["# text_field: text", "# id_field: id", "# vector_field: vector"],
    "pinecone": ["api_key: ${PINECONE_API_KEY:-}       # empty: read from PINECONE_API_KEY", "namespace: \"\"",
                 "# text_field: text                  # metadata key holding the text"],
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "init", help="write a commented starter deeprecall.yaml (asks on a terminal, or takes flags)")
    parser.add_argument("--path", default="deeprecall.yaml", help="file to write (default ./deeprecall.yaml)")
    parser.add_argument("--store", choices=KINDS, help="store kind")
    parser.add_argument("--store-url", help="where the store is: folder, server URL, DSN (passwords as ${VAR})")
    parser.add_argument("--collection", help="collection, table or index name (default deeprecall)")
    parser.add_argument("--writable", action="store_true", help="let DeepRecall write to (ingest into) the store")
    parser.add_argument("--backend", help=f"LLM backend: {', '.join(BACKENDS)}, or any from `deeprecall providers`")
    parser.add_argument("--model", help="model name (default per backend)")
    parser.add_argument("--base-url", help="base URL of an OpenAI-compatible server")
    parser.add_argument("--sandbox", choices=SANDBOXES, help="where the model's code runs")
    parser.add_argument("-y", "--yes", "--non-interactive", dest="yes", action="store_true",
                        help="ask nothing: defaults for what the flags leave out")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    interactive = not args.yes and sys.stdin.isatty()
    if not interactive and not args.yes and not (args.store and args.backend and args.sandbox):
        raise ConfigError("not a terminal, so nothing can be asked: pass --store, --backend and --sandbox, "
                          "or --yes to take the defaults (chroma, openai, local)")
    choices = _choose(args, interactive)
    path.write_text(render(**choices), encoding="utf-8")
    print(f"wrote {path}: try `deeprecall ingest DOCS --config {path}` and `deeprecall query QUESTION --config {path}`")
    return 0


def _choose(args: argparse.Namespace, interactive: bool) -> dict[str, Any]:
    ask = _ask if interactive else (lambda _q, default, _c=None: default)
    store = args.store or ask("store", "chroma", KINDS)
    key, default_location, default_writable = LOCATION[store]
    location = args.store_url or ask(f"store {key}", default_location)
    collection = args.collection or ask("collection" if store != "pinecone" else "index name", "deeprecall")
    backend = args.backend or ask("LLM backend", "openai", BACKENDS)
    model = args.model or DEFAULT_MODEL.get(backend) or ask("model name", "")
    if not model:
        raise ConfigError(f"--model is required with --backend {backend}")
    base_url = args.base_url
    if backend in ("openai-compatible", "vllm") and not base_url:
        base_url = ask("base URL", "http://localhost:8000/v1")
    sandbox = args.sandbox or ask("sandbox", "local", SANDBOXES)
    return {"store": store, "location": location, "collection": collection,
            "writable": args.writable or default_writable, "backend": backend, "model": model,
            "base_url": base_url, "sandbox": sandbox}


def _ask(question: str, default: str, choices: tuple[str, ...] | None = None) -> str:
    shown = f" ({'/'.join(choices)})" if choices else ""
    while True:
        try:
            answer = input(f"{question}{shown} [{default}]: ").strip() or default
        except EOFError:
            raise ConfigError("deeprecall init was not answered; pass --yes to take the defaults") from None
        if choices is None or answer in choices:
            return answer
        print(f"  choose one of: {', '.join(choices)}", file=sys.stderr)


def render(*, store: str, location: str, collection: str, writable: bool, backend: str, model: str,
           base_url: str | None, sandbox: str) -> str:
    """The file's text: each section with comments saying what else it takes."""
    if "${" not in (url_password(location) or "${"):
        raise ConfigError("the store URL holds a password: write it as ${VAR}, e.g. "
                          "postgresql://user:${PGPASSWORD}@host/db, so the file never holds the secret")
    return "\n".join([
        "# deeprecall.yaml, written by `deeprecall init`. Reference: docs/configuration.md",
        "# ${VAR} is read from the environment (${VAR:-default} falls back): keep secrets there, not here.",
        "", *_backend_lines(backend, model, base_url), "", *_sandbox_lines(sandbox), "",
        *_store_lines(store, location, collection, writable), "",
        "limits:                                 # a query stops at the first one it reaches",
        "  max_iterations: 15", "  max_seconds: 300",
        "  max_llm_calls: 150                     # root turns and sub-calls; docs/limits.md has the worst-case spend",
        "  max_sub_calls: 100", "  max_tokens: 1000000", "  # max_cost_usd: 0.50", "",
        "search:", "  top_k: 5", "  # filters: {tenant: acme}              # enforced on every search", "",
    ])


def _backend_lines(backend: str, model: str, base_url: str | None) -> list[str]:
    lines = ["backends:                               # docs/providers.md lists every type", "  main:",
             f"    type: {backend}", f"    model_name: {_q(model)}"]
    if base_url:
        lines.append(f"    base_url: {_q(base_url)}")
    if backend in KEY_ENV:
        lines.append(_note(f"    # api_key: ${{{KEY_ENV[backend]}}}", f"read from {KEY_ENV[backend]} when not set here"))
    if backend == "llama-cpp":
        lines.append("    # the embedded model: `deeprecall models fetch` downloads it once")
    return [*lines, "root: main                              # the model that writes the code",
            "# sub_backends: [main]                  # llm_query() targets; default: the root model"]


def _sandbox_lines(sandbox: str) -> list[str]:
    notes = {"local": "a separate worker process on this machine", "docker": "a container per query",
             "modal": "Modal's cloud sandboxes (MODAL_TOKEN_ID / MODAL_TOKEN_SECRET)",
             "e2b": "E2B cloud sandboxes (E2B_API_KEY)", "daytona": "Daytona sandboxes (DAYTONA_API_KEY)",
             "prime": "Prime Intellect sandboxes (PRIME_API_KEY)"}
    lines = ["sandbox:                                # where the model's code runs (docs/sandboxes.md)",
             _note(f"  type: {sandbox}", notes[sandbox])]
    if sandbox == "docker":
        lines.append("  image: python:3.12-slim")
    return lines


def _store_lines(store: str, location: str, collection: str, writable: bool) -> list[str]:
    key = LOCATION[store][0]
    lines = ["store:                                  # docs/configuration.md#store; field mapping: docs/vectorstores.md",
             f"  type: {store}"]
    if location:
        lines.append(f"  {key}: {_q(location)}")
    elif store == "pinecone":
        lines.append("  # host: https://INDEX-PROJECT.svc.pinecone.io   # or the index name below")
    lines += [f"  collection: {_q(collection)}",
              _note(f"  writable: {'true' if writable else 'false'}", "false: read-only, never created, ingest refused"),
              "  embedding: default                    # the model that made the vectors: default (all-MiniLM-L6-v2),"
              " hashing, openai:MODEL, ...",
              *(f"  {hint}" for hint in MAPPING_HINTS[store])]
    return lines


def _note(line: str, comment: str) -> str:
    """A line with its comment in the file's comment column."""
    return f"{line:<39} # {comment}"


def _q(value: str) -> str:
    """A YAML scalar for any text: JSON's double-quoted string is valid YAML."""
    return json.dumps(value)
