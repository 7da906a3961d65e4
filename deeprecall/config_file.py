"""Read ``deeprecall.yaml`` into DeepRecallConfig fields (``DeepRecallConfig.from_file`` calls this).

Why YAML: the gateways our users come from (seeds 002 and 004) configure
backends and pools in YAML with ``${ENV}`` references, so their files carry
over almost as they are; YAML has comments, and a pool's list of members reads
naturally. ``.toml`` files with the same structure are accepted too (stdlib
``tomllib``), for projects that keep everything in TOML.

    backends:                       # named backends; `type` is any `backend` value
      gpt:    {type: openai, model_name: gpt-4o-mini, api_key: "${OPENAI_API_KEY}"}
      claude: {type: anthropic, model_name: claude-sonnet-4-6, max_tokens: 8192}
      llm-pool:
        type: pool
        strategy: latency
        members: [{backend: gpt, weight: 70}, {backend: claude, weight: 30}]
    root: llm-pool                  # a name above, or an inline {type: ..., ...}
    sub_backends: [gpt]             # llm_query(model=...) targets; first is the default
    sandbox: {type: docker, image: "python:3.12-slim"}
    store: {type: chroma, path: ./chroma, collection: docs}
    limits: {max_iterations: 20, max_cost_usd: "${BUDGET:-0.50}"}
    search: {top_k: 8, filters: {tenant: acme}}

``${VAR}`` must be set; ``${VAR:-default}`` falls back; ``$$`` is a literal ``$``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError, MissingDependencyError

CONFIG_FIELDS = ("backend", "backend_kwargs", "other_backends", "other_backend_kwargs", "environment",
                 "environment_kwargs", "max_iterations", "max_search_calls", "max_tokens", "max_seconds",
                 "max_cost_usd", "top_k", "filters", "trace_dir", "prompt_style", "ground_first_turn",
                 "max_sub_calls", "max_llm_calls", "sub_concurrency", "max_depth")
LIMITS = ("max_iterations", "max_search_calls", "max_tokens", "max_seconds", "max_cost_usd", "max_sub_calls",
          "max_llm_calls", "sub_concurrency", "max_depth")
SECTIONS = ("backends", "pools", "root", "sub_backends", "sandbox", "store", "limits", "search", "server")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEY = re.compile(r"(^|_)(key|secret|password|token)$")


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse, interpolate and flatten a config file into DeepRecallConfig fields (plus ``"store"``)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(file)!r} does not exist")
    raw = _parse(file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file.name}: the top level must be a mapping of settings")
    data = _interpolate(raw, file.name, "")
    unknown = sorted(set(data) - set(SECTIONS) - set(CONFIG_FIELDS))
    if unknown:
        raise ConfigError(f"{file.name}: unknown settings {unknown}; expected {sorted(SECTIONS)} or {list(CONFIG_FIELDS)}")
    return _flatten(data, file.name)


def _parse(file: Path) -> Any:
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ImportError as e:
                raise MissingDependencyError("tomli", "toml", "reading a TOML config on Python 3.10") from e
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file.name}: not valid TOML: {e}") from None
    try:
        import yaml
    except ImportError as e:
        raise MissingDependencyError("pyyaml", "yaml", f"reading {file.name}") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{file.name}: not valid YAML: {e}") from None


def interpolate_flag(value: str, flag: str, key: str = "") -> Any:
    """``${VAR}`` in a command-line value, by the file's rules (``key`` names a secret that stays a string).

    Why: a secret written as ``'${QDRANT_API_KEY}'`` (quoted, so the shell leaves it) is read here, and never
    shows in the process list as the shell-expanded value would."""
    return _interpolate(value, flag, key or flag)


def _interpolate(value: Any, fname: str, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, fname, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, fname, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                raise ConfigError(f"{fname}: {where} uses ${{{name}}} but {name} is not set; "
                                  f"set it or write ${{{name}:-default}}")
            return default
        return found

    result = _VAR.sub(sub, value)
    whole = _VAR.fullmatch(value) is not None and value != "$$"
    leaf = where.rsplit(".", 1)[-1]
    return _scalar(result) if whole and not _SECRET_KEY.search(leaf) else result


def _scalar(text: str) -> Any:
    """A whole-value ``${VAR}`` gets the type YAML would give the same text: numbers and booleans."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _entry(spec: Any, named: dict[str, Any], fname: str, where: str) -> tuple[str, dict[str, Any]]:
    """A backend reference (a declared name) or an inline ``{type: ..., ...}`` -> ``(backend, kwargs)``."""
    if isinstance(spec, str):
        if spec in named:
            return _entry(named[spec], named, fname, f"backends.{spec}")
        return spec, {}
    if not isinstance(spec, dict) or not (spec.get("type") or spec.get("backend")):
        raise ConfigError(f"{fname}: {where} must be a backend name or a mapping with 'type', e.g. {{type: openai, ...}}")
    kwargs = {k: v for k, v in spec.items() if k not in ("type", "backend")}
    backend = str(spec.get("type") or spec.get("backend"))
    if backend == "pool":
        kwargs["members"] = [_member(m, named, fname, f"{where}.members[{i}]") for i, m in enumerate(kwargs.get("members") or [])]
    elif backend == "hybrid":
        for role in ("reasoner", "executor"):
            if role in kwargs:
                b, k = _entry(kwargs[role], named, fname, f"{where}.{role}")
                kwargs[role] = {"backend": b, **k}
    return backend, kwargs


def _member(spec: Any, named: dict[str, Any], fname: str, where: str) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"backend": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{fname}: {where} must be a backend name or a mapping")
    ref = spec.get("backend") or spec.get("name") or spec.get("type")
    extra = {k: v for k, v in spec.items() if k not in ("backend", "name", "type")}
    backend, kwargs = _entry(ref if ref in named else {**spec, "type": ref}, named, fname, where)
    if ref in named:
        kwargs = {**kwargs, **extra}
    return {"backend": backend, **kwargs}


def _flatten(data: dict[str, Any], fname: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: data[k] for k in CONFIG_FIELDS if k in data}
    named = _named_backends(data, fname)

    def put(key: str, value: Any) -> None:
        if key in out and out[key] != value:
            raise ConfigError(f"{fname}: {key!r} is set twice (directly and through a section); keep one")
        out[key] = value

    if "root" in data:
        backend, kwargs = _entry(data["root"], named, fname, "root")
        put("backend", backend)
        put("backend_kwargs", kwargs)
    elif len(named) == 1 and "backend" not in out:
        backend, kwargs = _entry(next(iter(named)), named, fname, "root")
        put("backend", backend)
        put("backend_kwargs", kwargs)
    if "sub_backends" in data:
        subs = data["sub_backends"] or []
        if not isinstance(subs, list):
            raise ConfigError(f"{fname}: sub_backends must be a list of backend names or mappings")
        pairs = [_entry(s, named, fname, f"sub_backends[{i}]") for i, s in enumerate(subs)]
        put("other_backends", [b for b, _ in pairs])
        put("other_backend_kwargs", [k for _, k in pairs])
    if "sandbox" in data:
        sandbox = data["sandbox"]
        if isinstance(sandbox, str):
            sandbox = {"type": sandbox}
        if not isinstance(sandbox, dict):
            raise ConfigError(f"{fname}: sandbox must be a name such as 'docker' or a mapping with 'type'")
        if "type" in sandbox:
            put("environment", str(sandbox["type"]))
        put("environment_kwargs", {k: v for k, v in sandbox.items() if k != "type"})
    for section, keys in (("limits", LIMITS), ("search", ("top_k", "filters"))):
        block = data.get(section) or {}
        if not isinstance(block, dict) or set(block) - set(keys):
            raise ConfigError(f"{fname}: {section} takes only {list(keys)}")
        for key, value in block.items():
            put(key, value)
    if "server" in data:  # read by `deeprecall serve` (deeprecall/server/settings.py)
        out["server"] = data["server"]
    if "store" in data:
        if not isinstance(data["store"], dict):
            raise ConfigError(f"{fname}: store must be a mapping, e.g. {{type: chroma, path: ./chroma}}")
        out["store"] = data["store"]
    return out


def _named_backends(data: dict[str, Any], fname: str) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for section in ("backends", "pools"):
        block = data.get(section) or {}
        if isinstance(block, list):  # seed 004's list form: [{name: ..., type: ..., config: {...}}]
            items = {}
            for i, item in enumerate(block):
                if not isinstance(item, dict) or "name" not in item:
                    raise ConfigError(f"{fname}: {section}[{i}] needs a 'name'")
                body = {k: v for k, v in item.items() if k not in ("name", "config")} | dict(item.get("config") or {})
                items[str(item["name"])] = body
            block = items
        if not isinstance(block, dict):
            raise ConfigError(f"{fname}: {section} must map names to backends")
        for name, spec in block.items():
            if section == "pools" and isinstance(spec, dict):
                spec = {"type": "pool", **spec}
            if name in named:
                raise ConfigError(f"{fname}: backend name {name!r} is declared twice")
            named[str(name)] = spec
    return named
