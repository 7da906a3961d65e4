"""Turn ``(backend, backend_kwargs)`` into a ``ChatModel``.

A backend value is a registry id or alias (see ``registry.PROVIDERS``; the row's
``ApiShape`` builds the adapter, ``shapes.py``), ``litellm`` (a row too, whose shape
takes any litellm model string), or one of the composites: ``pool`` (several
backends on LiteLLM's Router, ``router_pool``) and ``hybrid`` (a reasoner and an
executor, ``reasoner_executor``). ``auto`` infers the provider from a
``provider/model`` name. ``llama-cpp`` without a server URL runs the model in
this process (``llama_cpp_local``). Adapters are imported lazily so a missing SDK
only matters when that backend is chosen. Every configuration error is raised
here, before any network call.
"""

from __future__ import annotations

import os
from typing import Any

from deeprecall.errors import ConfigError
from deeprecall.providers.base import ChatModel
from deeprecall.providers.endpoint import Endpoint, resolve_endpoint
from deeprecall.providers.registry import PROVIDERS, get_provider, infer_provider

COMPOSITE = ("litellm", "pool", "hybrid", "auto")


def known_backends() -> list[str]:
    """Every accepted ``backend`` value: provider ids, their aliases, and the composite backends."""
    names = {n.lower() for spec in PROVIDERS for n in spec.names} | set(COMPOSITE)
    return sorted(names)


def build_chat_model(backend: str, backend_kwargs: dict[str, Any] | None = None) -> ChatModel:
    """Build the model for one backend entry; raise ``ConfigError`` (or a subclass) naming the fix."""
    if not isinstance(backend, str) or not backend.strip():
        raise ConfigError("backend must be a name such as 'openai'; run `deeprecall providers` to list them")
    kwargs = dict(backend_kwargs or {})
    name = backend.strip().lower()
    if name == "pool":
        from deeprecall.providers.router_pool import PoolChatModel

        return PoolChatModel(kwargs)
    if name == "hybrid":
        from deeprecall.providers.reasoner_executor import build_hybrid

        return build_hybrid(kwargs, build_chat_model)
    if name == "auto":
        spec = infer_provider(str(kwargs.get("model_name", "")))
        if spec is None:
            raise ConfigError("backend 'auto' needs a 'provider/model' model_name, e.g. 'anthropic/claude-sonnet-4-5'")
        name = spec.id
    if runs_in_process(name, kwargs):
        from deeprecall.providers.llama_cpp_local import build_local

        return build_local(kwargs)
    return build_from_endpoint(resolve_endpoint(name, kwargs))


def runs_in_process(backend: str, kwargs: dict[str, Any]) -> bool:
    """``llama-cpp`` with no server URL (neither ``base_url`` nor ``LLAMACPP_BASE_URL``) runs the model in-process."""
    spec = get_provider(backend)
    if spec is None or spec.id != "llama-cpp" or kwargs.get("base_url"):
        return False
    return not (spec.base_url_env_var and os.environ.get(spec.base_url_env_var))


def build_from_endpoint(ep: Endpoint) -> ChatModel:
    """The adapter for an already-resolved endpoint: its shape builds it."""
    return ep.shape.build(ep)
