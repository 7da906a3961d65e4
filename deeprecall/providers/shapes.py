"""API shapes: what DeepRecall knows about each wire protocol, in one object per shape.

A provider is a row (``registry.ProviderSpec``); the row names its shape in
``adapter``. The shape says everything else, so nothing branches on the name:

    ApiShape
    ├── options          backend_kwargs the shape takes beyond the common ones (+ per-row extras)
    ├── knows_url        its client has a default URL (a byok row then needs no base_url)
    ├── needs_key(o)     whether a key is required (Gemini on Vertex AI needs none)
    ├── settle(spec, o)  fill the shape's options from env vars and defaults; ConfigError if incomplete
    ├── resolve          a shape that reads its own backend_kwargs (litellm), else None
    ├── build(ep)        the ChatModel for a resolved Endpoint (the adapter imports its SDK lazily)
    └── litellm_params(ep)  the same endpoint as a LiteLLM Router deployment (pool members)

Each shape object lives in its adapter file (``openai_compat.OPENAI``/``AZURE``,
``anthropic.SHAPE``, ``gemini.SHAPE``, ``litellm_model.SHAPE``); the table
below imports it on first use. Adapter modules import their SDK only inside
functions, so looking a shape up never loads a vendor SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deeprecall.providers.base import ChatModel
    from deeprecall.providers.endpoint import Endpoint
    from deeprecall.providers.registry import ProviderSpec

# adapter name (ProviderSpec.adapter) -> (module under deeprecall.providers, attribute)
SHAPES: dict[str, tuple[str, str]] = {
    "openai": ("openai_compat", "OPENAI"),
    "azure": ("openai_compat", "AZURE"),
    "anthropic": ("anthropic", "SHAPE"),
    "gemini": ("gemini", "SHAPE"),
    "litellm": ("litellm_model", "SHAPE"),
}


def _always(options: dict[str, Any]) -> bool:
    return True


def _nothing(spec: ProviderSpec, options: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class ApiShape:
    """One wire protocol: how an endpoint speaking it is checked, built, and routed through litellm."""

    name: str
    build: Callable[[Endpoint], ChatModel]
    litellm_params: Callable[[Endpoint], dict[str, Any]]
    options: frozenset[str] = frozenset()
    provider_options: Mapping[str, frozenset[str]] = field(default_factory=dict)
    knows_url: bool = False
    needs_key: Callable[[dict[str, Any]], bool] = _always
    settle: Callable[[ProviderSpec, dict[str, Any]], None] = _nothing
    resolve: Callable[[ProviderSpec, dict[str, Any]], Endpoint] | None = None

    def options_for(self, spec: ProviderSpec) -> frozenset[str]:
        return self.options | self.provider_options.get(spec.id, frozenset())


_loaded: dict[str, ApiShape] = {}


def shape_for(adapter: str) -> ApiShape:
    """The shape a registry row's ``adapter`` names (imported once)."""
    shape = _loaded.get(adapter)
    if shape is None:
        module, attribute = SHAPES[adapter]
        shape = getattr(importlib.import_module(f"deeprecall.providers.{module}"), attribute)
        _loaded[adapter] = shape
    return shape
