"""For tests that run the embedded local LLM (pytest marker ``realmodel``).

``require_local_llm()`` skips the test, loudly, when llama-cpp-python or the model file
is missing, and fails it instead when ``DEEPRECALL_REQUIRE_REALMODEL=1`` (``make test``
sets it): in CI a missing model must be a red build, not a quiet skip.
"""

from __future__ import annotations

import os

from deeprecall.providers.local_models import DEFAULT_MODEL, local_llm_missing

REQUIRE_ENV = "DEEPRECALL_REQUIRE_REALMODEL"


def require_local_llm(name: str = DEFAULT_MODEL) -> None:
    """Skip (or, under DEEPRECALL_REQUIRE_REALMODEL=1, fail) the calling test when the model cannot run."""
    import pytest

    why = local_llm_missing(name)
    if why is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
    pytest.skip(f"REAL MODEL NOT RUN: {why}")
