"""The ``hybrid`` backend: one model reasons, another executes.

In seed 002's proxy, hybrid runs two phases per request. DeepRecall's loop
already has the two phases: the *root* model reasons (reads results, plans,
writes the REPL code) and ``llm_query()`` sub-calls execute (read passages,
extract, summarise), many times per question. So ``hybrid`` means: the
``reasoner`` is the root model and the ``executor`` is the default model for
``llm_query(prompt)``; any other sub-backends stay selectable by name.

    backend="hybrid", backend_kwargs={
        "reasoner": {"backend": "anthropic", "model_name": "claude-sonnet-4-5"},
        "executor": {"backend": "openai", "model_name": "gpt-4o-mini"},
    }

One mechanism: ``build_chat_model("hybrid", ...)`` returns a ``HybridChatModel``
(the reasoner, carrying the executor as ``sub_model``), and ``assemble`` is the one
place that takes it apart into the engine's root model and sub-models (executor
first, the slot rlms uses for ``llm_query(prompt)`` without ``model=``; a hybrid among
the sub-models adds both its models). The engine calls ``assemble`` for its own
models and for a per-query ``query(backend="hybrid")`` alike, so the executor
built for a query is the one that query's sub-calls use. ``expand_hybrid`` is the
same rule on configuration entries rather than built models, for callers that
want the plain config (it builds nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deeprecall.errors import ConfigError
from deeprecall.providers.base import ChatModel, Completion, Message, OnDelta

ROLES = ("reasoner", "executor")


def split_hybrid(backend_kwargs: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """``{"reasoner": {...}, "executor": {...}}`` -> ``((backend, kwargs), (backend, kwargs))``."""
    extra = sorted(set(backend_kwargs) - set(ROLES))
    if extra:
        raise ConfigError(f"backend 'hybrid' takes only {list(ROLES)}, not {extra}")
    parts = []
    for role in ROLES:
        entry = backend_kwargs.get(role)
        if not isinstance(entry, dict) or not entry.get("backend"):
            raise ConfigError(
                f"backend 'hybrid' needs backend_kwargs['{role}'] = {{'backend': ..., 'model_name': ...}}"
            )
        kwargs = {k: v for k, v in entry.items() if k not in ("backend", "backend_kwargs")} | dict(
            entry.get("backend_kwargs") or {}
        )
        if str(entry["backend"]).lower() == "hybrid":
            raise ConfigError(f"backend 'hybrid': the {role} cannot itself be hybrid")
        parts.append((str(entry["backend"]), kwargs))
    return parts[0], parts[1]


def expand_hybrid(
    backend: str,
    backend_kwargs: dict[str, Any],
    other_backends: list[str] | None = None,
    other_backend_kwargs: list[dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any], list[str], list[dict[str, Any]]]:
    """Rewrite ``hybrid`` entries (root or sub) into plain backends; other configs pass through unchanged."""
    others = list(other_backends or [])
    other_kwargs = list(other_backend_kwargs or [{} for _ in others])
    if len(others) != len(other_kwargs):
        raise ConfigError("other_backends and other_backend_kwargs must have the same length")
    out_b: list[str] = []
    out_k: list[dict[str, Any]] = []
    for b, k in zip(others, other_kwargs, strict=True):
        if b.lower() == "hybrid":
            (rb, rk), (eb, ek) = split_hybrid(k)
            out_b += [rb, eb]
            out_k += [rk, ek]
        else:
            out_b.append(b)
            out_k.append(k)
    if backend.lower() == "hybrid":
        (rb, rk), (eb, ek) = split_hybrid(backend_kwargs)
        return rb, rk, [eb, *out_b], [ek, *out_k]
    return backend, backend_kwargs, out_b, out_k


class HybridChatModel:
    """The reasoner, carrying the executor as ``sub_model``: the engine's default for ``llm_query``."""

    def __init__(self, reasoner: ChatModel, executor: ChatModel) -> None:
        self.reasoner = reasoner
        self.sub_model = executor
        self.model_name = reasoner.model_name
        self.has_price = bool(reasoner.has_price)

    def __repr__(self) -> str:
        return f"HybridChatModel(reasoner={self.reasoner!r}, executor={self.sub_model!r})"

    def complete(self, messages: list[Message], *, timeout: float | None = None,
                 on_delta: OnDelta | None = None) -> Completion:
        if on_delta is None:
            return self.reasoner.complete(messages, timeout=timeout)
        return self.reasoner.complete(messages, timeout=timeout, on_delta=on_delta)

    def close(self) -> None:
        self.reasoner.close()
        self.sub_model.close()


def build_hybrid(backend_kwargs: dict[str, Any], build: Callable[[str, dict[str, Any]], ChatModel]) -> HybridChatModel:
    """``build_chat_model("hybrid", kwargs)``: both models built by ``build``; the reasoner is closed if the
    executor's configuration is wrong, so a failed build leaks no client."""
    (rb, rk), (eb, ek) = split_hybrid(backend_kwargs)
    reasoner = build(rb, rk)
    try:
        executor = build(eb, ek)
    except BaseException:
        reasoner.close()
        raise
    return HybridChatModel(reasoner, executor)


def assemble(root: ChatModel, subs: Sequence[ChatModel] = ()) -> tuple[ChatModel, list[ChatModel]]:
    """The engine's root model and sub-models from built models: a hybrid root is its reasoner, with its
    executor first among the sub-models; a hybrid sub-model adds its reasoner and its executor."""
    models: list[ChatModel] = []
    for sub in subs:
        models += [sub.reasoner, sub.sub_model] if isinstance(sub, HybridChatModel) else [sub]
    if isinstance(root, HybridChatModel):
        return root.reasoner, [root.sub_model, *models]
    return root, models
