"""The whole loop, offline: a scripted stand-in plays the model.

Nothing here is intelligent: the "model" is deeprecall.testing's scripted
OpenAI-compatible server replaying two turns. What is real is everything else:
the openai client, rlms's loop, the sandboxed worker process, search_db over a
real Chroma collection, the sub-LLM call, usage and sources. Useful to see what
a trace looks like, and as a template for testing your own integration.

    python examples/scripted_model.py
"""

from __future__ import annotations

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.testing.scripted_server import ScriptedLLMServer, by_turn
from deeprecall.vectorstores import ChromaStore

TURN_1 = """I'll search the store first.
```repl
hits = search_db("Acme revenue 2023", top_k=3)
for h in hits:
    print(h["id"], round(h["score"], 2), h["content"][:60])
check = llm_query("Does this say how much revenue grew? " + hits[0]["content"])
print(check)
```"""
TURN_2 = """The first hit answers it.
```repl
answer["content"] = "Acme's revenue grew 12% in 2023."
answer["sources"] = [hits[0]["id"]]
answer["ready"] = True
```"""


def main() -> None:
    store = ChromaStore("scripted-example", persist_directory=None, embedding_fn=HashingEmbedding())
    store.add_documents(["Acme's revenue grew 12% in 2023.", "Acme opened a factory in Lyon.", "Globex fell 3%."],
                        metadatas=[{"tenant": "acme"}, {"tenant": "acme"}, {"tenant": "globex"}])
    with ScriptedLLMServer({"root": by_turn(TURN_1, TURN_2), "sub": lambda r: "Yes: 12%."}) as llm:
        config = DeepRecallConfig(backend="vllm", backend_kwargs={"model_name": "root", "base_url": llm.base_url},
                                  other_backends=["vllm"],
                                  other_backend_kwargs=[{"model_name": "sub", "base_url": llm.base_url}])
        with DeepRecall(vectorstore=store, config=config) as engine:
            result = engine.query("How much did Acme's revenue grow?", filters={"tenant": "acme"})
    print("answer:", result.answer)
    print("sources:", [(s.id[:8], s.content) for s in result.sources])
    for step in result.steps:
        print(f"step {step.index}: {len(step.searches)} searches, {len(step.sub_calls)} sub-calls")
        print("  output:", step.output.strip().replace("\n", "\n          "))
    print("usage:", result.usage)


if __name__ == "__main__":
    main()
