"""Quickstart: answer a question over a small Chroma store with a real LLM.

    export OPENAI_API_KEY=sk-...            # or DEEPRECALL_BASE_URL + DEEPRECALL_MODEL for a local server
    python examples/quickstart.py
"""

from __future__ import annotations

import os
import sys

from deeprecall import DeepRecall, DeepRecallConfig, DeepRecallError
from deeprecall.vectorstores import ChromaStore

DOCS = [
    ("Acme's revenue grew 12% in 2023, driven by the widget line.", {"tenant": "acme", "year": 2023}),
    ("Acme opened a new factory in Lyon in 2022.", {"tenant": "acme", "year": 2022}),
    ("Globex's revenue fell 3% in 2023 after a recall.", {"tenant": "globex", "year": 2023}),
]


def llm_config() -> dict[str, object]:
    base_url = os.environ.get("DEEPRECALL_BASE_URL")
    if base_url:
        return {"backend": "vllm", "backend_kwargs": {"model_name": os.environ["DEEPRECALL_MODEL"], "base_url": base_url}}
    return {"backend": "openai", "backend_kwargs": {"model_name": "gpt-4o-mini"}}


def main() -> int:
    store = ChromaStore(collection_name="quickstart", persist_directory="./.deeprecall")
    config = DeepRecallConfig(**llm_config(), max_iterations=8)  # type: ignore[arg-type]
    try:
        engine = DeepRecall(vectorstore=store, config=config)  # checks the LLM settings before any work
    except DeepRecallError as e:
        print(f"quickstart: {e}", file=sys.stderr)
        return 2
    with engine:
        store.add_documents([text for text, _ in DOCS], metadatas=[meta for _, meta in DOCS])
        result = engine.query("How did Acme do in 2023, and where did it expand?", filters={"tenant": "acme"})
    print(result.answer)
    for source in result.sources:
        print(f"- {source.id[:8]} {source.metadata} {source.content}")
    print(f"{result.usage.root_calls} root calls, {result.usage.sub_calls} sub-calls, error={result.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
