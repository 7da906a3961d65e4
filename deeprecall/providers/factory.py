"""Turn ``(backend, backend_kwargs)`` into a ``ChatModel``.

This is the one place that knows which backend value maps to which adapter:
any registry id or alias (see ``registry.PROVIDERS``), plus three composite
backends: ``litellm`` (any litellm model string), ``pool`` (several backends
on LiteLLM's Router) and ``hybrid`` (a reasoner and an executor). ``auto``
infers the provider from a ``provider/model`` name. ``llama-cpp`` without a
server URL runs the model in this process (``llama_cpp_local``). Adapters are imported
lazily so a missing SDK only matters when that backend is chosen. Every
configuration error is raised here, before any network call.
"""

from __future__ import annotations

import os
from typing import Any

from deeprecall.errors import ConfigError
from deeprecall.providers.base import ChatModel
from deeprecall.providers.endpoint import Endpoint, resolve_endpoint
from deeprecall.providers.registry import PROVIDERS, get_provider, infer_provider
from deeprecall.providers.wire import openai_extra_body, openai_headers

COMPOSITE = ("litellm", "pool", "hybrid", "auto")
LITELLM_OPTIONS = frozenset(
    {"model", "model_name", "api_key", "base_url", "timeout", "max_retries", "sampling_args", "pricing", "extra"}
)


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
        from deeprecall.providers.pool import PoolChatModel

        return PoolChatModel(kwargs)
    if name == "hybrid":
        from deeprecall.providers.hybrid import HybridChatModel, split_hybrid

        (rb, rk), (eb, ek) = split_hybrid(kwargs)
        return HybridChatModel(build_chat_model(rb, rk), build_chat_model(eb, ek))
    if name == "litellm":
        return _build_litellm(kwargs)
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
    """The adapter for an already-resolved endpoint."""
    o = ep.options
    common: dict[str, Any] = {
        "timeout": ep.timeout,
        "max_retries": ep.max_retries,
        "sampling_args": o.get("sampling_args"),
        "cost": ep.cost,
    }
    if ep.spec.adapter == "anthropic":
        from deeprecall.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicChatModel

        return AnthropicChatModel(
            ep.model,
            api_key=ep.api_key,
            base_url=ep.base_url,
            default_headers=o.get("default_headers"),
            max_tokens=int(o.get("max_tokens") or DEFAULT_MAX_TOKENS),
            **common,
        )
    if ep.spec.adapter == "gemini":
        from deeprecall.providers.gemini import GeminiChatModel

        vertex = bool(o.get("vertexai"))
        base_url = None if vertex and ep.base_url == ep.spec.default_base_url else ep.base_url
        return GeminiChatModel(
            ep.model,
            api_key=None if vertex else ep.api_key,
            base_url=base_url,
            vertexai=vertex,
            project=o.get("project"),
            location=o.get("location"),
            default_headers=o.get("default_headers"),
            **common,
        )
    if ep.spec.adapter == "litellm":
        return _build_litellm({"model_name": ep.model, "api_key": ep.api_key, "base_url": ep.base_url})
    from deeprecall.providers.openai_compat import OpenAIChatModel

    return OpenAIChatModel(
        ep.model,
        api_key=ep.api_key,
        base_url=ep.base_url,
        default_headers=openai_headers(ep) or None,
        organization=o.get("organization"),
        extra_body=openai_extra_body(ep),
        azure_api_version=o.get("api_version") if ep.spec.adapter == "azure" else None,
        provider=ep.spec.id,
        **common,
    )


def _build_litellm(kwargs: dict[str, Any]) -> ChatModel:
    unknown = sorted(set(kwargs) - LITELLM_OPTIONS)
    if unknown:
        raise ConfigError(
            f"backend 'litellm' does not take {unknown}; allowed: {sorted(LITELLM_OPTIONS)} "
            "(put other litellm.completion arguments under 'extra')"
        )
    model = kwargs.pop("model_name", None) or kwargs.pop("model", None)
    kwargs.pop("model", None)
    if not model:
        raise ConfigError("backend 'litellm' needs 'model_name', e.g. {'model_name': 'groq/llama-3.3-70b-versatile'}")
    from deeprecall.providers.litellm_model import LiteLLMChatModel

    return LiteLLMChatModel(str(model), **kwargs)
