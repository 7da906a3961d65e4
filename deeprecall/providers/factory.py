"""Turn ``(backend, backend_kwargs)`` into a ``ChatModel``.

This is the one place that knows which backend value maps to which model
class. Backend classes are imported lazily so a missing SDK only matters
when that backend is chosen.
"""

from __future__ import annotations

import os
from typing import Any

from deeprecall.errors import ConfigError, MissingAPIKeyError
from deeprecall.providers.base import ChatModel

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
_OPENAI_OPTIONS = {"api_key", "base_url", "timeout", "max_retries", "default_headers", "organization", "sampling_args", "pricing"}


def known_backends() -> list[str]:
    """Every ``backend`` value ``build_chat_model`` accepts."""
    return ["openai", "vllm"]


def build_chat_model(backend: str, kwargs: dict[str, Any]) -> ChatModel:
    """Build the model for one backend entry; raise ``ConfigError`` naming the fix."""
    options = dict(kwargs)
    model_name = options.pop("model_name", None)
    if not model_name:
        raise ConfigError(f"backend_kwargs for backend '{backend}' needs 'model_name', e.g. {{'model_name': 'gpt-4o-mini'}}")
    if backend == "openai":
        options.setdefault("api_key", os.environ.get("OPENAI_API_KEY"))
        if not options.get("api_key") and not options.get("base_url"):
            raise MissingAPIKeyError("backend 'openai' needs an API key: set OPENAI_API_KEY or pass backend_kwargs={'api_key': ...}")
    elif backend == "vllm":
        if not options.get("base_url"):
            raise ConfigError("backend 'vllm' needs backend_kwargs['base_url'], e.g. 'http://localhost:8000/v1'")
    else:
        raise ConfigError(f"unknown backend '{backend}'; supported: openai, vllm")
    unknown = set(options) - _OPENAI_OPTIONS
    if unknown:
        raise ConfigError(f"backend '{backend}' does not take {sorted(unknown)}; allowed backend_kwargs: {sorted(_OPENAI_OPTIONS | {'model_name'})}")
    from deeprecall.providers.openai_compat import OpenAIChatModel

    return OpenAIChatModel(model_name, **options)
