"""``rlm_query`` as a child query: recursion depth past 1, each level in its own sandbox.

Why a whole query and not rlms's child RLM: rlms runs a child's REPL in the host process, which
DeepRecall never does. A child here is what ``engine.query()`` runs (its own ``QueryRun``, loop and
pooled worker), built by ``QueryRun.child()`` so that it cannot leave its parent's bounds: the
same enforced filters (its searches are ANDed with them like any other), the same deadline, and
the tree's budget (its calls, tokens and searches count in its parent's usage, whose top is the
whole tree's). What comes back to the parent's code is the child's answer, as text.

A child that ends early raises ``ToolError`` in the parent's code (``rlm_query_batched``: that
prompt's text is ``"Error: ..."``, as ``llm_query_batched`` does); a limit of the tree ends the
parent too, at the end of its cell. Children of one batch run concurrently, at most
``MAX_CONCURRENT_CHILDREN`` at once: each holds a sandbox worker.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deeprecall.engine.run import MAX_BATCH, MAX_PROMPT_CHARS, QueryRun
from deeprecall.errors import redact
from deeprecall.providers.base import ChatModel
from deeprecall.results import QueryResult
from deeprecall.sandboxes.protocol import ToolRefused

MAX_CONCURRENT_CHILDREN = 4  # rlms's own default for rlm_query_batched; each child holds a worker process


class ChildQueries:
    """What ``rlm_query`` and ``rlm_query_batched`` do in a query shallower than ``max_depth``.

    ``execute`` runs a child's run to its ``QueryResult`` (the engine's ``_execute``: the same
    events, worker, loop and answer as a top query)."""

    def __init__(self, run: QueryRun, execute: Callable[[QueryRun], QueryResult]) -> None:
        self.run = run
        self.execute = execute
        run.on_cancel(run.end_children)  # the children running then (not those that ended: their answer was their last event)

    def one(self, prompt: Any, model: Any = None) -> str:
        _check_prompt(prompt, "rlm_query(prompt)")
        result = self._child(prompt, self._root(model))
        if result.error is not None:
            raise ToolRefused(_failure(result))
        return result.answer

    def batched(self, prompts: Any, model: Any = None) -> list[str]:
        if not isinstance(prompts, list):
            raise ToolRefused("rlm_query_batched(prompts) needs a list of non-empty strings")
        for prompt in prompts:
            _check_prompt(prompt, "rlm_query_batched(prompts)")
        if len(prompts) > MAX_BATCH:
            raise ToolRefused(f"rlm_query_batched got {len(prompts)} prompts; send at most {MAX_BATCH} per batch")
        root = self._root(model)
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(len(prompts), MAX_CONCURRENT_CHILDREN)) as pool:
            results = list(pool.map(lambda p: self._child(p, root), prompts))
        return [r.answer if r.error is None else f"Error: {_failure(r)}" for r in results]

    def _root(self, model: Any) -> ChatModel:
        """The child's root model: the parent's (as rlms does), or the one ``model=`` names."""
        return self.run.root if model is None else self.run._pick_model(model)

    def _child(self, prompt: str, root: ChatModel) -> QueryResult:
        """Run one child query to its end. A child that raised (a store failing its first search)
        is a result with ``error="exception"``: the parent's code is told, the parent goes on."""
        self.run.check()  # the tree is out of budget, or the parent was cancelled: no child starts
        child = self.run.child(prompt, root)  # cancelled with its parent; started after that, it inherits the stop
        try:
            result = self.execute(child)
        except Exception as e:
            result = QueryResult(question=prompt, answer="", steps=child.steps, usage=child.usage, error="exception",
                                 error_message=redact(f"{type(e).__name__}: {e}")[:500], query_id=child.query_id,
                                 parent_query_id=self.run.query_id, depth=child.depth)
        self.run.adopt(child, result)
        stop = self.run.stopped()
        if stop is not None and result.error is not None:
            raise stop  # a limit of the tree: handle_call tells the model to submit, the cell's end ends the query
        return result


def _check_prompt(prompt: Any, call: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ToolRefused(f"{call} needs non-empty string prompts")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ToolRefused(f"{call}: a prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")


def _failure(result: QueryResult) -> str:
    """Why a child query ended early, with its partial answer when it had one."""
    text = f"the sub-query ended early ({result.error}: {result.error_message or 'no detail'})"
    partial = result.answer.strip()
    return f"{text}; its partial answer: {partial[:2000]}" if partial else text

