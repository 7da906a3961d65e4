"""A host process for test_host_kill.py: an engine with two queries in flight, one in a long cell (that started a
detached process marked with argv[3]), one in a cell waiting on ``llm_query`` (the sub-model never answers).
It prints ``ready`` once both cells are running, then waits to be killed.

    python -m tests.faults.host_under_kill <sandbox spec as JSON> <LLM base_url> <mark>
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.events import CellStarted
from tests.conftest import ROOT, SUB, make_store


def main() -> None:
    sandbox, base_url, mark = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    config = DeepRecallConfig(
        backend="vllm", backend_kwargs={"model_name": ROOT, "base_url": base_url, "max_retries": 0},
        other_backends=["vllm"], other_backend_kwargs=[{"model_name": SUB, "base_url": base_url, "max_retries": 0}],
        environment=sandbox["environment"], environment_kwargs={**sandbox["kwargs"], "pool_size": 2},
        max_seconds=120,
    )
    engine = DeepRecall(vectorstore=make_store(), config=config)
    started = threading.Semaphore(0)

    def on_event(event: object) -> None:
        if isinstance(event, CellStarted):
            started.release()

    def query(question: str) -> None:
        try:
            result = engine.query(question, on_event=on_event)
            print(f"the query ended: {result.error} {result.error_message}", flush=True)
        except BaseException as e:
            print(f"the query failed: {e!r}", flush=True)
        os._exit(1)  # it was to be killed mid-query

    for question in (f"long cell {mark}", f"waits on llm_query {mark}"):
        threading.Thread(target=query, args=(question,), daemon=True).start()
    for _ in range(2):
        started.acquire()
    print("ready", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
