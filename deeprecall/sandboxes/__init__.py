"""Sandboxes: where the model's code runs. ``build_sandbox`` maps ``environment`` to a class.

Each class lives in its own file and imports its vendor SDK lazily, so only
the sandbox you pick needs its extra installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from deeprecall.errors import ConfigError
from deeprecall.sandboxes.base import Sandbox, SandboxSettings, WorkerChannel

SANDBOXES = {
    "local": ("deeprecall.sandboxes.local", "LocalSandbox"),
    "docker": ("deeprecall.sandboxes.docker", "DockerSandbox"),
    "modal": ("deeprecall.sandboxes.modal", "ModalSandbox"),
    "e2b": ("deeprecall.sandboxes.e2b", "E2BSandbox"),
    "daytona": ("deeprecall.sandboxes.daytona", "DaytonaSandbox"),
    "prime": ("deeprecall.sandboxes.prime", "PrimeSandbox"),
}

__all__ = ["SANDBOXES", "Sandbox", "SandboxSettings", "WorkerChannel", "build_sandbox"]


def build_sandbox(environment: str, kwargs: dict[str, Any]) -> Sandbox:
    """Build the sandbox for ``environment``; bad ``environment_kwargs`` raise ``ConfigError``."""
    if environment not in SANDBOXES:
        raise ConfigError(f"unknown environment {environment!r}; choose one of: {', '.join(SANDBOXES)}")
    module_name, class_name = SANDBOXES[environment]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ConfigError(f"environment {environment!r} is not available in this version of DeepRecall") from None
        raise
    try:
        sandbox: Sandbox = getattr(module, class_name)(**kwargs)
    except ValidationError as e:
        details = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid environment_kwargs for {environment!r}: {details}") from None
    return sandbox
