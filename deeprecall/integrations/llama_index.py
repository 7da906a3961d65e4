"""LlamaIndex adapters: a query engine and a retriever over a DeepRecall engine
(``pip install 'deeprecall[llama-index]'``).

    from deeprecall.integrations.llama_index import DeepRecallQueryEngine, DeepRecallRetriever
    response = DeepRecallQueryEngine(engine, filters={"tenant": "acme"}).query("How much did Acme grow?")
    response.response, response.source_nodes, response.metadata["deeprecall"]["usage"]
    nodes = DeepRecallRetriever(engine).retrieve("...")   # NodeWithScore, one per source

The query engine's ``Response`` has the answer as ``response``, the query's ``sources`` (the retrieved
documents the answer rests on) as ``source_nodes`` (``TextNode`` with the source's id, text and metadata;
``score`` on the ``NodeWithScore``), and ``metadata["deeprecall"]``: ``answer``, ``grounded``, ``error``,
``error_message``, ``usage``, ``query_id``, ``seconds``. The retriever's nodes carry that same dict
under their own ``metadata["deeprecall"]``, excluded from what an LLM or an embedding sees of the node.

``filters`` are the request's filters: the engine ANDs them with its own (a tenant's), so they narrow
and never widen. A query that ends early returns its partial answer and sources with ``error`` set;
with ``raise_on_error=True`` it raises ``QueryEndedEarly`` (its ``result`` holds everything) instead.
"""

from __future__ import annotations

from typing import Any

from deeprecall.engine.engine import DeepRecall
from deeprecall.errors import ConfigError, MissingDependencyError
from deeprecall.integrations.answer_info import (
    INFO_KEY,
    answer_info,
    check_filters,
    raise_if_ended_early,
    source_metadata,
)
from deeprecall.results import QueryResult

try:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.base.response.schema import Response
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.prompts.mixin import PromptMixinType
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as e:
    raise MissingDependencyError("llama-index-core", "llama-index", "DeepRecall's LlamaIndex adapters") from e

__all__ = ["INFO_KEY", "DeepRecallQueryEngine", "DeepRecallRetriever"]


def _check_engine(engine: Any) -> DeepRecall:
    if not isinstance(engine, DeepRecall):
        raise ConfigError(f"engine must be a deeprecall.DeepRecall engine; got {type(engine).__name__}")
    return engine


def _nodes(result: QueryResult, info: dict[str, Any] | None) -> list[NodeWithScore]:
    """One node per source. ``info`` (the query's answer and usage) goes into each node's metadata
    when given, hidden from LLM and embedding text: a synthesizer must read the document, not the answer."""
    hidden = [INFO_KEY] if info is not None else []
    return [NodeWithScore(node=TextNode(id_=s.id, text=s.content, metadata=source_metadata(s, info),
                                        excluded_llm_metadata_keys=list(hidden),
                                        excluded_embed_metadata_keys=list(hidden)),
                          score=s.score)
            for s in result.sources]


class _OneEngine:
    """What both adapters hold: the engine, the request's filters and what to do when a query ends early."""

    def __init__(self, engine: DeepRecall, filters: dict[str, Any] | None, raise_on_error: bool) -> None:
        self.engine = _check_engine(engine)
        self.filters = check_filters(filters)
        self.raise_on_error = raise_on_error

    def _ask(self, bundle: QueryBundle) -> QueryResult:
        result = self.engine.query(bundle.query_str, self.filters)
        raise_if_ended_early(result, self.raise_on_error)
        return result

    async def _aask(self, bundle: QueryBundle) -> QueryResult:
        result = await self.engine.aquery(bundle.query_str, self.filters)
        raise_if_ended_early(result, self.raise_on_error)
        return result


class DeepRecallQueryEngine(_OneEngine, BaseQueryEngine):
    """A LlamaIndex query engine answering with DeepRecall (see the module docstring)."""

    def __init__(self, engine: DeepRecall, filters: dict[str, Any] | None = None, *, raise_on_error: bool = False,
                 callback_manager: CallbackManager | None = None) -> None:
        _OneEngine.__init__(self, engine, filters, raise_on_error)
        BaseQueryEngine.__init__(self, callback_manager=callback_manager)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}  # DeepRecall's prompts are the engine's (prompt_style), not LlamaIndex templates

    def _query(self, query_bundle: QueryBundle) -> Response:
        return self._response(self._ask(query_bundle))

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return self._response(await self._aask(query_bundle))

    @staticmethod
    def _response(result: QueryResult) -> Response:
        return Response(response=result.answer, source_nodes=_nodes(result, None), metadata={INFO_KEY: answer_info(result)})


class DeepRecallRetriever(_OneEngine, BaseRetriever):
    """A LlamaIndex retriever whose nodes are a DeepRecall query's sources (see the module docstring)."""

    def __init__(self, engine: DeepRecall, filters: dict[str, Any] | None = None, *, raise_on_error: bool = False,
                 callback_manager: CallbackManager | None = None) -> None:
        _OneEngine.__init__(self, engine, filters, raise_on_error)
        BaseRetriever.__init__(self, callback_manager=callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self._ask(query_bundle)
        return _nodes(result, answer_info(result))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = await self._aask(query_bundle)
        return _nodes(result, answer_info(result))
