"""``DeepRecall``: attach a store, ask questions.

An engine builds its LLM clients and its sandbox pool once and shares them
between queries (connection pools and warm workers are the expensive part).
Everything that changes during a query lives in that query's ``QueryRun``,
so ``query()`` is safe to call from many threads at once.

Watching a query: ``stream()`` / ``astream()`` yield its events as they happen,
``query(on_event=...)`` / ``aquery(on_event=...)`` call back with them, and
``subscribers=[...]`` / ``subscribe()`` attach engine-wide watchers (trace files,
OpenTelemetry). All of them read the one stream ``QueryRun`` emits
(``deeprecall/events.py``); with no watcher, a query builds no event at all.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from deeprecall.config import DeepRecallConfig
from deeprecall.engine.adaptive_limit import SubCallLimits
from deeprecall.engine.evidence import supporting
from deeprecall.engine.recursion import ChildQueries
from deeprecall.engine.run import CANCELLED, QueryRun
from deeprecall.engine.streams import AsyncEventStream, EventStream, QueryThread, WithoutDeltas, wait_for_result
from deeprecall.errors import ConfigError, DeepRecallError, ProviderError, QueryLimitExceeded, SandboxError, redact
from deeprecall.events import AnswerEvent, EventSink
from deeprecall.providers import ChatModel, assemble, build_chat_model
from deeprecall.results import QueryResult
from deeprecall.sandboxes import build_sandbox
from deeprecall.sandboxes.pool import WorkerPool
from deeprecall.sandboxes.protocol import WorkerSession
from deeprecall.vectorstores import filters as filter_language
from deeprecall.vectorstores.base import VectorStore

log = logging.getLogger("deeprecall")
DESCRIBE_TTL = 5.0
# Ends after which one more root call (answering from the retrieved documents) is worth it when the
# model drafted no answer (its last prose is rarely one). Budget limits are not here: they must not spend more.
FLOORED = ("max_iterations", "max_search_calls", "max_sub_calls", "stalled", "context_window", "cell_timeout", "sandbox_failed")
TOOL_DOCS = {"search_db": {"tool": None, "description": "search_db(query, top_k=5, filters=None) -> list of hits; see below"}}


class DeepRecall:
    """``DeepRecall(vectorstore=store, config=DeepRecallConfig(...))``, or pass config fields as keywords.

    ``chat_model`` (a ``ChatModel`` object, e.g. ``deeprecall.testing.FunctionChatModel``) is the root
    model instead of the one ``backend`` names; ``sub_models`` replace those ``other_backends`` name.
    The engine closes them with itself. ``subscribers`` receive every query's events (see ``subscribe``).
    """

    def __init__(self, vectorstore: VectorStore, config: DeepRecallConfig | None = None, *,
                 chat_model: ChatModel | None = None, sub_models: Sequence[ChatModel] | None = None,
                 subscribers: Sequence[EventSink] = (), **settings: Any) -> None:
        if not isinstance(vectorstore, VectorStore):
            raise ConfigError(f"vectorstore must implement deeprecall.vectorstores.VectorStore (search, count, describe, "
                              f"add_documents); got {type(vectorstore).__name__}")
        for given in [chat_model, *(sub_models or [])]:
            if given is not None and not isinstance(given, ChatModel):
                raise ConfigError(f"chat_model and sub_models take ChatModel objects (model_name, has_price, "
                                  f"complete(), close()); got {type(given).__name__}")
        if chat_model is not None and config is None and "backend_kwargs" not in settings:
            settings["backend_kwargs"] = {"model_name": chat_model.model_name}  # the config names no other root
        if config is None:
            config = DeepRecallConfig.build(**settings)
        elif settings:
            config = DeepRecallConfig.build(**{**config.model_dump(), **settings})
        self.config = config
        self.store = vectorstore
        self._root, self._subs = (self._build_models(config) if chat_model is None else
                                  assemble(chat_model, self._build_subs(config.other_backends, config.other_backend_kwargs)))
        if sub_models is not None:
            self._subs = list(sub_models)
        self._check_prices([self._root, *self._subs])
        self.sandbox = build_sandbox(config.environment, dict(config.environment_kwargs))
        self._pool = WorkerPool(self.sandbox, size=self.sandbox.settings.pool_size,
                                start_timeout=self.sandbox.settings.start_timeout)
        self._closed = False
        self._description: tuple[float, dict[str, Any] | None] = (0.0, None)
        self._switched: dict[str, ChatModel] = {}
        self._lock = threading.Lock()
        self._describe_lock = threading.Lock()
        self._subscribers: list[EventSink] = list(subscribers)
        if config.trace_dir is not None:  # trace files are one more subscriber of every query's events
            from deeprecall.observability.trace_file import TraceDir

            self._subscribers.append(TraceDir(config.trace_dir))
        self._running: weakref.WeakSet[QueryRun] = weakref.WeakSet()
        self._sub_limits = SubCallLimits(config.sub_concurrency)  # one adaptive limit per sub-model, for all queries

    @staticmethod
    def _build_models(config: DeepRecallConfig) -> tuple[ChatModel, list[ChatModel]]:
        # hybrid = one model reasons (root), another executes (the default llm_query model): assemble() splits it.
        root = build_chat_model(config.backend, dict(config.backend_kwargs))
        return assemble(root, DeepRecall._build_subs(config.other_backends, config.other_backend_kwargs))

    @staticmethod
    def _build_subs(backends: list[str], kwargs: list[dict[str, Any]]) -> list[ChatModel]:
        return [build_chat_model(b, dict(k)) for b, k in zip(backends, kwargs, strict=True)]

    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        """Call ``sink(event)`` with every event of every later query; returns the function that
        unsubscribes it. A sink runs on the query's thread, one event at a time per query (several
        queries may call it at once); one that raises is logged and gets no more events of that query."""
        with self._lock:
            self._subscribers.append(sink)

        def unsubscribe() -> None:
            with self._lock:
                if sink in self._subscribers:
                    self._subscribers.remove(sink)

        return unsubscribe

    def __repr__(self) -> str:
        return f"DeepRecall(store={self.store!r}, backend={self.config.backend!r}, environment={self.config.environment!r})"

    def _check_prices(self, models: list[ChatModel]) -> None:
        if self.config.max_cost_usd is None:
            return
        unpriced = [m.model_name for m in models if not getattr(m, "has_price", False)]
        if unpriced:
            raise ConfigError(f"max_cost_usd is set but the price of {unpriced} is unknown; add "
                              "backend_kwargs['pricing'] (USD per token: {'input': ..., 'output': ...}) for them")

    # -- public API ----------------------------------------------------------
    def query(self, question: str, filters: dict[str, Any] | None = None, *, top_k: int | None = None,
              backend: str | None = None, backend_kwargs: dict[str, Any] | None = None,
              on_event: EventSink | None = None) -> QueryResult:
        """Answer ``question`` from the store. ``filters`` is enforced on every search.

        ``backend`` / ``backend_kwargs`` switch the root model for this query only;
        the model is built once and reused by later queries that ask for it.
        ``on_event`` is called with each of the query's events, on this thread, as they happen.
        """
        run = self._prepare(question, filters, top_k, backend, backend_kwargs, [] if on_event is None else [on_event])
        return self._execute(run)

    def stream(self, question: str, filters: dict[str, Any] | None = None, *, top_k: int | None = None,
               backend: str | None = None, backend_kwargs: dict[str, Any] | None = None) -> EventStream:
        """``query()``, run on its own thread, as an iterator of its events (``deeprecall/events.py``),
        the ``AnswerEvent`` (carrying the ``QueryResult``) last. Leaving the loop early, or ``close()``,
        cancels the query. Arguments are checked here, before the query starts."""
        def start(sink: EventSink, done: Callable[[QueryThread], None]) -> QueryThread:
            run = self._prepare(question, filters, top_k, backend, backend_kwargs, [sink])
            return QueryThread(run, self._execute, done).start()

        return EventStream(start)

    def astream(self, question: str, filters: dict[str, Any] | None = None, *, top_k: int | None = None,
                backend: str | None = None, backend_kwargs: dict[str, Any] | None = None,
                deltas: bool = True) -> AsyncEventStream:
        """``async for event in engine.astream(...)``: ``stream()`` for asyncio. Cancelling the consuming
        task or leaving the loop cancels the query. Call it from a running event loop. ``deltas=False``:
        this consumer needs no ``model_delta`` events (the server shows steps, not tokens), so unless
        another subscriber wants them the model is called without streaming."""
        def start(sink: EventSink, done: Callable[[QueryThread], None]) -> QueryThread:
            run = self._prepare(question, filters, top_k, backend, backend_kwargs, [sink if deltas else WithoutDeltas(sink)])
            return QueryThread(run, self._execute, done).start()

        return AsyncEventStream(start)

    async def aquery(self, question: str, filters: dict[str, Any] | None = None, *, top_k: int | None = None,
                     backend: str | None = None, backend_kwargs: dict[str, Any] | None = None,
                     on_event: EventSink | None = None) -> QueryResult:
        """``await engine.aquery(...)``: ``query()`` for asyncio; cancelling the task cancels the query.
        ``on_event`` is called on the event loop's thread, in order."""
        if on_event is None:
            def start(done: Callable[[QueryThread], None]) -> QueryThread:
                run = self._prepare(question, filters, top_k, backend, backend_kwargs, [])
                return QueryThread(run, self._execute, done).start()

            return await wait_for_result(start)
        stream = self.astream(question, filters, top_k=top_k, backend=backend, backend_kwargs=backend_kwargs)
        listening = True
        async with stream:
            async for event in stream:
                listening = listening and _deliver(on_event, event)
        if stream.result is None:  # cannot happen: a stream that ended without raising has its result
            raise RuntimeError("the query ended without a result")
        return stream.result

    def _prepare(self, question: str, filters: dict[str, Any] | None, top_k: int | None, backend: str | None,
                 backend_kwargs: dict[str, Any] | None, sinks: list[EventSink]) -> QueryRun:
        """Check the arguments and build the query's run (nothing runs yet)."""
        if self._closed:
            raise ConfigError("this DeepRecall engine is closed; create a new one")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("query() needs a non-empty question string")
        if top_k is not None and not 1 <= top_k <= self.config.max_top_k:
            raise ConfigError(f"top_k must be between 1 and max_top_k={self.config.max_top_k}")
        enforced = filter_language.combine(self.config.filters, filter_language.validate(filters))
        root, subs = ((self._root, self._subs) if backend is None and backend_kwargs is None
                      else assemble(self._switched_root(backend, backend_kwargs), self._subs))  # hybrid: its executor
        with self._lock:
            sinks = [*self._subscribers, *sinks]
        run = QueryRun(question=question, store=self.store, root=root, subs=subs, config=self.config,
                       enforced_filters=enforced, top_k=top_k or self.config.top_k, sinks=sinks,
                       sub_limits=self._sub_limits)
        run.context = {"question": question, "store": self._describe_store(), "default_top_k": run.top_k,
                       "scoped_by_host": enforced is not None}
        return self._deepen(run)

    def _deepen(self, run: QueryRun) -> QueryRun:
        """While the query tree is shallower than ``max_depth``, ``rlm_query`` in ``run``'s code runs a
        child query (docs/recursion.md) the way this engine runs any query; at ``max_depth``, ``llm_query``."""
        if run.depth < self.config.max_depth:
            run.spawn = ChildQueries(run, lambda child: self._execute(self._deepen(child)))
        return run

    def _switched_root(self, backend: str | None, kwargs: dict[str, Any] | None) -> ChatModel:
        values = {"backend": backend or self.config.backend, "backend_kwargs": kwargs or dict(self.config.backend_kwargs)}
        checked = DeepRecallConfig.build(**{**self.config.model_dump(), **values})
        key = repr((checked.backend, sorted(checked.backend_kwargs.items())))
        with self._lock:
            model = self._switched.get(key)
        if model is None:
            model = build_chat_model(checked.backend, dict(checked.backend_kwargs))
            reasoner, executor = assemble(model)
            self._check_prices([reasoner, *executor])
            with self._lock:
                model = self._switched.setdefault(key, model)
        return model

    def _describe_store(self) -> dict[str, Any]:
        """The store's description, refreshed at most every DESCRIBE_TTL seconds: it
        costs a few store round trips and changes rarely."""
        with self._describe_lock:  # one refresh at a time: a burst of queries must not stampede the store
            cached_at, description = self._description
            if description is None or time.monotonic() - cached_at > DESCRIBE_TTL:
                description = self.store.describe()
                self._description = (time.monotonic(), description)
        return dict(description)

    def warm(self, workers: int | None = None) -> None:
        """Start sandbox workers and read the store's description now, rather than at
        the first queries (a burst of them would otherwise all wait on one describe())."""
        self._describe_store()
        self._pool.warm(workers)

    def sandbox_pool(self) -> dict[str, int]:
        """The warm worker pool now: ``idle``, ``starting`` and ``target`` (the server's /metrics reads it)."""
        return self._pool.stats()

    def close(self) -> None:
        """Cancel the queries still running, kill the workers, close the models."""
        if self._closed:
            return
        self._closed = True
        for run in list(self._running):
            run.cancel()
        self._pool.close()
        self.sandbox.close()
        for model in [self._root, *self._subs, *self._switched.values()]:
            model.close()

    def __enter__(self) -> DeepRecall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one query -----------------------------------------------------------
    def _execute(self, run: QueryRun) -> QueryResult:
        """Run the query and emit its last event, the ``AnswerEvent``, also when it raises (the
        event then says ``error="exception"``, and the exception goes on to the caller)."""
        self._running.add(run)
        try:
            run.announce()
            result = self._answer(run)
        except BaseException as e:
            result = self._result(run, "", "exception", redact(f"{type(e).__name__}: {e}"), [])
            self._emit_answer(run, result)
            raise
        finally:
            self._running.discard(run)
        self._emit_answer(run, result)
        return result

    @staticmethod
    def _emit_answer(run: QueryRun, result: QueryResult) -> None:
        if run.events.active:  # not result.to_dict(): that deep-copies every step to read the usage
            usage = {**dataclasses.asdict(result.usage), "total_tokens": result.usage.total_tokens,
                     "total_cost_usd": result.usage.total_cost_usd}
            run.events.emit(AnswerEvent, answer=result.answer, sources=[dict(s.__dict__) for s in result.sources],
                            grounded=result.grounded, usage=usage, seconds=result.seconds, error=result.error,
                            error_message=result.error_message, result=result)

    def _answer(self, run: QueryRun) -> QueryResult:
        from deeprecall.engine.rlm_adapter import DeepRecallRLM, WorkerREPL, best_partial_answer

        rlm: DeepRecallRLM | None = None
        env: WorkerREPL | None = None
        answer, error, message = "", None, None
        try:
            if self.config.ground_first_turn:
                run.ground()
                run.context["first_hits"] = run.first_hits
            run.check()
            env = WorkerREPL(run, self._start_worker(run), restart=lambda: self._start_worker(run),
                             cell_timeout=self.sandbox.settings.cell_timeout)
            rlm = DeepRecallRLM(run, env, max_iterations=self.config.max_iterations, tool_docs=TOOL_DOCS,
                                style=self._prompt_style(run.root))
            answer = rlm.completion(run.context, root_prompt=run.question).response
            if run.stop is not None:
                raise run.stop
        except QueryLimitExceeded as e:
            answer, error, message = best_partial_answer(run, rlm), e.reason, str(e)
        except ProviderError as e:  # a call cut by the query's deadline is max_seconds, not a provider fault
            timed_out = run.deadline is not None and time.monotonic() >= run.deadline - 0.05
            reason = "max_seconds" if timed_out else "llm_error"
            answer, error, message = best_partial_answer(run, rlm), reason, str(e)
        except SandboxError as e:
            answer, error, message = best_partial_answer(run, rlm), "sandbox_failed", str(e)
        finally:
            run.end_children()
            if env is not None:
                env.cleanup()
        if run.cancelled:  # whatever the cancel broke on its way out (a killed worker) is the cancel
            error, message = CANCELLED, "the query was cancelled by its caller"
        elif (not answer.strip()) if error is None else (error in FLOORED and not run.drafted_answer):
            answer = self._floor(run) or answer
        run.finish()
        sources = run.cited_sources() or supporting(answer, run.question, run.sources.values())
        result = self._result(run, answer, error, message, sources)
        log.info("query done in %.2fs: %d steps, %d root + %d sub calls, %d searches, %d tokens, error=%s",
                 result.seconds, len(result.steps), run.usage.root_calls, run.usage.sub_calls, run.usage.search_calls,
                 run.usage.total_tokens, error)
        return result

    @staticmethod
    def _result(run: QueryRun, answer: str, error: str | None, message: str | None, sources: list[Any]) -> QueryResult:
        return QueryResult(question=run.question, answer=answer, sources=sources, steps=run.steps,
                           usage=run.usage, error=error, error_message=message, seconds=time.monotonic() - run.started,
                           grounded=bool(sources), retrieved=list(run.sources.values()), query_id=run.query_id,
                           children=list(run.children), depth=run.depth,
                           parent_query_id=run.parent.query_id if run.parent is not None else None)

    def _start_worker(self, run: QueryRun) -> WorkerSession:
        """Bind a pooled worker to this query. A worker that died while idle in the pool
        (a cloud sandbox reaching its lifetime, say) is replaced once by a freshly started one."""
        try:
            return self._bind(self._pool.acquire(), run)
        except SandboxError:
            return self._bind(self._pool.spawn(), run)

    def _bind(self, session: WorkerSession, run: QueryRun) -> WorkerSession:
        settings = self.sandbox.settings
        try:
            session.init(context=run.context, handler=run.handle_call, output_cap=settings.output_cap,
                         limits=settings.limits(), timeout=settings.start_timeout)
        except BaseException:
            session.kill()
            raise
        return session

    def _prompt_style(self, root: ChatModel) -> str:
        style = self.config.prompt_style
        if style == "auto":
            return "compact" if getattr(root, "small_model", False) else "rlms"
        return style

    @staticmethod
    def _floor(run: QueryRun) -> str:
        """The loop ended with no drafted answer: answer once from what it retrieved (one-shot RAG
        over the query's hits), so a stuck model is never worse than plain retrieval. "" if that fails."""
        try:
            return run.answer_from_evidence()
        except DeepRecallError as e:
            log.info("the evidence-only answer failed too: %s", e)
            return ""


def _deliver(sink: EventSink, event: Any) -> bool:
    """Call a consumer's callback; False if it raised (logged; it gets no more events, the query goes on)."""
    try:
        sink(event)
    except Exception as e:
        log.warning("on_event raised %s on a %s event; it gets no more events of query %s",
                    type(e).__name__, event.type, event.query_id)
        return False
    return True
