"""LangChain adapters: a retriever and a tool over a DeepRecall engine (``pip install 'deeprecall[langchain]'``).

    from deeprecall.integrations.langchain import DeepRecallRetriever, DeepRecallTool
    retriever = DeepRecallRetriever(engine=engine, filters={"tenant": "acme"})
    docs = retriever.invoke("How much did Acme grow?")   # the answer's sources, answer in metadata
    tool = DeepRecallTool(engine=engine)                   # for agents: the answer with its sources

The retriever's documents are the query's ``sources`` (the retrieved documents the answer rests on):
``page_content`` is the source's text, ``metadata`` its metadata plus ``id`` and ``score``, and
``metadata["deeprecall"]`` the query's ``answer``, ``grounded``, ``error``, ``error_message``, ``usage``,
``query_id`` and ``seconds``. An ungrounded answer has no sources, so it gives no documents.

``filters`` are the request's filters: the engine ANDs them with its own (a tenant's), so they narrow
and never widen. A query that ends early keeps its partial sources with ``error`` set; with
``raise_on_error=True`` it raises ``QueryEndedEarly`` (its ``result`` holds everything) instead.

With LangChain callbacks attached (``astream_events``, a tracer), each DeepRecall event except the
model's streamed pieces is dispatched as a custom event named ``deeprecall.<type>`` whose data is the
event as JSON (``deeprecall/events.py``); without callbacks no event is built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deeprecall.engine.engine import DeepRecall
from deeprecall.errors import MissingDependencyError
from deeprecall.integrations.answer_info import (
    INFO_KEY,
    answer_info,
    answer_text,
    check_filters,
    raise_if_ended_early,
    source_metadata,
)
from deeprecall.results import QueryResult

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        AsyncCallbackManagerForToolRun,
        CallbackManagerForRetrieverRun,
        CallbackManagerForToolRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import BaseTool
except ImportError as e:
    raise MissingDependencyError("langchain-core", "langchain", "DeepRecall's LangChain adapters") from e

__all__ = ["INFO_KEY", "DeepRecallRetriever", "DeepRecallTool"]

EVENT_PREFIX = "deeprecall."
SyncManager = CallbackManagerForRetrieverRun | CallbackManagerForToolRun
AsyncManager = AsyncCallbackManagerForRetrieverRun | AsyncCallbackManagerForToolRun


class _ForwardEvents:
    """A query subscriber that hands each event to a LangChain run's handlers as a custom event, on
    the query's thread. The model's streamed pieces are left out (``wants_deltas``): a retriever's
    consumer wants the steps, and without deltas the model is called without streaming."""

    wants_deltas = False

    def __init__(self, run_manager: SyncManager) -> None:
        self.run_manager = run_manager
        self.children = run_manager.get_child()

    def __call__(self, event: Any) -> None:
        if event.type != "model_delta":
            self.children.on_custom_event(EVENT_PREFIX + event.type, event.model_dump(mode="json"),
                                          run_id=self.run_manager.run_id)


def _query(engine: DeepRecall, question: str, filters: dict[str, Any] | None,
           run_manager: SyncManager | None) -> QueryResult:
    forward = _ForwardEvents(run_manager) if run_manager is not None and run_manager.handlers else None
    return engine.query(question, filters, on_event=forward)


async def _aquery(engine: DeepRecall, question: str, filters: dict[str, Any] | None,
                  run_manager: AsyncManager | None) -> QueryResult:
    """``engine.aquery``; with handlers to tell, ``engine.astream`` so each event is awaited on them
    in order (an ``aquery`` callback cannot await). Cancelling the task cancels the query either way."""
    if run_manager is None or not run_manager.handlers:
        return await engine.aquery(question, filters)
    children = run_manager.get_child()
    async with engine.astream(question, filters) as stream:
        async for event in stream:
            if event.type != "model_delta":
                await children.on_custom_event(EVENT_PREFIX + event.type, event.model_dump(mode="json"),
                                               run_id=run_manager.run_id)
    if stream.result is None:  # a stream that ended without raising has its result
        raise RuntimeError("the query ended without a result")
    return stream.result


def _documents(result: QueryResult) -> list[Document]:
    info = answer_info(result)
    return [Document(id=s.id, page_content=s.content, metadata=source_metadata(s, info)) for s in result.sources]


class DeepRecallRetriever(BaseRetriever):
    """A LangChain retriever whose documents are a DeepRecall query's sources (see the module docstring)."""

    engine: DeepRecall
    filters: dict[str, Any] | None = None
    raise_on_error: bool = False

    def __init__(self, **fields: Any) -> None:
        # Checked before pydantic runs: a FilterError raised inside validation would reach the caller
        # wrapped in a ValidationError, its fix buried in it.
        super().__init__(**{**fields, "filters": check_filters(fields.get("filters"))})

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        result = _query(self.engine, query, self.filters, run_manager)
        raise_if_ended_early(result, self.raise_on_error)
        return _documents(result)

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        result = await _aquery(self.engine, query, self.filters, run_manager)
        raise_if_ended_early(result, self.raise_on_error)
        return _documents(result)


class QuestionInput(BaseModel):
    """What an agent passes to the tool: only the question. Filters are the tool's, set by the
    application: a model choosing a tenant's filter is not a boundary."""

    question: str = Field(description="The question to answer, in full, as a standalone sentence.")


class DeepRecallTool(BaseTool):
    """A LangChain tool that answers a question from the store with DeepRecall.

    Its reply to the agent is the answer, then the sources it rests on (``[id]`` and the start of each),
    then a note when the query ended early (the answer is then partial). The ``ToolMessage``'s
    ``artifact`` is the whole ``QueryResult.to_dict()`` (sources, steps, usage, error)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "deeprecall"
    description: str = ("Answer a question from the knowledge base. It searches and reads the documents itself "
                        "and returns the answer with the sources it rests on.")
    args_schema: type[BaseModel] = QuestionInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    engine: DeepRecall
    filters: dict[str, Any] | None = None

    def __init__(self, **fields: Any) -> None:
        # Checked before pydantic runs: a FilterError raised inside validation would reach the caller
        # wrapped in a ValidationError, its fix buried in it.
        super().__init__(**{**fields, "filters": check_filters(fields.get("filters"))})

    def _run(self, question: str, run_manager: CallbackManagerForToolRun | None = None) -> tuple[str, dict[str, Any]]:
        result = _query(self.engine, question, self.filters, run_manager)
        return answer_text(result), result.to_dict()

    async def _arun(self, question: str,
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> tuple[str, dict[str, Any]]:
        result = await _aquery(self.engine, question, self.filters, run_manager)
        return answer_text(result), result.to_dict()
