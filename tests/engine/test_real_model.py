"""The whole engine on the real embedded model (Qwen2.5-Coder-1.5B on CPU, temperature 0).

Questions about a fictional world no model knows, which this model answers reliably: the
answer must come from the store, and its source must be the document that says it.
Skipped loudly without the model; under DEEPRECALL_REQUIRE_REALMODEL=1 (make test) it fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deeprecall import DeepRecall, DeepRecallConfig
from deeprecall.embeddings import HashingEmbedding
from deeprecall.providers.local_models import DEFAULT_MODEL
from deeprecall.testing.local_llm import require_local_llm
from deeprecall.vectorstores.chroma import ChromaStore

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]

DOCS = {
    "city-1": "Veloria's capital is Marbeth, a port city of 410,000 people.",
    "city-2": "Marbeth lies on the river Quill, which floods every spring.",
    "city-3": "Ostrava Minor is a mining town on the river Dask in northern Veloria.",
    "org-1": "Kessler Brightworks, a glassworks, was founded in Marbeth in 1911 by Ida Kessler.",
    "org-2": "Tolvane Shipping is headquartered in Ostrava Minor and employs 820 people.",
    "person-1": "Ida Kessler was born in Ostrava Minor in 1879 and trained as a chemist.",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[DeepRecall]:
    require_local_llm()
    store = ChromaStore("realmodel-world", persist_directory=None, embedding_fn=HashingEmbedding())
    store.add_documents(list(DOCS.values()), [{"kind": k.split("-")[0]} for k in DOCS], ids=list(DOCS))
    model = {"model_name": DEFAULT_MODEL, "n_ctx": 8192, "max_output_tokens": 256}
    config = DeepRecallConfig(backend="llama-cpp", backend_kwargs=model, other_backends=["llama-cpp"],
                              other_backend_kwargs=[model], max_iterations=4, max_seconds=240, top_k=3)
    with DeepRecall(vectorstore=store, config=config) as engine:
        yield engine


@pytest.mark.parametrize(("question", "answer", "source"), [
    ("What is the capital of Veloria?", "Marbeth", "city-1"),
    ("In which year was Kessler Brightworks founded?", "1911", "org-1"),
])
def test_the_real_model_answers_from_the_store_with_its_source(engine, question, answer, source):
    result = engine.query(question)
    assert answer in result.answer, (result.answer, result.error, [s.response for s in result.steps])
    assert result.grounded and source in [s.id for s in result.sources]
    assert result.error is None
    assert result.usage.root_calls >= 1 and result.usage.total_tokens > 0
