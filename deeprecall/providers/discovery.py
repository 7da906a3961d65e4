"""Which local LLM servers answer right now, and which models they serve.

Used by ``deeprecall providers``. Every probe is one GET with a short timeout,
run in parallel, so the whole scan takes about one timeout even when nothing
is running. Ollama is asked ``/api/tags`` (its native model list); every other
local server ``/v1/models`` (the OpenAI-compatible list). Servers that share a
default URL (TGI, MLX and llama.cpp all default to port 8080) are probed once.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from deeprecall.providers.registry import ProviderSpec, list_providers


@dataclass(frozen=True)
class LocalStatus:
    """One local provider's probe: where it was looked for, whether it answered, its models."""

    provider: str
    url: str
    up: bool
    models: list[str] = field(default_factory=list)
    error: str = ""


def server_url(spec: ProviderSpec) -> str:
    """The URL a local provider is expected at: its env var if set, else its default."""
    url = (os.environ.get(spec.base_url_env_var) if spec.base_url_env_var else None) or spec.default_base_url or ""
    url = url if "://" in url else f"http://{url}"
    return url.rstrip("/")


def _list_url(spec: ProviderSpec, url: str) -> str:
    if spec.id == "ollama":
        return f"{url.removesuffix('/v1')}/api/tags"
    return f"{url}/models"


def _probe(list_url: str, timeout: float) -> tuple[bool, list[str], str]:
    try:
        response = httpx.get(list_url, timeout=timeout)
    except httpx.HTTPError as e:
        return False, [], type(e).__name__
    if response.status_code >= 400:
        return True, [], f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return True, [], "not JSON"
    items = body.get("models") or body.get("data") or [] if isinstance(body, dict) else []
    names = [str(i.get("name") or i.get("id") or i.get("model")) for i in items if isinstance(i, dict)]
    return True, names, ""


def discover_local(timeout: float = 0.5) -> list[LocalStatus]:
    """Probe every local provider in parallel; one result per provider, in registry order."""
    specs = list_providers("local")
    targets = {spec.id: _list_url(spec, server_url(spec)) for spec in specs}
    unique = sorted(set(targets.values()))
    with ThreadPoolExecutor(max_workers=max(1, len(unique))) as pool:
        results = dict(zip(unique, pool.map(lambda u: _probe(u, timeout), unique), strict=True))
    out = []
    for spec in specs:
        up, models, error = results[targets[spec.id]]
        out.append(LocalStatus(spec.id, server_url(spec), up, models, error))
    return out
