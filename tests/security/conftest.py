"""The arena for hostile-code tests: the REAL engine, a real sandbox, a scripted model.

Each case plays a model whose ```repl blocks are hostile (as a prompt injection
hidden in a document could make them). One engine per sandbox kind (local with
namespace isolation, docker) serves every case of a module; each query still
gets a fresh worker, so cases stay independent. The host holds secrets the
sandbox must never see: an environment variable, an API key in backend_kwargs
and files in the host's /tmp and home.

Hostile code reports what it managed as ``RESULT {json}`` lines, which the
tests read from the query's trace.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from deeprecall import DeepRecall
from deeprecall.embeddings import HashingEmbedding
from deeprecall.results import QueryResult
from deeprecall.testing.scripted_server import ChatRequest, ScriptedLLMServer
from deeprecall.vectorstores.chroma import ChromaStore
from tests.conftest import DOCS, ROOT, engine_config
from tests.sandboxes.support import DOCKER_IMAGE, namespace_tool, require_docker

SECRET_ENV = "DEEPRECALL_HOST_SECRET"
CELL_TIMEOUT = 3.0
MAX_SECONDS = 60.0
OUTPUT_CAP = 4000
BOUND = 45.0  # every hostile query ends (answer or typed error) well within this


@dataclass
class Outcome:
    result: QueryResult
    requests: list[ChatRequest]
    seconds: float

    @property
    def outputs(self) -> str:
        return "\n".join(step.output for step in self.result.steps)

    @property
    def transcript(self) -> str:
        """What the model was shown last: every REPL output and note, in order."""
        return self.requests[-1].text if self.requests else ""

    @property
    def reports(self) -> list[dict[str, Any]]:
        found = []
        for line in self.outputs.splitlines():
            if line.startswith("RESULT "):
                found.append(json.loads(line[len("RESULT "):]))
        return found

    def report(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for item in self.reports:
            merged.update(item)
        assert merged, f"the hostile code reported nothing; output was:\n{self.outputs[-3000:]}"
        print("hostile code reported:", json.dumps(merged)[:3000])
        return merged


@dataclass
class Arena:
    kind: str
    engine: DeepRecall
    server: ScriptedLLMServer
    store: ChromaStore
    store_dir: str
    secrets: dict[str, str]
    host_dir: str
    home_file: str
    token: str
    cases: dict[str, list[str]] = field(default_factory=dict)

    def ask(self, name: str, *turns: str, question: str = "What was Acme's revenue?",
            filters: dict[str, Any] | None = None) -> Outcome:
        self.cases[name] = [f"```repl\n{t}\n```" if not t.startswith("FINAL") else t for t in turns]
        started = time.monotonic()
        result = self.engine.query(f"[case:{name}] {question}", filters=filters)
        seconds = time.monotonic() - started
        requests = [r for r in self.server.requests if f"[case:{name}]" in r.text]
        return Outcome(result, requests, seconds)

    def assert_no_leak(self, outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
        """No host secret reached the model's messages, the result, the trace or the logs."""
        haystacks = {
            "messages to the LLM": "\n".join(json.dumps(r.body) for r in outcome.requests),
            "answer": outcome.result.answer,
            "error message": outcome.result.error_message or "",
            "trace": outcome.outputs,
            "logs": caplog.text,
        }
        for secret_name, secret in self.secrets.items():
            for where, text in haystacks.items():
                assert secret not in text, f"{secret_name} leaked into the {where} ({self.kind})"

    def assert_held(self, outcome: Outcome) -> None:
        """Ended in bound, with an answer or a clean typed error."""
        assert outcome.seconds < BOUND, f"{self.kind}: query took {outcome.seconds:.1f}s"
        result = outcome.result
        assert result.answer or result.error in ("cell_timeout", "sandbox_failed", "max_iterations", "max_seconds"), \
            (result.error, result.error_message)


def _root_script(cases: dict[str, list[str]]) -> Any:
    def script(request: ChatRequest) -> str:
        match = re.search(r"\[case:([\w-]+)\]", request.text)
        if match is None or match.group(1) not in cases:
            return "FINAL(unknown case)"
        turns = cases[match.group(1)]
        return turns[min(request.turn, len(turns) - 1)]

    return script


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def arena(request: pytest.FixtureRequest) -> Iterator[Arena]:
    kind = request.param
    if kind == "docker":
        require_docker()
        environment_kwargs: dict[str, Any] = {"image": DOCKER_IMAGE}
    else:
        # DEEPRECALL_SECURITY_LOCAL_ISOLATION=process shows what these tests catch: most fail.
        chosen = os.environ.get("DEEPRECALL_SECURITY_LOCAL_ISOLATION", "namespace")
        environment_kwargs = {"isolation": chosen}
        if chosen == "namespace":
            environment_kwargs["namespace_tool"] = namespace_tool()
    environment_kwargs.update(pool_size=2, cell_timeout=CELL_TIMEOUT, output_cap=OUTPUT_CAP, memory_mb=512)
    token = os.urandom(8).hex()
    secrets = {"env secret": f"drsecret-{token}", "api key": f"sk-deeprecallfake{token}",
               "file secret": f"drfile-{token}"}
    host_dir = tempfile.mkdtemp(prefix="deeprecall-host-")
    os.chmod(host_dir, 0o777)  # writable by anyone: only isolation can stop a write here
    with open(os.path.join(host_dir, "secret.txt"), "w") as f:
        f.write(secrets["file secret"])
    os.chmod(os.path.join(host_dir, "secret.txt"), 0o644)
    home_file = os.path.join(os.path.expanduser("~"), f".deeprecall-test-secret-{token}")
    with open(home_file, "w") as f:
        f.write(secrets["file secret"])
    store_dir = tempfile.mkdtemp(prefix="deeprecall-store-")
    store = ChromaStore(f"sec-{token}", persist_directory=store_dir, embedding_fn=HashingEmbedding())
    store.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    cases: dict[str, list[str]] = {}
    server = ScriptedLLMServer({"root-model": _root_script(cases), "*": lambda r: "sub-ok"}).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SECRET_ENV, secrets["env secret"])
        backend_kwargs = {"model_name": ROOT, "base_url": server.base_url, "max_retries": 0,
                          "api_key": secrets["api key"]}
        config = engine_config(server, environment=kind, environment_kwargs=environment_kwargs,
                               backend_kwargs=backend_kwargs, filters={"tenant": "acme"},
                               max_seconds=MAX_SECONDS, max_iterations=6)
        engine = DeepRecall(vectorstore=store, config=config)
        engine.warm()
        try:
            yield Arena(kind, engine, server, store, store_dir, secrets, host_dir, home_file, token, cases)
        finally:
            engine.close()
            server.stop()
            shutil.rmtree(host_dir, ignore_errors=True)
            os.unlink(home_file)
            shutil.rmtree(store_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
