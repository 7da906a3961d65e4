"""LLM backends. The engine sees only ``ChatModel``; ``build_chat_model`` picks the class."""

from deeprecall.providers.base import ChatModel, Completion
from deeprecall.providers.factory import build_chat_model, known_backends

__all__ = ["ChatModel", "Completion", "build_chat_model", "known_backends"]
