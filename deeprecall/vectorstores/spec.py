"""Open any store from a plain description: the config file's ``store:`` section, CLI flags, a server's settings.

    spec = StoreSpec.from_mapping({"type": "qdrant", "url": "http://localhost:6333", "collection": "kb",
                                   "api_key": "${QDRANT_API_KEY}", "text_field": "page_content"})
    store = open_store(spec)            # read-only: never creates, refuses ingest (ReadOnlyStoreError)

Why one place: the CLI, ``deeprecall serve``, the MCP server and batch runs all turn the same section into a
store; each writing its own would drift (one forgetting read-only, another logging a DSN). Keys per kind are
the adapter's own keyword names (docs/vectorstores.md has the field mapping), so the docs of one serve both.

Read-only unless ``writable: true``: a store opened without it is never created and refuses every write, even
one DeepRecall created earlier. With it, a missing collection (table, index folder) is created, so
``deeprecall ingest`` can fill a new one. Secrets (``api_key``, ``token``, ``password``, a DSN's password) are
hidden from ``repr`` and scrubbed from every error ``open_store`` raises; put them in the file as ``${VAR}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deeprecall.errors import (
    ConfigError,
    DeepRecallError,
    ReadOnlyStoreError,
    StoreFullError,
    VectorStoreError,
    redact,
)
from deeprecall.vectorstores._support import disk_full

DEFAULT_COLLECTION = "deeprecall"
# kind -> the keys its section may hold besides type/collection/writable/embedding (the adapter's own names)
OPTIONS: dict[str, tuple[str, ...]] = {
    "chroma": ("path", "host", "port", "text_key"),
    "qdrant": ("url", "api_key", "path", "location", "text_field", "id_field", "metadata_field", "metadata_fields",
               "vector_name"),
    "pgvector": ("dsn", "id_column", "text_column", "vector_column", "metadata_column", "metadata_columns",
                 "distance", "timeout"),
    "faiss": ("path", "index", "documents", "text_field", "id_field", "metadata_field", "normalize"),
    "milvus": ("uri", "token", "text_field", "id_field", "vector_field", "metadata_field", "metadata_fields"),
    "lancedb": ("uri", "text_field", "id_field", "vector_field", "metadata_fields"),
    "pinecone": ("host", "api_key", "namespace", "text_field"),
}
KINDS = tuple(OPTIONS)
URL_KEY = {"chroma": "host", "qdrant": "url", "pgvector": "dsn", "milvus": "uri", "lancedb": "uri",
           "pinecone": "host", "faiss": "path"}  # where a generic --store-url goes
ALIASES = {"table": "collection", "index_name": "collection", "kind": "type"}
SECRET_KEYS = ("api_key", "token", "password")
_MISSING = re.compile(r"has no (collection|table)|not a DeepRecall FAISS folder")
_MISSING_HINT = re.compile(r"; pass create=True to make one")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)(\S+)(@)")  # to the last @: a password may hold one
_KEYWORD_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)([^\s'\"]+)()")  # libpq's "host=h password=p" form


@dataclass(frozen=True, repr=False)
class StoreSpec:
    """Which store, where, with which field mapping; ``options`` are the adapter's keyword arguments."""

    kind: str
    collection: str = DEFAULT_COLLECTION
    writable: bool = False
    embedding: str = "default"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "store") -> StoreSpec:
        """A spec from a config section (already ``${VAR}``-interpolated); ``ConfigError`` names a bad key."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, e.g. {{type: qdrant, url: http://localhost:6333}}")
        values = {ALIASES.get(str(k), str(k)): v for k, v in data.items()}
        kind = str(values.pop("type", "") or "")
        if kind not in OPTIONS:
            raise ConfigError(f"{where}.type must be one of {', '.join(KINDS)}; got {kind or 'nothing'!r}")
        collection = str(values.pop("collection", None) or DEFAULT_COLLECTION)
        writable = _boolean(values.pop("writable", False), f"{where}.writable")
        embedding = str(values.pop("embedding", None) or "default")
        unknown = sorted(set(values) - set(OPTIONS[kind]))
        if unknown:
            raise ConfigError(f"{where}: {kind} does not take {unknown}; it takes collection, writable, embedding, "
                              f"{', '.join(OPTIONS[kind])}")
        options = {k: v for k, v in values.items() if not (k in SECRET_KEYS and v in ("", None))}  # null is a value
        return cls(kind, collection, writable, embedding, options)

    @classmethod
    def from_config_file(cls, path: str | Path) -> StoreSpec | None:
        """The ``store:`` section of a deeprecall.yaml/.toml, or None when it has none."""
        from deeprecall.config_file import load_config_file

        section = load_config_file(path).get("store")
        return None if section is None else cls.from_mapping(section, f"{Path(path).name}: store")

    def secrets(self) -> list[str]:
        """Every secret value in the spec, so errors can be scrubbed of them."""
        found = [str(v) for k, v in self.options.items() if k in SECRET_KEYS and v]
        for value in self.options.values():
            if isinstance(value, str):
                found += [m.group(2) for p in (_URL_PASSWORD, _KEYWORD_PASSWORD) for m in p.finditer(value)]
        return found

    def redacted(self) -> dict[str, Any]:
        """The spec as a mapping with secrets replaced by ``***``: safe to log, show or put in a health check."""
        options = {k: "***" if k in SECRET_KEYS else _hide_password(v) for k, v in self.options.items()}
        return {"type": self.kind, "collection": self.collection, "writable": self.writable,
                "embedding": self.embedding, **options}

    def label(self) -> str:
        """A short name for messages: ``qdrant collection 'kb'``."""
        return f"{self.kind} collection {self.collection!r}"

    def check_writable(self) -> None:
        """Raise ``ReadOnlyStoreError`` before an ingest starts on a store opened read-only."""
        if not self.writable:
            raise ReadOnlyStoreError(f"the {self.label()}")

    def __repr__(self) -> str:
        return f"StoreSpec({self.redacted()!r})"


def open_store(spec: StoreSpec, *, embedding_fn: Any = None) -> Any:
    """Open the store ``spec`` describes (imports only that adapter's SDK).

    ``embedding_fn`` overrides ``spec.embedding`` (a server that already built one passes it). Read-only specs
    never create anything and come back with ``writable = False``; writable ones create what is missing. Every
    error is a ``DeepRecallError`` whose message holds none of the spec's secrets.
    """
    if embedding_fn is None:
        from deeprecall.embeddings.spec import embedding_from_spec

        embedding_fn = embedding_from_spec(spec.embedding)
    secrets = spec.secrets()
    try:
        store = _OPENERS[spec.kind](spec, embedding_fn)
    except DeepRecallError as e:
        message = str(e)
        if not spec.writable and _MISSING.search(message):
            message = _MISSING_HINT.sub("", message) + (" (a read-only store is never created: set `writable: true` "
                                                         "in the store section, or pass --writable, to create it)")
        if not secrets and message == str(e):
            raise
        raise _same_kind(e, redact(message, secrets)) from (None if secrets else e)
    except Exception as e:  # a vendor client that failed outside its adapter's mapping
        if disk_full(e):  # an embedded store creating its files on a full disk
            raise StoreFullError(spec.label(), "opening", redact(f"{type(e).__name__}: {e}", secrets)[:300]) from None
        raise VectorStoreError(redact(f"opening the {spec.label()}: {type(e).__name__}: {e}", secrets)) from None
    store.writable = spec.writable
    return store


def _same_kind(error: DeepRecallError, message: str) -> DeepRecallError:
    for kind in (VectorStoreError, ConfigError):
        if isinstance(error, kind):
            return kind(message)
    return VectorStoreError(message)


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ConfigError(f"{where} must be true or false; got {value!r}")


def url_password(value: str) -> str | None:
    """The password in a URL or DSN (``scheme://user:PASSWORD@host``), if it has one."""
    found = _URL_PASSWORD.search(value)
    return found.group(2) if found else None


def _hide_password(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", value))


# -- one opener per kind: the adapter's own constructor, create only when writable ------------------------------
def _chroma(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.chroma import ChromaStore, _chromadb

    o = dict(spec.options)
    host, port = o.get("host"), o.get("port")
    if host and "://" in str(host):
        parts = urlsplit(str(host))
        host, port = parts.hostname, port or parts.port
    if host:
        client = _chromadb().HttpClient(host=str(host), port=int(port or 8000))
    else:
        client = _chromadb().PersistentClient(path=str(o.get("path") or "./.deeprecall"))
    if spec.writable:
        return ChromaStore(spec.collection, persist_directory=o.get("path"), client=client, embedding_fn=fn,
                           writable=True, text_key=o.get("text_key"))
    return ChromaStore.attach(spec.collection, client=client, embedding_fn=fn, text_key=o.get("text_key"))


def _qdrant(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.qdrant import QdrantStore

    return QdrantStore(spec.collection, embedding_fn=fn, writable=spec.writable, create=spec.writable,
                       **dict(spec.options))


def _pgvector(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.pgvector import PgVectorStore

    if not spec.options.get("dsn"):
        raise ConfigError("a pgvector store needs dsn: postgresql://user:${PGPASSWORD}@host:5432/db")
    return PgVectorStore(spec.collection, embedding_fn=fn, writable=spec.writable, create=spec.writable,
                         **dict(spec.options))


def _faiss(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.faiss import FaissStore

    o = dict(spec.options)
    if o.get("index"):
        if spec.writable:
            raise ConfigError("a FAISS index you built (index:) is attached read-only; drop `writable: true`, or "
                              "use path: for a folder DeepRecall writes")
        return FaissStore.attach(str(o.pop("index")), _docstore(o.pop("documents", None)), embedding_fn=fn, **o)
    if not o.get("path"):
        raise ConfigError("a faiss store needs path: (a DeepRecall FAISS folder) or index: plus documents:")
    if spec.writable:
        return FaissStore(embedding_fn=fn, path=str(o["path"]))
    return FaissStore.load(str(o["path"]), embedding_fn=fn)


def _docstore(path: Any) -> Any:
    """``documents:`` of an attached FAISS index: a .json list/mapping or a .jsonl file, one record per vector."""
    if not path:
        raise ConfigError("a faiss index: needs documents: a .json or .jsonl file with one record per vector")
    file = Path(str(path))
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"faiss documents {str(file)!r} could not be read: {e}") from None
    return {int(k): v for k, v in data.items()} if isinstance(data, dict) else data


def _milvus(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.milvus import MilvusStore

    return MilvusStore(spec.collection, embedding_fn=fn, writable=spec.writable, create=spec.writable,
                       **dict(spec.options))


def _lancedb(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.lancedb import LanceDBStore

    return LanceDBStore(spec.collection, embedding_fn=fn, writable=spec.writable, create=spec.writable,
                        **dict(spec.options))


def _pinecone(spec: StoreSpec, fn: Any) -> Any:
    from deeprecall.vectorstores.pinecone import PineconeStore

    index_name = "" if spec.options.get("host") and spec.collection == DEFAULT_COLLECTION else spec.collection
    return PineconeStore(index_name, embedding_fn=fn, writable=spec.writable, **dict(spec.options))


_OPENERS: dict[str, Callable[[StoreSpec, Any], Any]] = {
    "chroma": _chroma, "qdrant": _qdrant, "pgvector": _pgvector, "faiss": _faiss, "milvus": _milvus,
    "lancedb": _lancedb, "pinecone": _pinecone,
}
