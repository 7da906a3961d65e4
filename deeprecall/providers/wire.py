"""Per-provider extras on the OpenAI wire shape: headers and body fields a row needs.

Kept apart from the adapters because the pool sends the same extras through
litellm: Portkey authenticates with its own headers, OpenRouter returns the
cost of each call when asked to.
"""

from __future__ import annotations

from typing import Any

from deeprecall.providers.endpoint import Endpoint


def openai_headers(ep: Endpoint) -> dict[str, str]:
    headers = dict(ep.options.get("default_headers") or {})
    if ep.spec.id == "portkey":
        if ep.api_key:
            headers["x-portkey-api-key"] = ep.api_key
        if ep.options.get("virtual_key"):
            headers["x-portkey-virtual-key"] = str(ep.options["virtual_key"])
        if ep.options.get("config"):
            headers["x-portkey-config"] = str(ep.options["config"])
    return headers


def openai_extra_body(ep: Endpoint) -> dict[str, Any]:
    if ep.spec.id == "openrouter":
        return {"usage": {"include": True}}
    return {}
