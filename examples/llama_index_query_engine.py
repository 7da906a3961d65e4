"""DeepRecall inside LlamaIndex, offline: a query engine (also as a QueryEngineTool for agents) and a retriever.

The "model" is a Python function (deeprecall.testing.FunctionChatModel) that always writes the same
search-and-answer code; everything else is real: the sandboxed worker runs that code, search_db
searches a real Chroma collection under the tenant's filter, and llama-index-core calls the engine.
Swap in a real backend (DeepRecallConfig(backend="openai", ...)) and nothing else changes.

    pip install 'deeprecall[chroma,llama-index]'
    python examples/llama_index_query_engine.py
"""

from __future__ import annotations

import asyncio

from llama_index.core.tools import QueryEngineTool

from deeprecall import DeepRecall
from deeprecall.embeddings import HashingEmbedding
from deeprecall.integrations.llama_index import DeepRecallQueryEngine, DeepRecallRetriever
from deeprecall.testing.function_model import FunctionChatModel
from deeprecall.vectorstores import ChromaStore

SEARCH_AND_ANSWER = """I'll search the store.
```repl
hits = search_db("Acme revenue 2023", top_k=3)
answer["content"] = "Acme's revenue grew 12% in 2023."
answer["sources"] = [hits[0]["id"]]
answer["ready"] = True
```"""


def main() -> None:
    store = ChromaStore("llama-index-example", persist_directory=None, embedding_fn=HashingEmbedding())
    store.add_documents(["Acme's revenue grew 12% in 2023.", "Acme opened a factory in Lyon.", "Globex fell 3%."],
                        metadatas=[{"tenant": "acme"}, {"tenant": "acme"}, {"tenant": "globex"}],
                        ids=["acme-revenue", "acme-lyon", "globex-revenue"])
    model = FunctionChatModel(lambda messages: SEARCH_AND_ANSWER, model_name="scripted")
    with DeepRecall(store, chat_model=model) as engine:
        query_engine = DeepRecallQueryEngine(engine, filters={"tenant": "acme"})
        response = query_engine.query("How much did Acme's revenue grow?")
        print("answer:", response.response)
        print("sources:", [(n.node.node_id, n.node.get_content()) for n in response.source_nodes])
        print("tokens:", response.metadata["deeprecall"]["usage"]["total_tokens"] > 0)

        tool = QueryEngineTool.from_defaults(query_engine, name="acme_docs", description="Answers questions about Acme.")
        print("tool:", asyncio.run(tool.acall("How much did Acme's revenue grow?")).content)

        nodes = DeepRecallRetriever(engine, filters={"tenant": "acme"}).retrieve("How much did Acme's revenue grow?")
        print("retrieved:", [n.node.node_id for n in nodes])


if __name__ == "__main__":
    main()
