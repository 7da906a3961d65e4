"""The one module that touches rlms. It supplies rlms's loop with our client and
our environment, and keeps rlms's prompts, parsing and iteration logic.

rlms 0.1.3 hard-wires its own client and environment factories inside
``RLM._spawn_completion_context``; we override that method (and two small
hooks) in a subclass instead of copying rlms code:

- ``RootClient`` is an rlms ``BaseLM`` over a DeepRecall ``ChatModel``; it
  meters usage into the query's ``QueryRun``.
- ``WorkerREPL`` is an rlms environment over a sandbox ``WorkerSession``: the
  model's code runs in a separate worker process, never in the host.
- ``DeepRecallRLM`` adds what 0.1.3 dropped or never had: ``FINAL(...)`` and
  ``FINAL_VAR(...)`` written in the reply, ```python blocks when no ```repl
  block is present, and stopping when the model has clearly answered.

rlms calls ``load_dotenv()`` on import, which would quietly copy a ``.env``
file found above site-packages into the host's environment. A library should
not do that, so ``_quiet_dotenv`` turns that call into a no-op while rlms is
imported. This module is imported lazily by the engine, at the first query.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dotenv

from deeprecall.engine.evidence import connected, question_names, render_hits, says_not_found, supporting
from deeprecall.engine.prompts import (
    COMPACT_SYSTEM_PROMPT,
    FIRST_TURN_COMPACT,
    FIRST_TURN_RLMS,
    NEXT_TURN_COMPACT,
    REPEATED_CODE_NOTE,
    SEARCH_GUIDE,
    SEARCH_TURN_COMPACT,
    UNCONNECTED_NOTE,
    UNSUPPORTED_NOTE,
)
from deeprecall.engine.run import QueryRun
from deeprecall.errors import SandboxError, SandboxHung
from deeprecall.events import CellEnded, CellStarted, WorkerRestarted
from deeprecall.sandboxes.protocol import CellResult, WorkerSession


@contextmanager
def _quiet_dotenv() -> Iterator[None]:
    original = dotenv.load_dotenv
    dotenv.load_dotenv = lambda *args, **kwargs: False
    try:
        yield
    finally:
        dotenv.load_dotenv = original


with _quiet_dotenv():
    from rlm import RLM
    from rlm.clients.base_lm import BaseLM
    from rlm.core.lm_handler import LMHandler
    from rlm.core.types import CodeBlock, ModelUsageSummary, REPLResult, RLMIteration, UsageSummary
    from rlm.environments.base_env import NonIsolatedEnv
    from rlm.utils.parsing import find_code_blocks
    from rlm.utils.prompts import RLM_SYSTEM_PROMPT

SYSTEM_PROMPT = RLM_SYSTEM_PROMPT + SEARCH_GUIDE
_PYTHON_BLOCK = re.compile(r"```(?:python|py)\s*\n(.*?)\n```", re.DOTALL)
_FABRICATED = re.compile(r"\n[ \t]*(?:\**REPL output|Turn \d+/\d+)", re.IGNORECASE)
# What the real model copied from the prompt's template instead of answering.
PLACEHOLDERS = frozenset({"answer", "the answer", "short answer", "the short answer", "the answer itself",
                          "the answer itself, in a few words", "that fact", "the short answer only",
                          "what is still missing", "the name or fact to look up next"})
# Small models write Final(...) and Search(...) as often as the upper-case forms they were shown.
_BARE_KEYWORD = re.compile(r"\s*(?:FINAL|FINAL_VAR)\s*(?:\(\s*\))?\s*$", re.IGNORECASE)
_SEARCH_REQUEST = re.compile(r"\s*(?:\*\*)?SEARCH\b", re.IGNORECASE)
_SEARCH_CALL = re.compile(r"^\s*(?:\*\*)?SEARCH\(\s*['\"]?(.+?)['\"]?\s*\)", re.IGNORECASE | re.MULTILINE)
_BARE_BLOCK = re.compile(r"```[ \t]*\n(.*?)\n```", re.DOTALL)
_ANY_BLOCK = re.compile(r"```.*?```", re.DOTALL)
_FINAL_VAR = re.compile(r"FINAL_VAR\(\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\)", re.IGNORECASE)
_FINAL = re.compile(r"\bFINAL\((.*)\)", re.DOTALL | re.IGNORECASE)
_FINAL_HEADING = re.compile(r"^\s*(?:\*\*|#+\s*)?final answer(?:\*\*)?\s*:\s*(.+)", re.IGNORECASE | re.DOTALL)
MAX_WORKER_RESTARTS = 2


class RootClient(BaseLM):
    """rlms's view of the root model."""

    def __init__(self, run: QueryRun) -> None:
        super().__init__(model_name=run.root.model_name)
        self.run = run

    def completion(self, prompt: str | dict[str, Any] | list[dict[str, Any]]) -> str:
        messages: list[dict[str, str]] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)  # type: ignore[arg-type]
        return self.run.complete_root(messages).text

    async def acompletion(self, prompt: str | dict[str, Any]) -> str:
        return await asyncio.to_thread(self.completion, prompt)

    def get_usage_summary(self) -> UsageSummary:
        return UsageSummary({m: ModelUsageSummary(u.calls, u.input_tokens, u.output_tokens, u.cost_usd)
                             for m, u in self.run.usage.root.items()})

    def get_last_usage(self) -> ModelUsageSummary:
        return ModelUsageSummary(0, 0, 0, None)


class WorkerREPL(NonIsolatedEnv):
    """An rlms environment whose REPL lives in a sandboxed worker process.

    Cancelling the query kills the worker at once (from the cancelling thread): a
    running cell ends, and the query's thread finds the query cancelled."""

    def __init__(self, run: QueryRun, session: WorkerSession, *, restart: Any, cell_timeout: float) -> None:
        super().__init__(persistent=False, depth=1)
        self.run = run
        self.session = session
        self._restart = restart
        self._restarts = 0
        self.cell_timeout = cell_timeout
        self._session_lock = threading.Lock()
        run.on_cancel(self.cleanup)

    def setup(self) -> None:
        return None

    def load_context(self, context_payload: dict[Any, Any] | list[Any] | str) -> None:
        return None

    def execute_code(self, code: str) -> REPLResult:
        self.run.check()
        deadline = self.run.deadline
        number, events = self.run.next_cell(), self.run.events
        events.emit(CellStarted, cell=number, code=code)
        started = time.monotonic()
        try:
            cell = self.session.execute(code, timeout=self.cell_timeout, hard_deadline=deadline)
        except SandboxError as e:
            events.emit(CellEnded, cell=number, seconds=time.monotonic() - started, error=str(e).splitlines()[0])
            return self._after_failure(e)
        events.emit(CellEnded, cell=number, stdout=cell.stdout, stderr=cell.stderr, seconds=time.monotonic() - started,
                    error="timed out" if cell.timed_out else None)
        self.run.answer_state = cell.answer
        self.run.record_cell(code, cell.stdout + cell.stderr)
        self.run.check()  # a limit that tripped inside the cell ends the query now
        return to_repl_result(cell)

    def read_var(self, name: str) -> str | None:
        return self.session.read_var(name)

    def _after_failure(self, error: SandboxError) -> REPLResult:
        self.run.check()
        if isinstance(error, SandboxHung):
            raise self.run.trip("cell_timeout", f"a cell ignored its {self.cell_timeout:g}s timeout and its worker "
                                                "was killed")
        if self._restarts >= MAX_WORKER_RESTARTS:
            raise error
        self._restarts += 1
        self.session.kill()
        session = self._restart()
        with self._session_lock:
            self.session = session
        if self.run.cancelled:  # cancelled while the replacement started: it must not outlive the query
            session.kill()
            self.run.check()
        reason = str(error).splitlines()[0]
        self.run.events.emit(WorkerRestarted, reason=reason)
        note = (f"The REPL process died ({reason}). A fresh REPL was started: "
                "variables from earlier cells are gone, `answer` was reset.")
        return REPLResult(stdout="", stderr=note, locals={})

    def unready(self) -> None:
        """Clear ``answer["ready"]`` in the worker without recording a cell: the engine
        refused the answer, and the next cell must not submit it again by itself."""
        self.session.execute('answer["ready"] = False', timeout=self.cell_timeout, hard_deadline=self.run.deadline)
        self.run.answer_state = {**self.run.answer_state, "ready": False}

    def cleanup(self) -> None:
        with self._session_lock:
            session = self.session
        session.kill()


def to_repl_result(cell: CellResult) -> REPLResult:
    final = cell.answer.get("content") if cell.answer.get("ready") else None
    return REPLResult(stdout=cell.stdout, stderr=cell.stderr, locals=dict.fromkeys(cell.variables, ""),
                      final_answer=None if final is None else str(final))


class DeepRecallRLM(RLM):
    """rlms's loop with DeepRecall's client, environment and answer detection.

    ``style`` is "rlms" (rlms's prompt plus the search guide, for strong models) or
    "compact" (a short prompt for small models, where a reply without code is the answer).
    """

    def __init__(self, run: QueryRun, env: WorkerREPL, *, max_iterations: int, tool_docs: dict[str, Any],
                 style: str = "rlms") -> None:
        compact = style == "compact"
        super().__init__(backend_kwargs={"model_name": run.root.model_name}, max_iterations=max_iterations,
                         custom_system_prompt=COMPACT_SYSTEM_PROMPT if compact else SYSTEM_PROMPT,
                         custom_tools=None if compact else tool_docs, orchestrator=not compact)
        self.run = run
        self.env = env
        self.compact = compact
        self._refused = False
        self._last_response: str | None = None
        self._ran: set[str] = set()
        self._nudged_repeat = False

    @contextmanager
    def _spawn_completion_context(self, prompt: str | dict[str, Any]) -> Iterator[tuple[LMHandler, WorkerREPL]]:
        yield LMHandler(RootClient(self.run)), self.env

    def _completion_turn(self, prompt: str | dict[str, Any], lm_handler: LMHandler, environment: Any) -> RLMIteration:
        step = self.run.begin_step()
        if isinstance(prompt, list):
            self._shape_turn_prompt(step.index, prompt)
        alone = step.index == 1 and self.compact and self.run.config.ground_first_turn and isinstance(prompt, list)
        response = without_invented_output(lm_handler.completion([prompt[-1]] if alone else prompt))  # type: ignore[index]
        step.response = response
        normalised = " ".join(response.split())
        repeated, self._last_response = normalised == self._last_response, normalised
        blocks = self._run_blocks(response, environment)
        final = next((b.result.final_answer for b in blocks if b.result.final_answer is not None), None)
        if final is None:
            final = self._final_from_reply(response, ran_code=bool(blocks))
            if final is None and repeated and not blocks:
                self._end_repetition()
            if final is not None:
                blocks.append(CodeBlock(code="# answer given in the reply", result=REPLResult("", "", {}, final_answer=final)))
        refusal = self._refusal(final) if final is not None else None
        if refusal is not None:
            blocks = [*(self._without_final(b) for b in blocks), self._engine_note("# the engine checked the answer", refusal)]
        elif final is not None and self._refused and self._unbacked(final) is not None:
            blocks = [*(self._without_final(b) for b in blocks), self._from_evidence(final)]
        return RLMIteration(prompt=prompt, response=response, code_blocks=blocks)

    def _run_blocks(self, response: str, environment: Any) -> list[CodeBlock]:
        """Run the reply's code blocks until one submits. A block the model already ran is not
        run again: the first time it is told to use what it found; the second, the query stalls."""
        blocks: list[CodeBlock] = []
        for code in code_blocks(response) or self._search_for_model(response):
            if code in self._ran:
                if self._nudged_repeat:
                    self._end_repetition()
                self._nudged_repeat = True
                blocks.append(self._engine_note(f"# not run again, it already ran:\n{code}", REPEATED_CODE_NOTE))
                continue
            self._ran.add(code)
            result = environment.execute_code(code)
            blocks.append(CodeBlock(code=code, result=result))
            if result.final_answer is not None:
                break
        return blocks

    def _search_for_model(self, response: str) -> list[str]:
        """Compact style: a reply ``SEARCH(phrase)`` is run as the search it asks for, as a cell
        in the worker like any other. A small model names the next thing to look up far more
        reliably than it writes the code, and each hop then costs one turn, not two."""
        match = _SEARCH_CALL.search(_ANY_BLOCK.sub("", response)) if self.compact else None
        phrase = match.group(1).strip() if match else ""
        if not phrase or _is_placeholder(phrase):
            return []
        return [f'hits = search_db({phrase!r})\nfor h in hits:\n    print(h["id"], h["content"])']

    def _shape_turn_prompt(self, index: int, prompt: list[dict[str, Any]]) -> None:
        """Turn 1 shows the question's hits (instead of rlms's "look at the context first");
        in compact style every later turn restates the question and the two ways on, which
        small models otherwise lose after a long REPL output."""
        if index == 1 and self.run.config.ground_first_turn:
            prompt[-1] = {"role": "user", "content": self._first_turn_text()}
        elif index > 1 and self.compact:
            asked_to_search = index == 2 and _SEARCH_REQUEST.match(self._last_response or "") and not self._ran
            template = SEARCH_TURN_COMPACT if asked_to_search else NEXT_TURN_COMPACT
            prompt[-1] = {"role": "user", "content": template.format(
                turn=index, max_iterations=self.max_iterations, question=self.run.question)}

    def _first_turn_text(self) -> str:
        template = FIRST_TURN_COMPACT if self.compact else FIRST_TURN_RLMS
        return template.format(question=self.run.question, hits=render_hits(self.run.first_hits),
                               max_iterations=self.max_iterations)

    def _end_repetition(self) -> None:
        """The model is stuck repeating itself, and more turns only repeat it. The query ends
        as ``stalled`` with its best partial answer (the draft, else an answer from the evidence)."""
        raise self.run.trip("stalled", "the model repeated itself (the same reply, or code it had already run) "
                                       "without submitting an answer")

    def _refusal(self, final: str) -> str | None:
        """Why the answer is refused (once per query), or None when it stands. Refused: an answer
        no retrieved document contains (the model answered from memory), and one whose documents
        nothing retrieved links to the question's names (a name from another chain). The model is
        told which, and gets another turn. An answer that cites retrieved ids, says "not in the
        documents", or comes on the last turn stands. Compact style only: strong models
        paraphrase, and a word check would cost them turns."""
        if self._refused or len(self.run.steps) >= self.max_iterations:
            return None
        note = self._unbacked(final)
        if note is None:
            return None
        self._refused = True
        if self.run.answer_state.get("ready"):
            self.env.unready()
        return note

    def _unbacked(self, final: str) -> str | None:
        """What is wrong with an answer the retrieved documents do not back, or None when they do
        (or it says "not in the documents", or cites retrieved ids). Compact style only: strong
        models paraphrase, and a word check would cost them turns."""
        if not self.compact or says_not_found(final) or self.run.cited_sources():
            return None
        retrieved = list(self.run.sources.values())
        backing = supporting(final, self.run.question, retrieved)
        if not backing:
            return UNSUPPORTED_NOTE.format(answer=final[:200])
        if not connected(backing, self.run.question, retrieved):
            return UNCONNECTED_NOTE.format(answer=final[:200], names=", ".join(question_names(self.run.question)))
        return None

    def _from_evidence(self, final: str) -> CodeBlock:
        """The model was told its answer was unbacked and submitted an unbacked one again (often the
        same, seen from the real model): the answer is then one-shot RAG's over everything the query
        retrieved, the question's own hits first. So a small model that fixed on a distractor is
        never worse than plain retrieval; if that call gives nothing, the model's answer stands."""
        answer = self.run.answer_from_evidence() or final
        note = f"the engine answered from the retrieved documents instead of the unbacked {final[:200]!r}"
        self.run.record_cell("# the engine checked the answer again", note)
        return CodeBlock(code="# the engine checked the answer again", result=REPLResult(note, "", {}, final_answer=answer))

    def _engine_note(self, code: str, note: str) -> CodeBlock:
        """A message from the engine in place of a cell's output: the model reads it next turn,
        and the trace shows it in the step, where it happened."""
        self.run.record_cell(code, note)
        return CodeBlock(code=code, result=REPLResult(note, "", {}))

    @staticmethod
    def _without_final(block: CodeBlock) -> CodeBlock:
        result = block.result
        return CodeBlock(code=block.code, result=REPLResult(result.stdout, result.stderr, result.locals))

    def _final_from_reply(self, response: str, *, ran_code: bool) -> str | None:
        """The model has clearly answered, even without ``answer["ready"] = True``."""
        prose = _ANY_BLOCK.sub("", response)
        match = _FINAL_VAR.search(prose)
        if match:
            return self.env.read_var(match.group(1))
        match = _FINAL.search(prose)
        if match:  # FINAL() or FINAL(the short answer), copied from the prompt, is no answer
            inside = match.group(1).strip().strip("\"'")
            return inside if inside and not _is_placeholder(inside) else None
        if ran_code:
            return None
        if self.run.drafted_answer:
            return self.run.drafted_answer
        match = _FINAL_HEADING.match(prose)
        if match:
            return match.group(1).strip()
        # A small model shown the question's hits answers in prose, or says SEARCH(...) to go on.
        # A bare "FINAL" (seen from the real model when the prompt listed the choices) is no answer.
        if not self.compact or not self.run.sources or _SEARCH_REQUEST.match(prose) or _BARE_KEYWORD.match(prose):
            return None
        return prose.strip() or None

    def _default_answer(self, message_history: list[dict[str, Any]], lm_handler: LMHandler) -> str:
        self.run.trip("max_iterations", f"the model did not submit an answer within max_iterations={self.max_iterations}")
        return self.run.drafted_answer


def without_invented_output(response: str) -> str:
    """The reply up to where the model starts writing the REPL's output itself.

    Small models continue past their code with an imagined "REPL output ..." (even copying an
    earlier engine note that contains FINAL(...)), which would be read as an answer and kept
    in the history as if it had happened. Only the engine writes outputs and turn headers."""
    match = _FABRICATED.search(response)
    return response[:match.start()].rstrip() if match else response


def _is_placeholder(text: str) -> bool:
    """The prompt's template words, copied, where an answer or a search phrase belongs."""
    return text.lower().rstrip(".") in PLACEHOLDERS


def code_blocks(response: str) -> list[str]:
    """The code a reply asks to run: its ```repl blocks; else its ```python blocks; else (small
    models often drop the language) bare ``` blocks that compile as Python and call or assign."""
    found = find_code_blocks(response) or [m.strip() for m in _PYTHON_BLOCK.findall(response)]
    return found or [m.strip() for m in _BARE_BLOCK.findall(response) if _looks_like_code(m)]


def _looks_like_code(text: str) -> bool:
    if "(" not in text and "=" not in text:
        return False
    try:
        compile(text, "<reply>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def best_partial_answer(run: QueryRun, rlm: DeepRecallRLM | None) -> str:
    """What to return when a limit ends the query: the drafted answer, else the last prose."""
    if run.drafted_answer:
        return run.drafted_answer
    last = getattr(rlm, "_best_partial_answer", None) or ""
    return _ANY_BLOCK.sub("", last).strip()
