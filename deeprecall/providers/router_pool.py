"""The ``pool`` backend: several backends behind one name, on LiteLLM's Router.

Why the Router and not a loop of our own: it already does weighted shuffle,
latency-based and least-busy routing, ``order`` priorities, per-member
cooldown after failures, retries that fail over instantly while another member
is healthy and otherwise back off honouring ``Retry-After``. What DeepRecall
adds is the translation of its own backends (``Endpoint``) into Router
deployments (each API shape says how: ``ApiShape.litellm_params``), the error
mapping, and per-member pricing (so ``cost_usd`` means the same inside a pool
as alone).

What it costs: pools need the ``litellm`` extra, and members are called through
litellm's provider adapters rather than DeepRecall's (same wire protocol, same
keys and base URLs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deeprecall.errors import ConfigError, ProviderError
from deeprecall.providers.adapter import Deltas
from deeprecall.providers.base import Completion, Message, OnDelta
from deeprecall.providers.endpoint import Endpoint, resolve_endpoint
from deeprecall.providers.litellm_model import import_litellm, map_litellm_error, stream_completion, to_completion
from deeprecall.providers.pricing import CostModel

STRATEGIES = {
    "weighted": "simple-shuffle",
    "latency": "latency-based-routing",
    "least-busy": "least-busy",
    "ordered": "simple-shuffle",  # plus litellm's per-deployment ``order``: first healthy member wins
}
POOL_OPTIONS = frozenset(
    {
        "model_name",
        "members",
        "strategy",
        "fallback",
        "retries",
        "cooldown_seconds",
        "allowed_fails",
        "retry_after",
        "timeout",
    }
)
MEMBER_KEYS = frozenset({"backend", "weight", "backend_kwargs"})


@dataclass(frozen=True)
class Member:
    """One pool member: its resolved endpoint, weight, and the litellm model string it is routed as."""

    id: str
    endpoint: Endpoint
    label: str
    cost: CostModel
    params: dict[str, Any] = field(repr=False)  # holds the key


def _member_kwargs(raw: Any, index: int) -> tuple[str, dict[str, Any], float]:
    if not isinstance(raw, dict) or not raw.get("backend"):
        raise ConfigError(
            f"pool member {index} must be a dict with 'backend', e.g. "
            "{'backend': 'openai', 'model_name': 'gpt-4o-mini', 'weight': 70}"
        )
    nested = raw.get("backend_kwargs") or {}
    kwargs = {**nested, **{k: v for k, v in raw.items() if k not in MEMBER_KEYS}}
    return str(raw["backend"]).strip().lower(), kwargs, float(raw.get("weight", 1))


def litellm_params(ep: Endpoint) -> dict[str, Any]:
    """The Router deployment for a DeepRecall endpoint: same server, key and protocol (its shape says how)."""
    params: dict[str, Any] = {"timeout": ep.timeout, "max_retries": 0, **(ep.options.get("sampling_args") or {}),
                              **ep.shape.litellm_params(ep)}
    return {k: v for k, v in params.items() if v is not None}


def build_members(raw_members: Any, litellm: Any) -> list[Member]:
    if not isinstance(raw_members, list) or not raw_members:
        raise ConfigError("backend 'pool' needs backend_kwargs['members']: a non-empty list of backends")
    members = []
    for i, raw in enumerate(raw_members):
        backend, kwargs, weight = _member_kwargs(raw, i)
        if backend in ("pool", "hybrid"):
            raise ConfigError(f"pool member {i}: a '{backend}' cannot be a pool member; list its backends directly")
        ep = resolve_endpoint(backend, kwargs)
        params = litellm_params(ep)
        params["weight"] = weight
        members.append(Member(f"m{i}", ep, ep.model, ep.cost, params))
    return members


class PoolChatModel:
    """Several backends as one ChatModel: routing, failover, retries and cooldown by LiteLLM's Router."""

    def __init__(self, backend_kwargs: dict[str, Any]) -> None:
        unknown = sorted(set(backend_kwargs) - POOL_OPTIONS)
        if unknown:
            raise ConfigError(f"backend 'pool' does not take {unknown}; allowed: {sorted(POOL_OPTIONS)}")
        strategy = str(backend_kwargs.get("strategy", "weighted")).lower().replace("_", "-")
        if strategy not in STRATEGIES:
            raise ConfigError(f"pool strategy {strategy!r} is not one of {sorted(STRATEGIES)}")
        litellm = import_litellm("backend 'pool'")
        self._litellm = litellm
        self.model_name = str(backend_kwargs.get("model_name") or "pool")
        self.strategy = strategy
        self.members = build_members(backend_kwargs.get("members"), litellm)
        self.has_price = all(m.cost.has_price for m in self.members)
        fallback = bool(backend_kwargs.get("fallback", True))
        retries = int(backend_kwargs.get("retries", 2))
        self._timeout = float(backend_kwargs.get("timeout", 120.0))
        self._secrets = [str(m.params.get("api_key")) for m in self.members if m.params.get("api_key")]
        model_list = []
        for order, m in enumerate(self.members, start=1):
            params = dict(m.params)
            if strategy == "ordered":
                params["order"] = order
            model_list.append({"model_name": self.model_name, "litellm_params": params, "model_info": {"id": m.id}})
        self._by_id = {m.id: m for m in self.members}
        self._router = litellm.Router(
            model_list=model_list,
            routing_strategy=STRATEGIES[strategy],
            num_retries=max(retries, len(self.members) - 1) if fallback else 0,
            # Cooling down the only member would leave nothing to retry on: a lone member just retries.
            allowed_fails=int(backend_kwargs.get("allowed_fails", 0 if len(self.members) > 1 else 1_000_000)),
            cooldown_time=float(backend_kwargs.get("cooldown_seconds", 30.0)),
            retry_after=int(backend_kwargs.get("retry_after", 0)),
            timeout=self._timeout,
        )

    def __repr__(self) -> str:
        labels = ", ".join(m.label for m in self.members)
        return f"PoolChatModel(model_name={self.model_name!r}, strategy={self.strategy!r}, members=[{labels}])"

    def complete(self, messages: list[Message], *, timeout: float | None = None,
                 on_delta: OnDelta | None = None) -> Completion:
        """One call through the Router. Streaming (``on_delta``): the Router retries and fails over while it
        opens the stream (an HTTP error, a refused connection, no first byte in time); once the stream is
        open nothing is retried, and an error after the first delta is a non-retryable ``ProviderError``."""
        where = f"pool:{self.model_name}"
        deltas = Deltas(on_delta) if on_delta is not None else None
        attempt = self._attempt_timeout(timeout)
        try:
            if deltas is None:
                response = self._router.completion(
                    model=self.model_name, messages=messages, timeout=attempt
                )
                member = self._member(response)
                return to_completion(response, member.label if member else self.model_name,
                                     member.cost if member else CostModel(None), where)
            chunks = self._router.completion(model=self.model_name, messages=messages, timeout=attempt,
                                             stream=True, stream_options={"include_usage": True})
            member = self._member(chunks)
            return stream_completion(chunks, deltas, member.label if member else self.model_name,
                                     member.cost if member else CostModel(None), where, timeout)
        except ProviderError as e:
            if deltas is None:
                raise
            failed = deltas.fail(e)
            if failed is e:
                raise
            raise failed from None
        except Exception as e:
            if deltas is not None and e is deltas.error:
                raise
            mapped = map_litellm_error(self._litellm, e, where, self._secrets)
            raise (deltas.fail(mapped) if deltas is not None else mapped) from None

    def _attempt_timeout(self, timeout: float | None) -> float:
        """What one member may take: the pool's ``timeout``, cut to the call's when less is left. LiteLLM
        hands a call's ``timeout`` to each member as its own, over the deployment's: passing the query's whole
        remaining budget let a silent first member hold the query to ``max_seconds`` instead of failing over."""
        return self._timeout if timeout is None else min(timeout, self._timeout)

    def _member(self, response: Any) -> Member | None:
        """The member that served: litellm tags the response (or stream) with its deployment id."""
        hidden = getattr(response, "_hidden_params", None) or {}
        return self._by_id.get(str(hidden.get("model_id")))

    def close(self) -> None:
        self._router.discard()
