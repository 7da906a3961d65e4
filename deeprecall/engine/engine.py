"""``DeepRecall``: attach a store, ask questions.

An engine builds its LLM clients and its sandbox pool once and shares them
between queries (connection pools and warm workers are the expensive part).
Everything that changes during a query lives in that query's ``QueryRun``,
so ``query()`` is safe to call from many threads at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from deeprecall.config import DeepRecallConfig
from deeprecall.engine.evidence import supporting
from deeprecall.engine.run import QueryRun
from deeprecall.errors import ConfigError, DeepRecallError, ProviderError, QueryLimitExceeded, SandboxError
from deeprecall.providers import ChatModel, build_chat_model, expand_hybrid
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
FLOORED = ("max_iterations", "max_search_calls", "stalled", "context_window", "cell_timeout", "sandbox_failed")
TOOL_DOCS = {"search_db": {"tool": None, "description": "search_db(query, top_k=5, filters=None) -> list of hits; see below"}}


class DeepRecall:
    """``DeepRecall(vectorstore=store, config=DeepRecallConfig(...))``, or pass config fields as keywords."""

    def __init__(self, vectorstore: VectorStore, config: DeepRecallConfig | None = None, **settings: Any) -> None:
        if not isinstance(vectorstore, VectorStore):
            raise ConfigError(f"vectorstore must implement deeprecall.vectorstores.VectorStore (search, count, describe, "
                              f"add_documents); got {type(vectorstore).__name__}")
        if config is None:
            config = DeepRecallConfig.build(**settings)
        elif settings:
            config = DeepRecallConfig.build(**{**config.model_dump(), **settings})
        self.config = config
        self.store = vectorstore
        # hybrid = one model reasons (root), another executes (the default llm_query model).
        root_backend, root_kwargs, sub_backends, sub_kwargs = expand_hybrid(
            config.backend, dict(config.backend_kwargs), config.other_backends, config.other_backend_kwargs)
        self._root = build_chat_model(root_backend, dict(root_kwargs))
        self._subs = [build_chat_model(b, dict(k)) for b, k in zip(sub_backends, sub_kwargs, strict=True)]
        self._check_prices([self._root, *self._subs])
        self.sandbox = build_sandbox(config.environment, dict(config.environment_kwargs))
        self._pool = WorkerPool(self.sandbox, size=self.sandbox.settings.pool_size,
                                start_timeout=self.sandbox.settings.start_timeout)
        self._closed = False
        self._description: tuple[float, dict[str, Any] | None] = (0.0, None)
        self._switched: dict[str, ChatModel] = {}
        self._lock = threading.Lock()
        self._describe_lock = threading.Lock()

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
              backend: str | None = None, backend_kwargs: dict[str, Any] | None = None) -> QueryResult:
        """Answer ``question`` from the store. ``filters`` is enforced on every search.

        ``backend`` / ``backend_kwargs`` switch the root model for this query only;
        the model is built once and reused by later queries that ask for it.
        """
        if self._closed:
            raise ConfigError("this DeepRecall engine is closed; create a new one")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("query() needs a non-empty question string")
        if top_k is not None and not 1 <= top_k <= self.config.max_top_k:
            raise ConfigError(f"top_k must be between 1 and max_top_k={self.config.max_top_k}")
        enforced = filter_language.combine(self.config.filters, filter_language.validate(filters))
        root = self._root if backend is None and backend_kwargs is None else self._switched_root(backend, backend_kwargs)
        run = QueryRun(question=question, store=self.store, root=root, subs=self._subs, config=self.config,
                       enforced_filters=enforced, top_k=top_k or self.config.top_k)
        run.context = {"question": question, "store": self._describe_store(), "default_top_k": run.top_k,
                       "scoped_by_host": enforced is not None}
        return self._execute(run)

    def _switched_root(self, backend: str | None, kwargs: dict[str, Any] | None) -> ChatModel:
        values = {"backend": backend or self.config.backend, "backend_kwargs": kwargs or dict(self.config.backend_kwargs)}
        checked = DeepRecallConfig.build(**{**self.config.model_dump(), **values})
        key = repr((checked.backend, sorted(checked.backend_kwargs.items())))
        with self._lock:
            model = self._switched.get(key)
        if model is None:
            model = build_chat_model(checked.backend, dict(checked.backend_kwargs))
            self._check_prices([model])
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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
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
        from deeprecall.engine.rlm_adapter import DeepRecallRLM, WorkerREPL, best_partial_answer

        rlm: DeepRecallRLM | None = None
        env: WorkerREPL | None = None
        answer, error, message = "", None, None
        try:
            if self.config.ground_first_turn:
                run.ground()
                run.context["first_hits"] = run.first_hits
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
            if env is not None:
                env.cleanup()
        if (not answer.strip()) if error is None else (error in FLOORED and not run.drafted_answer):
            answer = self._floor(run) or answer
        run.finish()
        sources = run.cited_sources() or supporting(answer, run.question, run.sources.values())
        result = QueryResult(question=run.question, answer=answer, sources=sources, steps=run.steps,
                             usage=run.usage, error=error, error_message=message, seconds=time.monotonic() - run.started,
                             grounded=bool(sources), retrieved=list(run.sources.values()))
        log.info("query done in %.2fs: %d steps, %d root + %d sub calls, %d searches, %d tokens, error=%s",
                 result.seconds, len(result.steps), run.usage.root_calls, run.usage.sub_calls, run.usage.search_calls,
                 run.usage.total_tokens, error)
        return result

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
