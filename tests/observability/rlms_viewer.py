"""What rlms's trajectory viewer reads from a log file, restated as checks (its code is a Next.js app; not vendored).

Read from rlms v0.1.3 (the version DeepRecall pins), ``visualizer/src/``:
- ``lib/parse-logs.ts`` ``parseJSONL``: each non-empty line is ``JSON.parse``d; ``type == "metadata"`` lines set the
  config (the last one wins: ``root_model``, ``max_depth``, ``max_iterations``, ``backend``, ``backend_kwargs``,
  ``environment_type``, ``environment_kwargs``, ``other_backends``); EVERY other line is pushed as an iteration.
- ``computeMetadata``: ``iter.code_blocks.length``, ``iter.iteration_time != null``, ``block.result.execution_time``,
  ``block.result.stderr``, ``block.result.rlm_calls.length``, ``iter.final_answer`` (string or [string, string]).
- ``extractContextQuestion``: ``iterations[0].prompt`` iterated as messages (``msg.role``, ``msg.content.match``) and
  ``prompt.find(...)``: prompt must be an array of {role, content: string}; ``block.result.locals.context``.
- ``components/IterationTimeline.tsx``: ``iteration.prompt.map(m => m.content)``, ``iteration.response.length`` /
  ``.slice``, ``iteration.final_answer !== null`` (so it must be null, not missing, when there is none).
- ``components/ExecutionPanel.tsx``: ``iteration.iteration``, ``new Date(iteration.timestamp)``, per sub-call
  ``call.prompt_tokens``, ``call.completion_tokens``, ``call.execution_time.toFixed(2)`` (a number), ``call.prompt``
  (string, else JSON.stringify), ``call.response``.
- ``components/CodeBlock.tsx``: ``block.code``, ``block.result.stdout/.stderr`` (``.length``), ``execution_time``,
  ``Object.keys(block.result.locals)``, ``call.response.slice(0, 500)``.
- ``components/LogViewer.tsx`` / ``TrajectoryPanel.tsx``: the config fields above, ``msg.role``, ``msg.content``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

CONFIG_FIELDS = ("root_model", "max_depth", "max_iterations", "backend", "backend_kwargs", "environment_type",
                 "environment_kwargs", "other_backends")


def parse_like_rlms_viewer(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``parseJSONL`` in Python, then every read above asserted on what it returns."""
    config: dict[str, Any] = dict.fromkeys(CONFIG_FIELDS)
    iterations: list[dict[str, Any]] = []
    for line in text.strip().split("\n"):
        if not line.strip():
            continue
        parsed = json.loads(line)
        if parsed.get("type") == "metadata":
            config = {k: parsed.get(k) for k in CONFIG_FIELDS}
        else:
            iterations.append(parsed)
    check_config(config)
    for iteration in iterations:
        check_iteration(iteration)
    return config, iterations


def check_config(config: dict[str, Any]) -> None:
    assert isinstance(config["root_model"], str | None)
    assert isinstance(config["backend"], str | None)
    assert isinstance(config["environment_type"], str | None)
    assert isinstance(config["max_iterations"], int | None)
    assert isinstance(config["backend_kwargs"], dict | None)
    assert isinstance(config["other_backends"], list | None)


def check_iteration(it: dict[str, Any]) -> None:
    assert isinstance(it["iteration"], int)
    datetime.fromisoformat(it["timestamp"])  # new Date(...) must not be Invalid Date
    assert isinstance(it["prompt"], list)
    for msg in it["prompt"]:
        assert isinstance(msg["role"], str) and isinstance(msg["content"], str)
    assert isinstance(it["response"], str)
    assert "final_answer" in it and (it["final_answer"] is None or isinstance(it["final_answer"], str))
    assert it["iteration_time"] is None or isinstance(it["iteration_time"], int | float)
    assert isinstance(it["code_blocks"], list)
    for block in it["code_blocks"]:
        check_block(block)


def check_block(block: dict[str, Any]) -> None:
    assert isinstance(block["code"], str)
    result = block["result"]
    assert isinstance(result["stdout"], str) and isinstance(result["stderr"], str)
    assert isinstance(result["execution_time"], int | float)
    assert isinstance(result["locals"], dict)
    assert isinstance(result["rlm_calls"], list)
    for call in result["rlm_calls"]:
        assert isinstance(call["prompt_tokens"], int) and isinstance(call["completion_tokens"], int)
        assert isinstance(call["execution_time"], int | float)
        assert isinstance(call["prompt"], str | dict) and isinstance(call["response"], str)
