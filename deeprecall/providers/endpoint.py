"""Resolve ``(backend, backend_kwargs)`` into an ``Endpoint``: provider row, model, URL, key, options.

This is where configuration errors are raised, all before any network call:
an unknown backend, a missing ``model_name``, a missing key (naming the env
var), a key of the wrong shape, an unknown kwarg. What differs between API
shapes (their options, whether they need a URL or a key, their env vars) is
asked of the row's ``ApiShape`` (``shapes.py``); nothing here branches on a
shape's name. The adapters and the pool both build from an ``Endpoint``, so a
backend means the same thing alone and inside a pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from deeprecall.errors import ConfigError, MissingAPIKeyError
from deeprecall.providers.pricing import CostModel, parse_pricing, table_price
from deeprecall.providers.registry import ProviderSpec, key_format_problem, normalize_model_name, require_provider
from deeprecall.providers.shapes import ApiShape, shape_for

COMMON_OPTIONS = frozenset(
    {
        "model",
        "model_name",
        "api_key",
        "base_url",
        "timeout",
        "max_retries",
        "default_headers",
        "sampling_args",
        "pricing",
        "price_model",
    }
)


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to talk to one model. ``api_key`` is kept out of ``repr``."""

    spec: ProviderSpec
    model: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    cost: CostModel = field(default_factory=lambda: CostModel(None))
    timeout: float = 120.0
    max_retries: int = 2

    @property
    def shape(self) -> ApiShape:
        return shape_for(self.spec.adapter)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _base_url(spec: ProviderSpec, given: str | None) -> str | None:
    url = given or (_env(spec.base_url_env_var) if spec.base_url_env_var else None) or spec.default_base_url
    if url and spec.id == "ollama":  # OLLAMA_HOST is a host; its OpenAI-compatible API lives under /v1
        url = url if "://" in url else f"http://{url}"
        url = url.rstrip("/")
        url = url if url.endswith("/v1") else f"{url}/v1"
    return url.rstrip("/") if url else None


def _cost(spec: ProviderSpec, model: str, options: dict[str, Any]) -> CostModel:
    if options.get("pricing") is not None:
        return CostModel(parse_pricing(options["pricing"]))
    if spec.connection == "local" and not options.get("price_model"):
        return CostModel(None)  # a local model has no list price; say pricing={...} (0 for free) to meter it
    price = table_price(options.get("price_model") or model, spec.price_prefixes, gateway=spec.gateway)
    return CostModel(price, reports_cost=spec.reports_cost)


def resolve_endpoint(backend: str, backend_kwargs: dict[str, Any]) -> Endpoint:
    """Check ``backend_kwargs`` against the provider row and fill in env vars and defaults."""
    spec = require_provider(backend)
    shape = shape_for(spec.adapter)
    if shape.resolve is not None:
        return shape.resolve(spec, dict(backend_kwargs))
    options = dict(backend_kwargs)
    allowed = COMMON_OPTIONS | shape.options_for(spec)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"backend '{spec.id}' does not take {unknown}; allowed backend_kwargs: {sorted(allowed)}")
    model = options.pop("model_name", None) or options.pop("deployment", None) or options.pop("model", None)
    options.pop("model", None)
    if not model or not isinstance(model, str):
        example = spec.example_models[0] if spec.example_models else "my-model"
        raise ConfigError(
            f"backend_kwargs for backend '{spec.id}' needs 'model_name', e.g. {{'model_name': '{example}'}}"
        )
    model = normalize_model_name(spec, model)
    base_url = _base_url(spec, options.pop("base_url", None))
    if base_url is None and spec.connection == "byok" and not shape.knows_url:
        env = f" or set {spec.base_url_env_var}" if spec.base_url_env_var else ""
        raise ConfigError(f"backend '{spec.id}' needs backend_kwargs['base_url']{env}")
    needs_key = shape.needs_key(options)
    api_key = options.pop("api_key", None) or _env(*spec.api_key_env_vars)
    if not api_key and spec.requires_api_key and needs_key:
        raise MissingAPIKeyError(
            f"backend '{spec.id}' needs an API key: set {' or '.join(spec.api_key_env_vars)} "
            f"or pass backend_kwargs={{'api_key': ...}}"
        )
    official = base_url is None or base_url == _base_url(spec, spec.default_base_url)
    if api_key and official and spec.connection == "byok":
        problem = key_format_problem(spec, api_key)
        if problem:
            raise ConfigError(
                f"backend '{spec.id}': {problem}. Check {' / '.join(spec.api_key_env_vars) or 'api_key'}."
            )
    shape.settle(spec, options)
    cost = _cost(spec, model, options)
    timeout = float(options.pop("timeout", 120.0))
    max_retries = int(options.pop("max_retries", 2))
    for key in ("pricing", "price_model"):
        options.pop(key, None)
    return Endpoint(spec, model, base_url, api_key, options, cost, timeout, max_retries)
