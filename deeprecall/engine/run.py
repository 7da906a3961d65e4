"""One query's state on the host: its budget, its trace, and the tools it serves.

Everything here belongs to exactly one query, so concurrent queries on one
engine share nothing mutable. Limits are counted under a lock, because the
model's code may call tools from several threads and batches run in parallel.
A tripped limit is remembered in ``stop`` and raised at the next spending
action (an LLM call, a search, the end of a cell), so no work is lost mid-call.

The run is also the query's one event emitter (``self.events``, see
``deeprecall/events.py``): each fact is reported where it happens, once.
``cancel()`` (a consumer who left) stops the query at once: no LLM call or
search starts after it, and the hooks it runs kill the sandbox worker.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from deeprecall.config import DeepRecallConfig
from deeprecall.engine.adaptive_limit import SubCallLimits, retry_wait
from deeprecall.engine.compaction import compact, target_for
from deeprecall.engine.emitter import Emitter
from deeprecall.engine.evidence import evidence_prompt
from deeprecall.errors import (
    ContextWindowExceeded,
    DeepRecallError,
    FilterError,
    ProviderError,
    QueryLimitExceeded,
    redact,
)
from deeprecall.events import EventSink, LimitTripped, ModelDelta, ModelTurn, QueryStarted, SearchDone, SubCallDone, preview
from deeprecall.providers.base import ChatModel, Completion, Message, rate_limit_watcher
from deeprecall.results import ModelUsage, QueryResult, SearchCall, Source, Step, SubCall, Usage
from deeprecall.sandboxes.protocol import ToolRefused
from deeprecall.vectorstores import filters as filter_language
from deeprecall.vectorstores.base import Filter, Hit, VectorStore

if TYPE_CHECKING:
    from deeprecall.engine.recursion import ChildQueries

MAX_PROMPT_CHARS = 2_000_000
MAX_BATCH = 200
REFUSALS_BEFORE_KILL = 50  # calls refused after a limit tripped before the cell making them is killed
RATE_LIMIT_TRIES = 8  # attempts of a sub-call the provider keeps answering 429 (on top of the provider's own retries)
CUT_NOTE = ("\n\n[This reply was cut off at the output-token limit, so an unfinished code block in it did not run. "
            "Write shorter replies.]")
CANCELLED = "cancelled"
# Ends that stop only the query they happen in. Every other limit is the query tree's: tripped in a child
# query, it ends the child and every query above it (docs/recursion.md).
OWN_ENDS = frozenset({"max_iterations", "stalled", "context_window", "cell_timeout", CANCELLED})


class QueryRun:
    def __init__(self, *, question: str, store: VectorStore, root: ChatModel, subs: list[ChatModel],
                 config: DeepRecallConfig, enforced_filters: Filter | None, top_k: int,
                 sinks: Iterable[EventSink] = (), sub_limits: SubCallLimits | None = None) -> None:
        self.question = question
        self.store = store
        self.root = root
        self.subs = {m.model_name: m for m in subs}
        self.default_sub = subs[0] if subs else root
        self.config = config
        self.enforced_filters = enforced_filters
        self.top_k = top_k
        self.usage = Usage()
        self.steps: list[Step] = []
        self.sources: dict[str, Source] = {}
        self._searched: dict[str, list[Hit]] = {}  # this query's searches by (text, k, effective filters)
        self.answer_state: dict[str, Any] = {}
        self.context: dict[str, Any] = {"question": question}
        self.stop: QueryLimitExceeded | None = None
        self.started = time.monotonic()
        self.deadline = self.started + config.max_seconds if config.max_seconds else None
        self.first_hits: list[dict[str, Any]] = []
        self.model_searches = 0
        self.sub_calls_made = 0  # counted before the call is made (max_sub_calls, max_llm_calls)
        self.llm_calls_made = 0
        self.sub_limits = sub_limits or SubCallLimits(config.sub_concurrency)  # the engine's, shared by its queries
        self._lock = threading.Lock()
        self._step_started = self.started
        self._step_open = False
        self.events = Emitter(sinks, step=self._event_step, started=self.started)
        self.query_id = self.events.query_id
        self.cancelled = False
        self._cancel_hooks: list[Callable[[], None]] = []
        self._refusals = 0
        self._cells = 0
        # The query tree (max_depth > 1, docs/recursion.md): child() sets these on a child query's run. The
        # top run's usage and counters are the whole tree's, and every limit but OWN_ENDS is counted there.
        self.parent: QueryRun | None = None
        self.top: QueryRun = self
        self.depth = 1
        self.children: list[QueryResult] = []
        self.spawn: ChildQueries | None = None  # set while the tree may go deeper: rlm_query runs a child query
        self._running_children: set[QueryRun] = set()
        self._sub_models = list(subs)

    def _event_step(self) -> int:
        """The turn an event belongs to: 0 until the first turn (the step ``ground()`` opens waits for it)."""
        return 0 if self._step_open else len(self.steps)

    def announce(self) -> None:
        """Emit ``QueryStarted``: the question, the filters every search carries, the models, the limits."""
        if not self.events.active:
            return
        cfg, store = self.config, self.context.get("store") or {}
        limits = {"max_iterations": cfg.max_iterations, "max_search_calls": cfg.max_search_calls,
                  "max_tokens": cfg.max_tokens, "max_seconds": cfg.max_seconds, "max_cost_usd": cfg.max_cost_usd,
                  "max_sub_calls": cfg.max_sub_calls, "max_llm_calls": cfg.max_llm_calls, "top_k": self.top_k}
        source = f"{store.get('kind', '')}:{store.get('collection', '')}" if store else ""
        limits["max_depth"] = cfg.max_depth
        self.events.emit(QueryStarted, question=self.question, filters=self.enforced_filters,
                         root_model=self.root.model_name, sub_models=list(self.subs), limits=limits,
                         data_source=source, backend=cfg.backend, environment=cfg.environment)

    # -- cancellation -------------------------------------------------------
    def cancel(self) -> None:
        """Stop the query now: every later LLM call, search and cell is refused, and the
        hooks (the environment's: kill the worker) run. Safe from any thread, idempotent."""
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            self.stop = QueryLimitExceeded(CANCELLED, "the query was cancelled by its caller")
            hooks, self._cancel_hooks = self._cancel_hooks, []
        self.events.emit(LimitTripped, reason=CANCELLED, message="the query was cancelled by its caller")
        for hook in hooks:
            hook()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the query is cancelled (at once, if it already was)."""
        with self._lock:
            if not self.cancelled:
                self._cancel_hooks.append(hook)
                return
        hook()

    @property
    def drafted_answer(self) -> str:
        """``answer["content"]`` as the model last left it in the REPL ("" if none)."""
        return str(self.answer_state.get("content") or "").strip()

    # -- budget -----------------------------------------------------------
    def trip(self, reason: str, message: str) -> QueryLimitExceeded:
        with self._lock:
            if self.stop is not None:
                return self.stop
            stop = self.stop = QueryLimitExceeded(reason, message)
        self.events.emit(LimitTripped, reason=reason, message=message)
        if self.parent is not None and reason not in OWN_ENDS:  # the tree's budget: every query above ends too
            self.parent.trip(reason, message)
        return stop

    def check(self) -> None:
        """Raise the tripped limit, if any; trip max_seconds if time is up."""
        if self.stop is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.trip("max_seconds", f"the query ran past max_seconds={self.config.max_seconds}")
        above = self.parent.stopped() if self.stop is None and self.parent is not None else None
        if above is not None:  # a limit tripped elsewhere in the tree (a sibling, the parent): this query ends too
            self.trip(above.reason, str(above))
        if self.stop is not None:
            raise self.stop

    def stopped(self) -> QueryLimitExceeded | None:
        """What stopped this query or one above it, if anything did."""
        run: QueryRun | None = self
        while run is not None:
            if run.stop is not None:
                return run.stop
            run = run.parent
        return None

    def lineage(self) -> list[QueryRun]:
        """This query and the ones above it, up to the top: each one's usage is its subtree's."""
        runs: list[QueryRun] = []
        run: QueryRun | None = self
        while run is not None:
            runs.append(run)
            run = run.parent
        return runs

    def count_calls(self, *, sub: int = 0, root: int = 0, prompt_chars: int = 0) -> None:
        """Count LLM calls before they are made. Calls (a whole batch) that would cross ``max_sub_calls``
        or ``max_llm_calls``, or sub-call prompts whose tokens alone (~4 characters each) would cross
        ``max_tokens``, are refused together, before any is sent, and the limit trips. Counted on the
        top query: the limits bound the whole query tree (docs/recursion.md)."""
        cfg, top = self.config, self.top
        with top._lock:
            subs, calls = top.sub_calls_made + sub, top.llm_calls_made + sub + root
            tokens = top.usage.total_tokens + prompt_chars // 4
            if cfg.max_sub_calls is not None and subs > cfg.max_sub_calls:
                over = ("max_sub_calls", f"{sub} more sub-calls would make {subs}, over max_sub_calls={cfg.max_sub_calls}")
            elif cfg.max_llm_calls is not None and calls > cfg.max_llm_calls:
                over = ("max_llm_calls", f"{sub + root} more LLM calls would make {calls}, over "
                                         f"max_llm_calls={cfg.max_llm_calls}")
            elif cfg.max_tokens is not None and prompt_chars and tokens > cfg.max_tokens:
                over = ("max_tokens", f"the sub-call prompts (~{prompt_chars // 4} tokens) would take the query past "
                                      f"max_tokens={cfg.max_tokens}")
            else:
                top.sub_calls_made, top.llm_calls_made = subs, calls
                return
        raise self.trip(*over)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else max(0.01, self.deadline - time.monotonic())

    def _meter(self, table: dict[str, ModelUsage], completion: Completion) -> None:
        cfg, kind = self.config, "root" if table is self.usage.root else "sub"
        for run in self.lineage():  # a child's calls are its parent's too: the top's usage is the tree's
            with run._lock:
                getattr(run.usage, kind).setdefault(completion.model, ModelUsage()).add(
                    completion.input_tokens, completion.output_tokens, completion.cost_usd)
        with self.top._lock:
            tokens, cost = self.top.usage.total_tokens, self.top.usage.total_cost_usd or 0.0
        if cfg.max_tokens is not None and tokens > cfg.max_tokens:
            self.trip("max_tokens", f"the query used {tokens} tokens, over max_tokens={cfg.max_tokens}")
        if cfg.max_cost_usd is not None and cost > cfg.max_cost_usd:
            self.trip("max_cost_usd", f"the query cost ${cost:.6f}, over max_cost_usd={cfg.max_cost_usd}")

    # -- LLM calls --------------------------------------------------------
    def complete_root(self, messages: list[Message]) -> Completion:
        """One root call. A history over the model's window is sent compacted (once; a
        second overflow ends the query as ``context_window``), and a reply cut at the
        output limit carries a note saying so, which the model sees next turn."""
        self.check()
        started = time.monotonic()
        try:
            completion = self._call_root(messages)
        except ContextWindowExceeded as e:
            messages = compact(messages, target_for(messages, e.prompt_tokens, e.window))
            completion = self._complete_compacted(messages)
        self._meter(self.usage.root, completion)
        self._turn_event(completion, messages, started)
        if completion.finish_reason == "length":
            completion = dataclasses.replace(completion, text=completion.text + CUT_NOTE)
        return completion

    def _complete_compacted(self, shorter: list[Message]) -> Completion:
        self.check()
        try:
            return self._call_root(shorter)
        except ContextWindowExceeded as e:
            raise self.trip("context_window", f"the history no longer fits the model's context window even "
                                              f"compacted: {e}") from None

    def _call_root(self, messages: list[Message]) -> Completion:
        self.count_calls(root=1)
        return self._stream_root(messages)

    def _stream_root(self, messages: list[Message]) -> Completion:
        """One root call. With a subscriber that wants them, the reply's text is streamed as ``ModelDelta``
        events (``on_delta`` is passed only then, so a plain ``query()`` keeps the non-streaming call); a
        model that does not stream gives one delta with its whole reply. A cancelled query stops
        reading a streamed reply at its next piece."""
        if not self.events.wants_deltas:
            return self.root.complete(messages, timeout=self.seconds_left())
        streamed = False
        name = self.root.model_name

        def on_delta(text: str) -> None:
            nonlocal streamed
            if self.cancelled:  # the provider lets this through unmapped: the stream stops at its next piece
                raise self.trip(CANCELLED, "the query was cancelled by its caller")
            if text:
                streamed = True
                self.events.emit(ModelDelta, model=name, text=text)

        if streams(self.root):
            completion = self.root.complete(messages, timeout=self.seconds_left(), on_delta=on_delta)
        else:
            completion = self.root.complete(messages, timeout=self.seconds_left())
        if not streamed:
            on_delta(completion.text)
        return completion

    def _turn_event(self, completion: Completion, messages: list[Message], started: float,
                    purpose: str = "turn") -> None:
        if self.events.active:
            self.events.emit(ModelTurn, model=completion.model or self.root.model_name, text=completion.text,
                             input_tokens=completion.input_tokens, output_tokens=completion.output_tokens,
                             cost_usd=completion.cost_usd, finish_reason=completion.finish_reason,
                             seconds=time.monotonic() - started, prompt=[dict(m) for m in messages],
                             provider=provider_of(self.root), purpose=purpose)

    def evidence(self) -> list[Source]:
        """What the query retrieved, best first: the question's own hits in their order (scores
        from different searches do not compare), then the rest by score."""
        first = [self.sources[h["id"]] for h in self.first_hits if h.get("id") in self.sources]
        seen = {s.id for s in first}
        return first + sorted((s for s in self.sources.values() if s.id not in seen), key=lambda s: -s.score)

    def answer_from_evidence(self) -> str:
        """One root call answering from the documents retrieved so far: the floor under
        a query whose loop ended with no answer. "" when there is nothing to answer from."""
        if not self.sources or self.cancelled:
            return ""
        limit, top = self.config.max_llm_calls, self.top
        with top._lock:
            if limit is not None and top.llm_calls_made >= limit:
                return ""  # the call would cross max_llm_calls
            top.llm_calls_made += 1
        messages: list[Message] = [{"role": "user", "content": evidence_prompt(self.question, self.evidence())}]
        started = time.monotonic()
        completion = self._stream_root(messages)
        self._meter(self.usage.root, completion)
        self._turn_event(completion, messages, started, purpose="evidence")
        return completion.text.strip()

    def complete_sub(self, prompt: str, model: ChatModel, *, counted: bool = False) -> str:
        """One sub-call (``counted``: its batch was counted against the limits as a whole)."""
        self.check()
        if not counted:
            self.count_calls(sub=1, prompt_chars=len(prompt))
        started = time.monotonic()
        try:
            completion = self._limited_call(prompt, model)
        except ProviderError as e:
            self._record_sub(SubCall(model.model_name, prompt, "", 0, 0, time.monotonic() - started, str(e)), model)
            raise
        self._meter(self.usage.sub, completion)
        self._record_sub(SubCall(model.model_name, prompt, completion.text, completion.input_tokens,
                                 completion.output_tokens, time.monotonic() - started), model, completion.cost_usd)
        return completion.text

    def _limited_call(self, prompt: str, model: ChatModel) -> Completion:
        """The call, within the model's adaptive concurrency limit (shared by the engine's queries). A 429
        halves the limit and the call waits for a slot again, until the query's deadline or
        ``RATE_LIMIT_TRIES``; it is one call against the query's limits however often it is tried."""
        limit = self.sub_limits.for_model(model.model_name)
        attempt = 0
        while True:
            generation = limit.acquire(self.deadline)
            if generation is None:
                self.check()  # the deadline passed while waiting for a slot
                raise ProviderError(f"{model.model_name}: no free slot before the query's deadline", retryable=True)
            try:
                self.check()  # cancelled, or another limit tripped, while this call waited for its slot
                with rate_limit_watcher(functools.partial(limit.cut, generation)):  # 429s the provider retries
                    completion = model.complete([{"role": "user", "content": prompt}], timeout=self.seconds_left())
            except ProviderError as e:
                limited = e.status == 429
                limit.release(generation, rate_limited=limited, grow=False)
                if not limited or attempt + 1 >= RATE_LIMIT_TRIES:
                    raise
            except BaseException:
                limit.release(generation, grow=False)
                raise
            else:
                limit.release(generation)
                return completion
            left = self.seconds_left()
            time.sleep(retry_wait(attempt) if left is None else min(retry_wait(attempt), left))
            self.check()
            attempt += 1

    # -- steps ------------------------------------------------------------
    def begin_step(self) -> Step:
        with self._lock:
            if self._step_open:  # the step ground() opened: the first turn belongs to it
                self._step_open = False
                return self.steps[-1]
            if self.steps:
                self.steps[-1].seconds = time.monotonic() - self._step_started
            self._step_started = time.monotonic()
            step = Step(index=len(self.steps) + 1)
            self.steps.append(step)
            return step

    def finish(self) -> None:
        if self.steps:
            self.steps[-1].seconds = time.monotonic() - self._step_started

    def _current_step(self) -> Step:
        return self.steps[-1] if self.steps else self.begin_step()

    def record_cell(self, code: str, output: str) -> None:
        with self._lock:
            step = self._current_step()
            step.code.append(code)
            step.output = f"{step.output}\n{output}" if step.output else output

    def _record_sub(self, call: SubCall, model: ChatModel, cost_usd: float | None = None) -> None:
        with self._lock:
            self._current_step().sub_calls.append(call)
        if self.events.active:
            self.events.emit(SubCallDone, model=call.model, prompt_preview=preview(call.prompt),
                             response_preview=preview(call.response), input_tokens=call.input_tokens,
                             output_tokens=call.output_tokens, cost_usd=cost_usd, ms=call.seconds * 1000,
                             error=call.error, provider=provider_of(model))

    def next_cell(self) -> int:
        """The query's next cell number (1-based), for ``CellStarted``/``CellEnded``."""
        with self._lock:
            self._cells += 1
            return self._cells

    def cited_sources(self) -> list[Source]:
        """The retrieved documents the model named in ``answer["sources"]`` (it cannot cite one it never saw)."""
        cited = self.answer_state.get("sources")
        if not isinstance(cited, list):
            return []
        return [self.sources[i] for i in dict.fromkeys(c for c in cited if isinstance(c, str)) if i in self.sources]

    def ground(self) -> None:
        """Search the question itself before the first turn (host-side, enforced filters
        applied), so the model starts from what one-shot retrieval would have shown it.
        Counted in ``usage.search_calls``, not against ``max_search_calls``."""
        self.check()
        self.begin_step()
        self._step_open = True
        self._count_search(by_model=False)
        self.first_hits = self._run_search(self.question, self.top_k, None)

    # -- tools served to the worker ----------------------------------------
    def handle_call(self, fn: str, args: dict[str, Any]) -> Any:
        """Serve one call from the model's code. Refusals go back as ``ToolError``."""
        handlers: dict[str, Callable[..., Any]] = {
            "search_db": self._search_db, "llm_query": self._llm_query, "rlm_query": self._rlm_query,
            "llm_query_batched": self._llm_query_batched, "rlm_query_batched": self._rlm_query_batched,
        }
        handler = handlers.get(fn)
        if handler is None:
            raise ToolRefused(f"unknown tool {fn!r}")
        try:
            return handler(**args)
        except TypeError as e:
            raise ToolRefused(f"{fn}: {e}") from None
        except QueryLimitExceeded as e:
            self._refused_after_stop()
            raise ToolRefused(f"{e}. No more calls are possible: set answer['content'] to your best answer "
                              "and answer['ready'] = True now.") from None
        except DeepRecallError as e:
            raise ToolRefused(f"{fn}: {e}") from None

    def _refused_after_stop(self) -> None:
        """Code that goes on calling after a limit tripped (a loop that catches the ``ToolError``) is ended:
        at the ``REFUSALS_BEFORE_KILL``-th refusal the worker is killed (the cancel hooks), so the cell ends
        and the query with it, with the limit that tripped, instead of serving refusals until max_seconds."""
        with self._lock:
            self._refusals += 1
            hooks = list(self._cancel_hooks) if self._refusals == REFUSALS_BEFORE_KILL else []
        for hook in hooks:
            hook()

    def _search_db(self, query: Any, top_k: Any = None, filters: Any = None) -> list[dict[str, Any]]:
        if not isinstance(query, str) or not query.strip():
            raise ToolRefused("search_db(query) needs a non-empty string query")
        k = self.top_k if top_k is None else top_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_top_k:
            raise ToolRefused(f"search_db top_k must be an int from 1 to {self.config.max_top_k}; got {top_k!r}")
        try:
            model_filters = filter_language.validate(filters)
        except FilterError as e:
            raise ToolRefused(f"search_db: {e}") from None
        self.check()
        calls = self._count_search(by_model=True)
        limit = self.config.max_search_calls
        if limit is not None and calls > limit:
            raise self.trip("max_search_calls", f"the model made more than max_search_calls={limit} searches")
        return self._run_search(query, k, model_filters)

    def _count_search(self, *, by_model: bool) -> int:
        """Count one search in this query's usage and the ones above it; return the tree's searches
        by the model so far (``max_search_calls`` bounds the whole tree's)."""
        for run in self.lineage():
            with run._lock:
                run.usage.search_calls += 1
        with self.top._lock:
            self.top.model_searches += by_model
            return self.top.model_searches

    def _run_search(self, query: str, k: int, model_filters: Filter | None) -> list[dict[str, Any]]:
        """One search with the enforced filters ANDed in. A failed search is recorded (with its
        error) and reported before the error goes on to the model or the caller.

        The same search again in this query (same text, top_k and effective filters; models often
        search the question the engine already searched before turn 1) is answered from this
        query's memo, not the store: it is still counted, recorded and reported, with its near-zero
        time. A failed search is not remembered, so a retry reaches the store."""
        effective = filter_language.combine(self.enforced_filters, model_filters)
        started = time.monotonic()
        key = json.dumps([query, k, effective], sort_keys=True, default=repr)
        try:
            with self._lock:
                hits = self._searched.get(key)
            if hits is None:
                hits = self.store.search(query, k, effective)
                with self._lock:
                    self._searched[key] = hits
        except Exception as e:
            error = redact(f"{type(e).__name__}: {e}")[:500]
            self._record_search(SearchCall(query, k, model_filters, [], time.monotonic() - started, error), effective)
            raise
        record = SearchCall(query, k, model_filters, [h.id for h in hits], time.monotonic() - started)
        with self._lock:
            for hit in hits:
                known = self.sources.get(hit.id)
                if known is None or hit.score > known.score:
                    self.sources[hit.id] = Source.from_hit(hit)
        self._record_search(record, effective, [h.score for h in hits])
        return [h.to_dict() for h in hits]

    def _record_search(self, record: SearchCall, effective: Filter | None, scores: list[float] | None = None) -> None:
        with self._lock:
            self._current_step().searches.append(record)
        if self.events.active:
            self.events.emit(SearchDone, query=record.query, top_k=record.top_k, filters=effective,
                             hit_ids=record.result_ids, scores=scores or [], ms=record.seconds * 1000,
                             error=record.error)

    def _pick_model(self, name: Any) -> ChatModel:
        if name is None:
            return self.default_sub
        if isinstance(name, str) and name in self.subs:
            return self.subs[name]
        if isinstance(name, str) and name == self.root.model_name:
            return self.root
        raise ToolRefused(f"unknown model {name!r}; available: {sorted(self.subs) or [self.root.model_name]}")

    def _llm_query(self, prompt: Any, model: Any = None) -> str:
        if not isinstance(prompt, str) or not prompt:
            raise ToolRefused("llm_query(prompt) needs a non-empty string prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ToolRefused(f"llm_query prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        return self.complete_sub(prompt, self._pick_model(model))

    def _rlm_query(self, prompt: Any, model: Any = None) -> str:
        """A child query while the tree may go deeper (docs/recursion.md); at ``max_depth``, ``llm_query``."""
        return self._llm_query(prompt, model) if self.spawn is None else self.spawn.one(prompt, model)

    def _rlm_query_batched(self, prompts: Any, model: Any = None) -> list[str]:
        return self._llm_query_batched(prompts, model) if self.spawn is None else self.spawn.batched(prompts, model)

    # -- child queries (max_depth > 1) ---------------------------------------
    def child(self, question: str, root: ChatModel) -> QueryRun:
        """The run of a child query: its own question (the prompt), steps and worker; this query's store,
        enforced filters, models, config and deadline; events to this query's subscribers; and the tree's
        budget (its calls, tokens and searches count in every query above it)."""
        run = QueryRun(question=question, store=self.store, root=root, subs=self._sub_models, config=self.config,
                       enforced_filters=self.enforced_filters, top_k=self.top_k, sub_limits=self.sub_limits)
        run.parent, run.top, run.depth, run.deadline = self, self.top, self.depth + 1, self.deadline
        run.events = self.events.child(step=run._event_step, started=run.started)
        run.query_id = run.events.query_id
        run.context = {**{k: v for k, v in self.context.items() if k != "first_hits"}, "question": question}
        with self._lock:
            self._current_step().children.append(run.query_id)
            self._running_children.add(run)
        return run

    def adopt(self, child: QueryRun, result: QueryResult) -> None:
        """A child query ended: keep its result, and what it retrieved (an answer built on the child's
        answer rests on the child's documents)."""
        with self._lock:
            self._running_children.discard(child)
            self.children.append(result)
            for source in result.retrieved:
                known = self.sources.get(source.id)
                if known is None or source.score > known.score:
                    self.sources[source.id] = source

    def end_children(self) -> None:
        """This query ended: a child still running (the cell waiting on it was cut at the deadline) is
        cancelled now, so nothing keeps spending the tree's budget or holding a worker for an ended query.
        It is not in ``children``; its own events still end with its answer event."""
        with self._lock:
            running, self._running_children = self._running_children, set()
        for child in running:
            child.cancel()

    def _llm_query_batched(self, prompts: Any, model: Any = None) -> list[str]:
        if not isinstance(prompts, list) or not all(isinstance(p, str) and p for p in prompts):
            raise ToolRefused("llm_query_batched(prompts) needs a list of non-empty strings")
        if any(len(p) > MAX_PROMPT_CHARS for p in prompts):
            raise ToolRefused(f"a prompt in llm_query_batched is over the {MAX_PROMPT_CHARS}-character limit")
        if len(prompts) > MAX_BATCH:
            raise ToolRefused(f"llm_query_batched got {len(prompts)} prompts; send at most {MAX_BATCH} per batch")
        chosen = self._pick_model(model)
        if not prompts:
            return []
        self.check()
        self.count_calls(sub=len(prompts), prompt_chars=sum(len(p) for p in prompts))

        def one(prompt: str) -> str:
            try:
                return self.complete_sub(prompt, chosen, counted=True)
            except DeepRecallError as e:
                return f"Error: {e}"

        threads = min(len(prompts), self.sub_limits.for_model(chosen.model_name).ceiling)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(one, prompts))


@functools.lru_cache(maxsize=256)
def _streams(cls: type) -> bool:
    try:
        params = inspect.signature(getattr(cls, "complete")).parameters  # noqa: B009 - a class, not a ChatModel
    except (TypeError, ValueError):
        return False
    return "on_delta" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def streams(model: ChatModel) -> bool:
    """Whether ``model.complete`` takes ``on_delta`` (read once per model class)."""
    return _streams(type(model))


def provider_of(model: ChatModel) -> str:
    """The provider label a model carries (``openai``, ``vllm``...), "" if it names none."""
    value = getattr(model, "provider", "")
    return value if isinstance(value, str) else ""
