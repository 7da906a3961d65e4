"""DeepRecall inside LangChain, offline: a retriever in an LCEL chain, and a tool an agent can call.

The "model" is a Python function (deeprecall.testing.FunctionChatModel) that always writes the same
search-and-answer code; everything else is real: the sandboxed worker runs that code, search_db
searches a real Chroma collection under the tenant's filter, and langchain-core runs the chain.
Swap in a real backend (DeepRecallConfig(backend="openai", ...)) and nothing else changes.

    pip install 'deeprecall[chroma,langchain]'
    python examples/langchain_retriever.py
"""

from __future__ import annotations

import asyncio

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from deeprecall import DeepRecall
from deeprecall.embeddings import HashingEmbedding
from deeprecall.integrations.langchain import DeepRecallRetriever, DeepRecallTool
from deeprecall.testing.function_model import FunctionChatModel
from deeprecall.vectorstores import ChromaStore

SEARCH_AND_ANSWER = """I'll search the store.
```repl
hits = search_db("Acme revenue 2023", top_k=3)
answer["content"] = "Acme's revenue grew 12% in 2023."
answer["sources"] = [hits[0]["id"]]
answer["ready"] = True
```"""


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def main() -> None:
    store = ChromaStore("langchain-example", persist_directory=None, embedding_fn=HashingEmbedding())
    store.add_documents(["Acme's revenue grew 12% in 2023.", "Acme opened a factory in Lyon.", "Globex fell 3%."],
                        metadatas=[{"tenant": "acme"}, {"tenant": "acme"}, {"tenant": "globex"}],
                        ids=["acme-revenue", "acme-lyon", "globex-revenue"])
    model = FunctionChatModel(lambda messages: SEARCH_AND_ANSWER, model_name="scripted")
    with DeepRecall(store, chat_model=model) as engine:
        retriever = DeepRecallRetriever(engine=engine, filters={"tenant": "acme"})
        docs = retriever.invoke("How much did Acme's revenue grow?")
        print("answer:", docs[0].metadata["deeprecall"]["answer"])
        print("sources:", [(d.id, d.metadata["score"] > 0) for d in docs])

        chain = retriever | RunnableLambda(format_docs)
        print("chain:", asyncio.run(chain.ainvoke("How much did Acme's revenue grow?")))

        tool = DeepRecallTool(engine=engine, filters={"tenant": "acme"})
        print("tool:", tool.invoke({"question": "How much did Acme's revenue grow?"}))


if __name__ == "__main__":
    main()
