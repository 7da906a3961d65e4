"""Prices per token, so every backend can fill ``Completion.cost_usd``.

Order of preference (``CostModel.cost``): the user's ``pricing`` from
backend_kwargs overrides everything; else the cost the provider reports in its
usage block (OpenRouter does); else litellm's price table. The table is read from the JSON file litellm ships,
without importing litellm (that import takes seconds); when litellm is already
imported its live ``model_cost`` is used, so ``litellm.register_model`` works.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeprecall.errors import ConfigError

_TABLE_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class Price:
    """USD per input and per output token, and where the numbers came from."""

    input_per_token: float
    output_per_token: float
    source: str = "user"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token


def parse_pricing(value: Any) -> Price:
    """Read the user's ``pricing`` backend_kwarg.

    Accepted: ``{"input_per_mtok": 2.5, "output_per_mtok": 10}`` (USD per million
    tokens, the unit price pages use), ``{"input_per_token": ..., "output_per_token": ...}``
    (also spelled ``{"input": ..., "output": ...}``),
    or a pair ``(input_per_token, output_per_token)``. ``0`` is a valid price (a free local model).
    """
    try:
        if isinstance(value, Mapping):
            if "input_per_mtok" in value or "output_per_mtok" in value:
                return Price(float(value.get("input_per_mtok", 0)) / 1e6, float(value.get("output_per_mtok", 0)) / 1e6)
            if "input_per_token" in value or "output_per_token" in value:
                return Price(float(value.get("input_per_token", 0)), float(value.get("output_per_token", 0)))
            if "input" in value or "output" in value:  # USD per token, the engine's historical spelling
                return Price(float(value.get("input", 0)), float(value.get("output", 0)))
        elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
            return Price(float(value[0]), float(value[1]))
    except (TypeError, ValueError):
        pass
    raise ConfigError(
        "pricing must be {'input_per_mtok': <USD per 1M input tokens>, 'output_per_mtok': <USD per 1M output tokens>} "
        "or a pair (USD per input token, USD per output token)"
    )


@functools.lru_cache(maxsize=1)
def _shipped_table() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / _TABLE_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def price_table() -> Mapping[str, Any]:
    """litellm's model -> price table; empty when litellm is not installed."""
    live = sys.modules.get("litellm")
    model_cost = getattr(live, "model_cost", None)
    if isinstance(model_cost, dict) and model_cost:
        return model_cost
    return _shipped_table()


def table_price(model: str, prefixes: Sequence[str] = (), *, gateway: bool = False) -> Price | None:
    """The table's price for ``model`` served by a provider known to litellm by ``prefixes``.

    Tries ``<prefix>/<model>`` then ``model``; for gateways (OpenRouter, Vercel,
    Portkey, ZenMux) also the upstream name after the last ``/`` or ``@provider/``.
    """
    table = price_table()
    candidates = [f"{p}/{model}" for p in prefixes] + [model]
    if gateway and "/" in model:
        candidates.append(model.rsplit("/", 1)[1])
    for name in candidates:
        row = table.get(name)
        if isinstance(row, Mapping) and row.get("input_cost_per_token") is not None:
            return Price(
                float(row["input_cost_per_token"]), float(row.get("output_cost_per_token") or 0.0), source="litellm"
            )
    return None


def reported_cost(usage: Any) -> float | None:
    """The cost a provider put in its usage block (``usage.cost``), if any."""
    if usage is None:
        return None
    value = usage.get("cost") if isinstance(usage, Mapping) else getattr(usage, "cost", None)
    if value is None:
        extra = getattr(usage, "model_extra", None) or {}
        value = extra.get("cost")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CostModel:
    """How one configured model gets its ``cost_usd``. Shared by every adapter."""

    price: Price | None
    reports_cost: bool = False

    @property
    def has_price(self) -> bool:
        return self.price is not None or self.reports_cost

    def cost(self, input_tokens: int, output_tokens: int, usage: Any = None) -> float | None:
        if self.price is not None and self.price.source == "user":
            return self.price.cost(input_tokens, output_tokens)
        reported = reported_cost(usage)
        if reported is not None:
            return reported
        return self.price.cost(input_tokens, output_tokens) if self.price is not None else None
