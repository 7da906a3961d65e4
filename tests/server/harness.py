"""A real uvicorn server on a free port, in a thread, serving ``create_app`` over a real engine."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from deeprecall import DeepRecall
from deeprecall.server.app import create_app
from deeprecall.server.auth import hash_key
from deeprecall.server.settings import ServerSettings
from deeprecall.testing.scripted_server import ScriptedLLMServer
from tests.conftest import engine_config, free_port, make_store

ACME_KEY, GLOBEX_KEY = "dr-acme-secret-key-0123456789", "dr-globex-secret-key-0123456789"


def tenant_settings(**overrides: Any) -> ServerSettings:
    """Two keys, each its tenant: acme's and globex's documents of tests.conftest.DOCS."""
    keys = [{"name": "acme", "key_sha256": hash_key(ACME_KEY), "filters": {"tenant": "acme"}},
            {"name": "globex", "key_sha256": hash_key(GLOBEX_KEY), "filters": {"tenant": "globex"}}]
    for key in keys:
        key.update(overrides.pop(f"{key['name']}_limits", {}))
    return ServerSettings.model_validate({"keys": keys, **overrides})


class Served:
    """``with Served(llm_server, settings) as s:`` -> ``s.url`` answers until the block ends."""

    def __init__(self, llm: ScriptedLLMServer, settings: ServerSettings | None = None, *, store: Any = None,
                 graceful: float | None = None, warm: bool = True, **config: Any) -> None:
        self.engine = DeepRecall(vectorstore=store if store is not None else make_store(),
                                 config=engine_config(llm, **config))
        self.settings = settings if settings is not None else tenant_settings()
        self.app = create_app(self.engine, self.settings, warm=warm)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=graceful, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.engine.close()
