"""The LangChain adapters (deeprecall/integrations/langchain.py) against the real langchain-core: the
retriever and the tool, sync and async, in an LCEL chain and under astream_events, over the real engine
(scripted LLM server, rlms loop, sandbox worker, Chroma)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool

from deeprecall.errors import FilterError, MissingDependencyError, QueryEndedEarly
from deeprecall.integrations.langchain import INFO_KEY, DeepRecallRetriever, DeepRecallTool
from deeprecall.testing.scripted_server import by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_query import SEARCH_AND_SUMMARISE, SUBMIT, repl

QUESTION = "How much did Acme's revenue grow in 2023?"
ANSWER = "Acme revenue grew 12% in 2023."
# Cites its first hit, then searches until max_search_calls refuses: the query ends early with that draft.
OVER_BUDGET = repl('hits = search_db("Acme revenue growth 2023")\n'
                   'answer["content"] = "Acme grew 12% (draft)"\nanswer["sources"] = [hits[0]["id"]]\n'
                   'for i in range(5):\n    search_db(f"more {i}")')


@pytest.fixture
def engine(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    return make_engine(server, filters={"tenant": "acme"})


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.metadata['id']}] {d.page_content}" for d in docs)


def test_the_retriever_returns_the_answers_sources_with_the_answer_in_their_metadata(engine):
    docs = DeepRecallRetriever(engine=engine).invoke(QUESTION)

    assert [d.id for d in docs] == ["doc0"]
    doc = docs[0]
    assert doc.page_content == "Acme's revenue grew 12% in 2023, driven by the widget line."
    assert doc.metadata["tenant"] == "acme" and doc.metadata["year"] == 2023  # the store's own metadata
    assert doc.metadata["id"] == "doc0" and doc.metadata["score"] > 0
    info = doc.metadata[INFO_KEY]
    assert info["answer"] == ANSWER and info["grounded"] and info["error"] is None
    assert info["usage"]["root"][ROOT]["calls"] == 2 and info["usage"]["sub"][SUB]["calls"] == 1
    assert info["usage"]["total_tokens"] > 0 and len(info["query_id"]) == 32


def test_the_retrievers_filters_narrow_the_engines_and_cannot_widen_them(engine):
    searches: list[Any] = []
    engine.subscribe(lambda e: searches.append(e) if e.type == "search" else None)
    DeepRecallRetriever(engine=engine, filters={"year": 2023}).invoke(QUESTION)
    assert searches[0].filters == {"$and": [{"tenant": "acme"}, {"year": 2023}]} and searches[0].hit_ids == ["doc0"]

    searches.clear()
    docs = DeepRecallRetriever(engine=engine, filters={"tenant": "globex"}).invoke(QUESTION)  # another tenant's
    assert searches[0].filters == {"$and": [{"tenant": "acme"}, {"tenant": "globex"}]}
    assert all(s.hit_ids == [] for s in searches) and docs == []


def test_bad_filters_are_refused_when_the_retriever_is_built(engine):
    with pytest.raises(FilterError, match=r"\$regex"):
        DeepRecallRetriever(engine=engine, filters={"name": {"$regex": "A.*"}})


def test_an_lcel_chain_runs_sync_and_async(engine):
    chain = DeepRecallRetriever(engine=engine) | RunnableLambda(format_docs)
    expected = "[doc0] Acme's revenue grew 12% in 2023, driven by the widget line."
    assert chain.invoke(QUESTION) == expected
    assert asyncio.run(chain.ainvoke(QUESTION)) == expected


def test_astream_events_shows_deeprecalls_steps_as_custom_events(engine):
    async def watch() -> list[dict[str, Any]]:
        retriever = DeepRecallRetriever(engine=engine)
        return [e async for e in retriever.astream_events(QUESTION, version="v2")]

    events = asyncio.run(watch())
    custom = [e for e in events if e["event"] == "on_custom_event"]
    names = [e["name"] for e in custom]
    assert names[:2] == ["deeprecall.query_started", "deeprecall.search"] and names[-1] == "deeprecall.answer"
    assert "deeprecall.model_turn" in names and "deeprecall.cell_started" in names
    assert "deeprecall.model_delta" not in names
    assert custom[0]["data"]["question"] == QUESTION and custom[0]["data"]["filters"] == {"tenant": "acme"}
    assert custom[-1]["data"]["answer"] == ANSWER
    end = next(e for e in events if e["event"] == "on_retriever_end")
    assert [d.id for d in end["data"]["output"]] == ["doc0"]


def test_a_sync_callback_handler_sees_the_same_steps(engine):
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.names: list[str] = []

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            self.names.append(name)

    recorder = Recorder()
    DeepRecallRetriever(engine=engine).invoke(QUESTION, config={"callbacks": [recorder]})
    assert recorder.names[0] == "deeprecall.query_started" and recorder.names[-1] == "deeprecall.answer"
    assert recorder.names.count("deeprecall.model_turn") == 2


def test_the_tool_answers_with_its_sources_sync_and_async(engine):
    tool = DeepRecallTool(engine=engine)
    schema = convert_to_openai_tool(tool)["function"]  # what bind_tools() shows a chat model
    assert schema["name"] == "deeprecall" and "knowledge base" in schema["description"]
    assert list(schema["parameters"]["properties"]) == ["question"] and schema["parameters"]["required"] == ["question"]
    call = {"type": "tool_call", "id": "call-1", "name": tool.name, "args": {"question": QUESTION}}

    message = tool.invoke(call)
    assert isinstance(message, ToolMessage) and message.tool_call_id == "call-1"
    assert message.content.startswith(ANSWER)
    assert "[doc0] Acme's revenue grew 12% in 2023" in message.content and "stopped early" not in message.content
    assert message.artifact["answer"] == ANSWER and [s["id"] for s in message.artifact["sources"]] == ["doc0"]

    message = asyncio.run(tool.ainvoke(call))
    assert message.content.startswith(ANSWER) and message.artifact["sources"][0]["id"] == "doc0"
    assert tool.invoke({"question": QUESTION}).startswith(ANSWER)  # plain args: the content alone


def test_a_limit_hit_is_in_the_metadata_or_raised_and_noted_in_the_tools_reply(llm, make_engine):
    engine = make_engine(llm({ROOT: by_turn(OVER_BUDGET)}), max_search_calls=2)

    docs = DeepRecallRetriever(engine=engine).invoke(QUESTION)
    assert [d.id for d in docs] == ["doc0"]  # the partial answer's source is kept
    info = docs[0].metadata[INFO_KEY]
    assert info["error"] == "max_search_calls" and "max_search_calls=2" in info["error_message"]
    assert info["answer"] == "Acme grew 12% (draft)"

    with pytest.raises(QueryEndedEarly, match="max_search_calls") as raised:
        asyncio.run(DeepRecallRetriever(engine=engine, raise_on_error=True).ainvoke(QUESTION))
    assert raised.value.result.answer == "Acme grew 12% (draft)"

    reply = DeepRecallTool(engine=engine).invoke({"question": QUESTION})
    assert reply.startswith("Acme grew 12% (draft)") and "stopped early: max_search_calls" in reply
    assert "may be partial" in reply


SLOW_CELL = repl("import time\ntime.sleep(30)")


async def cancel_mid_cell(engine, call) -> str:
    """Start ``call()`` as a task, cancel it while the model's cell runs, and return how the query ended."""
    seen: list[Any] = []
    engine.subscribe(seen.append)
    task = asyncio.ensure_future(call())
    for _ in range(200):
        if any(e.type == "cell_started" for e in seen):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the closing event comes from the query's thread once it has stopped
        if seen[-1].type == "answer":
            return str(seen[-1].error)
        await asyncio.sleep(0.05)
    return "still running"


def test_cancelling_an_async_call_cancels_the_query(llm, make_engine):
    engine = make_engine(llm({ROOT: by_turn(SLOW_CELL)}))
    retriever = DeepRecallRetriever(engine=engine)
    assert asyncio.run(cancel_mid_cell(engine, lambda: retriever.ainvoke(QUESTION))) == "cancelled"
    tool = DeepRecallTool(engine=engine)
    assert asyncio.run(cancel_mid_cell(engine, lambda: tool.ainvoke({"question": QUESTION}))) == "cancelled"


def hide_modules(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """Make ``import prefix...`` fail as it does when the package is not installed."""
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, prefix, None)


def load_fresh(module: str) -> None:
    """Run an adapter module's code again under a throwaway name (the imported one stays as it is)."""
    path = Path(__file__).resolve().parents[2] / (module.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(f"fresh_{module}", path)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_without_the_extra_the_import_error_names_it(monkeypatch):
    hide_modules(monkeypatch, "langchain_core")
    with pytest.raises(MissingDependencyError, match=r"pip install 'deeprecall\[langchain\]'"):
        load_fresh("deeprecall.integrations.langchain")
