"""Batch runs on a local Ray instance (``ray.init(num_cpus=2)``): the Ray Data form (``map_batches`` with
``DeepRecallAnswerer`` actors, each its own engine), and ``deeprecall batch --ray-address`` connecting to that
instance as to a cluster. The store is a Chroma folder every worker opens; the LLM is the scripted server."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from deeprecall.embeddings import HashingEmbedding
from deeprecall.integrations.ray import DeepRecallAnswerer
from deeprecall.testing.scripted_server import by_turn
from deeprecall.vectorstores.chroma import ChromaStore
from deeprecall.vectorstores.spec import StoreSpec, open_store
from tests import skip_guard
from tests.conftest import DOCS
from tests.engine.test_query import repl
from tests.interfaces.test_cli import CLI, clean_env

# The answer names the tenants of the documents the engine's first search found: it shows the filter was applied.
TENANTS = repl('answer["content"] = ",".join(sorted({h["metadata"]["tenant"] for h in context["first_hits"]}))\n'
               'answer["ready"] = True')


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """Ray is in the test extra: without it this module fails to import rather than skipping."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def chroma_folder(path: Path) -> functools.partial[ChromaStore]:
    """A Chroma folder with the shared test documents, and the picklable factory each actor opens it with."""
    store = functools.partial(ChromaStore, "docs", persist_directory=str(path), embedding_fn=HashingEmbedding())
    store().add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
    return store


def settings(base_url: str) -> dict[str, Any]:
    return {"backend": "vllm", "backend_kwargs": {"model_name": "root-model", "base_url": base_url, "max_retries": 0}}


FILTERS = [None, {"tenant": "globex"}, {"tenant": "acme", "year": {"$gte": 2022}}, {"topic": "people"}]
TENANTS_FOUND = ["acme,globex", "globex", "acme", "globex"]


def test_ray_data_map_batches_answers_with_one_engine_per_actor(local_ray, tmp_path, llm):
    """The documented form: read_json, then map_batches with an actor pool. Rows' filters have different keys
    (Arrow makes them one struct, nulls filled in); a row with a filter the language rejects gets an error
    record and the others are answered."""
    server = llm({"root-model": by_turn(TENANTS)}, latency=0.2)
    rows = [{"id": i, "question": f"What happened at Acme and Globex, part {i}?", "filters": FILTERS[i % 4]}
            for i in range(12)]
    rows.append({"id": 12, "question": "A bad filter?", "filters": {"year": {"$between": [2020, 2023]}}})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    answered = local_ray.data.read_json(str(tmp_path / "q.jsonl")).map_batches(
        DeepRecallAnswerer, compute=local_ray.data.ActorPoolStrategy(size=2), batch_size=3, num_cpus=0.5,
        fn_constructor_kwargs={"store": chroma_folder(tmp_path / "chroma"), "settings": settings(server.base_url),
                               "concurrency": 3}).take_all()
    by_id = {row["id"]: row for row in answered}
    assert sorted(by_id) == list(range(13))
    for i in range(12):
        row = by_id[i]
        assert row["error"] == "" and row["answer"] == TENANTS_FOUND[i % 4], row
        record = json.loads(row["record"])
        assert record["usage"]["root_calls"] == 1 and record["seconds"] >= 0.2
    bad = json.loads(by_id[12]["record"])
    assert bad["error"] == "exception" and "$between" in bad["error_message"]
    assert len(server.calls_for("root-model")) == 12  # each good question asked once, the bad one never


def test_cli_batch_on_a_ray_cluster_address(local_ray, tmp_path, llm):
    """The CLI connects to the running instance by its address, as it would to a remote cluster's head;
    the actors open ./.deeprecall from the directory the command ran in (their own cwd is elsewhere)."""
    server = llm({"root-model": by_turn(TENANTS)}, latency=0.2)
    chroma_folder(tmp_path / ".deeprecall")
    lines = [{"id": i, "question": f"Acme and Globex news {i}?"} for i in range(6)]
    lines += [{"id": "g", "question": "Globex only?", "filters": {"tenant": "globex"}}]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    address = local_ray.get_runtime_context().gcs_address
    proc = subprocess.run([*CLI, "batch", "q.jsonl", "--out", "a.jsonl", "--collection", "docs", "--embedding",
                           "hashing", "--backend", "openai-compatible", "--base-url", server.base_url, "--model",
                           "root-model", "--ray-address", address, "--actors", "2", "--concurrency", "2",
                           "--json-summary"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = {r["id"]: r for r in map(json.loads, (tmp_path / "a.jsonl").read_text().splitlines())}
    assert set(written) == {0, 1, 2, 3, 4, 5, "g"}  # ids come back with their own JSON types
    assert written["g"]["answer"] == "globex" and written[3]["answer"] == "acme,globex"
    assert all(r["error"] is None and r["usage"]["root_calls"] == 1 for r in written.values())
    summary = json.loads(proc.stdout)  # stdout is the summary alone: Ray's own output stays off it
    assert summary["answered"] == 7 and summary["errors"] == {}


def test_a_server_store_is_reached_from_every_actor(local_ray, llm):
    """pgvector (the running PostgreSQL): the actors get a StoreSpec, not a folder, and open it themselves."""
    dsn = os.environ.get("DEEPRECALL_TEST_PG_DSN")
    if not dsn:
        (pytest.fail if skip_guard.required() else pytest.skip)("DEEPRECALL_TEST_PG_DSN is not set "
                                                                '(eval "$(bash scripts/services.sh env)")')
    section = {"type": "pgvector", "dsn": dsn, "collection": f"ray_{uuid.uuid4().hex[:8]}", "embedding": "hashing"}
    made = open_store(StoreSpec.from_mapping({**section, "writable": True}))
    try:
        made.add_documents([d for d, _ in DOCS], [m for _, m in DOCS], ids=[f"doc{i}" for i in range(len(DOCS))])
        server = llm({"root-model": by_turn(TENANTS)}, latency=0.1)
        rows = [{"id": i, "question": f"Acme or Globex {i}?", "filters": json.dumps(FILTERS[i % 4]) if i % 4 else ""}
                for i in range(8)]
        answered = local_ray.data.from_items(rows).map_batches(
            DeepRecallAnswerer, compute=local_ray.data.ActorPoolStrategy(size=2), batch_size=2, num_cpus=0.5,
            fn_constructor_kwargs={"store": functools.partial(open_store, StoreSpec.from_mapping(section)),
                                   "settings": settings(server.base_url), "concurrency": 2}).take_all()
        assert {row["id"]: row["answer"] for row in answered} == {i: TENANTS_FOUND[i % 4] for i in range(8)}
    finally:
        made._exec(f"DROP TABLE IF EXISTS {made.name}")
        made.close()
