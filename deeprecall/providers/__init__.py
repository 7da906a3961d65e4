"""LLM backends. The engine sees only ``ChatModel``; ``build_chat_model`` picks the class.

build_chat_model(backend, backend_kwargs) -> ChatModel   # raises ConfigError before any network call
known_backends() -> list[str]
expand_hybrid(backend, kwargs, other_backends, other_kwargs)  # 'hybrid' -> root + default sub-model (config)
assemble(root, subs) -> (root, subs)  # the same on built models: what the engine uses
"""

from deeprecall.providers.base import ChatModel, Completion
from deeprecall.providers.factory import build_chat_model, known_backends
from deeprecall.providers.reasoner_executor import assemble, expand_hybrid
from deeprecall.providers.registry import PROVIDERS, ProviderSpec, get_provider, infer_provider, normalize_model_name

__all__ = [
    "PROVIDERS",
    "ChatModel",
    "Completion",
    "ProviderSpec",
    "assemble",
    "build_chat_model",
    "expand_hybrid",
    "get_provider",
    "infer_provider",
    "known_backends",
    "normalize_model_name",
]
