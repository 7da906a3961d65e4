"""Provider tests: scripted servers on loopback are the only fake (the ``llm`` fixture
in tests/conftest.py); every SDK and litellm's Router run for real. Provider
keys are stripped from the environment by the root conftest, so no test can
reach a real provider."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest

from deeprecall.testing.scripted_server import ChatRequest, Reply

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What grew in 2023?"}]


def sequence(*replies: Reply | str) -> Callable[[ChatRequest], Reply | str]:
    """A script answering calls in arrival order (the last reply repeats): for retry tests only."""
    counter = itertools.count()
    lock = threading.Lock()

    def script(request: ChatRequest) -> Reply | str:
        with lock:
            n = next(counter)
        return replies[min(n, len(replies) - 1)]

    return script


@pytest.fixture(autouse=True)
def _no_provider_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Base-URL env vars of the registry would redirect tests; clear them too."""
    from deeprecall.providers.registry import PROVIDERS

    for spec in PROVIDERS:
        if spec.base_url_env_var:
            monkeypatch.delenv(spec.base_url_env_var, raising=False)
    for name in ("OPENAI_ORG_ID", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_GENAI_USE_VERTEXAI",
                 "OPENAI_API_VERSION", "AZURE_OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
