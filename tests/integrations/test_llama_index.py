"""The LlamaIndex adapters (deeprecall/integrations/llama_index.py) against the real llama-index-core: the
query engine and the retriever, sync and async, behind a QueryEngineTool, over the real engine (scripted LLM
server, rlms loop, sandbox worker, Chroma)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.core.tools import QueryEngineTool

from deeprecall.errors import ConfigError, FilterError, MissingDependencyError, QueryEndedEarly
from deeprecall.integrations.llama_index import INFO_KEY, DeepRecallQueryEngine, DeepRecallRetriever
from deeprecall.testing.scripted_server import by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_query import SEARCH_AND_SUMMARISE, SUBMIT
from tests.integrations.test_langchain import (
    ANSWER,
    OVER_BUDGET,
    QUESTION,
    SLOW_CELL,
    cancel_mid_cell,
    hide_modules,
    load_fresh,
)

DOC0 = "Acme's revenue grew 12% in 2023, driven by the widget line."


@pytest.fixture
def engine(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    return make_engine(server, filters={"tenant": "acme"})


def test_the_query_engine_answers_with_the_sources_as_nodes(engine):
    response = DeepRecallQueryEngine(engine).query(QUESTION)

    assert isinstance(response, Response) and response.response == ANSWER and str(response) == ANSWER
    [source] = response.source_nodes
    assert isinstance(source, NodeWithScore) and isinstance(source.node, TextNode)
    assert source.node.node_id == "doc0" and source.node.get_content() == DOC0 and source.score > 0
    assert source.node.metadata["tenant"] == "acme" and source.node.metadata["id"] == "doc0"
    info = response.metadata[INFO_KEY]
    assert info["answer"] == ANSWER and info["grounded"] and info["error"] is None
    assert info["usage"]["root"][ROOT]["calls"] == 2 and info["usage"]["sub"][SUB]["calls"] == 1


def test_the_query_engine_async(engine):
    response = asyncio.run(DeepRecallQueryEngine(engine).aquery(QUESTION))
    assert response.response == ANSWER and [n.node.node_id for n in response.source_nodes] == ["doc0"]


def test_the_retriever_returns_nodes_with_the_answer_hidden_from_llm_text(engine):
    nodes = DeepRecallRetriever(engine).retrieve(QUESTION)
    assert [n.node.node_id for n in nodes] == ["doc0"] and nodes[0].score > 0
    node = nodes[0].node
    assert node.metadata[INFO_KEY]["answer"] == ANSWER and node.metadata[INFO_KEY]["grounded"]
    llm_text = node.get_content(metadata_mode=MetadataMode.LLM)
    assert DOC0 in llm_text and "tenant: acme" in llm_text and ANSWER not in llm_text  # a synthesizer reads the document
    assert ANSWER not in node.get_content(metadata_mode=MetadataMode.EMBED)

    nodes = asyncio.run(DeepRecallRetriever(engine).aretrieve(QUESTION))
    assert [n.node.node_id for n in nodes] == ["doc0"]


def test_filters_narrow_the_engines_and_cannot_widen_them(engine):
    searches: list[Any] = []
    engine.subscribe(lambda e: searches.append(e) if e.type == "search" else None)
    response = DeepRecallQueryEngine(engine, filters={"tenant": "globex"}).query(QUESTION)
    assert searches[0].filters == {"$and": [{"tenant": "acme"}, {"tenant": "globex"}]}
    assert all(s.hit_ids == [] for s in searches) and response.source_nodes == []

    searches.clear()
    DeepRecallRetriever(engine, filters={"year": 2023}).retrieve(QUESTION)
    assert searches[0].filters == {"$and": [{"tenant": "acme"}, {"year": 2023}]} and searches[0].hit_ids == ["doc0"]


def test_bad_arguments_are_refused_when_built(engine):
    with pytest.raises(FilterError, match=r"\$regex"):
        DeepRecallQueryEngine(engine, filters={"name": {"$regex": "A.*"}})
    with pytest.raises(ConfigError, match=r"deeprecall\.DeepRecall engine"):
        DeepRecallRetriever("not an engine")  # type: ignore[arg-type]


def test_a_query_engine_tool_answers_sync_and_async(engine):
    tool = QueryEngineTool.from_defaults(DeepRecallQueryEngine(engine), name="acme_docs",
                                         description="Answers questions about Acme from its documents.")
    output = tool.call(QUESTION)
    assert output.content == ANSWER and output.tool_name == "acme_docs" and not output.is_error
    assert [n.node.node_id for n in output.raw_output.source_nodes] == ["doc0"]

    output = asyncio.run(tool.acall(QUESTION))
    assert output.content == ANSWER and output.raw_output.metadata[INFO_KEY]["grounded"]


def test_a_limit_hit_is_in_the_metadata_or_raised(llm, make_engine):
    engine = make_engine(llm({ROOT: by_turn(OVER_BUDGET)}), max_search_calls=2)

    response = DeepRecallQueryEngine(engine).query(QUESTION)
    assert response.response == "Acme grew 12% (draft)" and [n.node.node_id for n in response.source_nodes] == ["doc0"]
    assert response.metadata[INFO_KEY]["error"] == "max_search_calls"

    nodes = DeepRecallRetriever(engine).retrieve(QUESTION)
    assert nodes[0].node.metadata[INFO_KEY]["error"] == "max_search_calls"

    with pytest.raises(QueryEndedEarly, match="max_search_calls") as raised:
        asyncio.run(DeepRecallQueryEngine(engine, raise_on_error=True).aquery(QUESTION))
    assert raised.value.result.error == "max_search_calls"


def test_cancelling_aquery_cancels_the_query(llm, make_engine):
    engine = make_engine(llm({ROOT: by_turn(SLOW_CELL)}))
    query_engine = DeepRecallQueryEngine(engine)
    assert asyncio.run(cancel_mid_cell(engine, lambda: query_engine.aquery(QUESTION))) == "cancelled"


def test_without_the_extra_the_import_error_names_it(monkeypatch):
    hide_modules(monkeypatch, "llama_index")
    with pytest.raises(MissingDependencyError, match=r"pip install 'deeprecall\[llama-index\]'"):
        load_fresh("deeprecall.integrations.llama_index")


def test_a_synthesizer_over_the_retriever_reads_the_documents_not_deeprecalls_answer(engine):
    from llama_index.core.llms.mock import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    # MockLLM without max_tokens replies with the prompt it was given: the reply is what the synthesizer sent.
    synthesizer = RetrieverQueryEngine.from_args(DeepRecallRetriever(engine), llm=MockLLM())
    prompt = str(synthesizer.query(QUESTION))
    assert DOC0 in prompt and "tenant: acme" in prompt
    assert ANSWER not in prompt and INFO_KEY not in prompt
