"""The embedded llama-cpp backend on the real model (Qwen2.5-Coder-1.5B, CPU). About 20 s.

Skipped when llama-cpp-python or the model is missing, failed instead under
DEEPRECALL_REQUIRE_REALMODEL=1 (make test). Prompts are tiny so that CI pays for
model loading and a few dozen decoded tokens, nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from deeprecall.errors import ContextWindowExceeded, ProviderError
from deeprecall.interfaces.cli import build_parser, llm_settings
from deeprecall.providers import ChatModel, build_chat_model
from deeprecall.providers.local_models import DEFAULT_MODEL
from deeprecall.testing.local_llm import require_local_llm

pytestmark = pytest.mark.realmodel


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer with one word or number only."}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def model() -> Iterator[ChatModel]:
    require_local_llm()
    m = build_chat_model("llama-cpp", {"model_name": DEFAULT_MODEL, "n_ctx": 2048, "max_output_tokens": 48})
    yield m
    m.close()


@pytest.fixture(scope="module")
def tiny() -> Iterator[ChatModel]:
    """A second instance of the same file (its weights are already mapped), with a tiny window and reply."""
    require_local_llm()
    m = build_chat_model("llama-cpp", {"model_name": DEFAULT_MODEL, "n_ctx": 256, "max_output_tokens": 4})
    yield m
    m.close()


def test_answers_a_trivial_question_at_temperature_zero(model):
    reply = model.complete(ask("What is the capital of France?"))
    assert "paris" in reply.text.lower()
    assert reply.finish_reason == "stop" and reply.model == DEFAULT_MODEL
    assert reply.input_tokens > 10 and 0 < reply.output_tokens < 48 and reply.cost_usd == 0.0
    assert model.has_price and getattr(model, "small_model", False) is True
    assert model.complete(ask("What is the capital of France?")).text == reply.text  # greedy: same again


def test_concurrent_calls_from_threads_give_the_same_correct_answers(model):
    questions = ["What is 2 + 3?", "What is the capital of Italy?"] * 3
    answers: dict[int, str] = {}

    def call(i: int) -> None:
        answers[i] = model.complete(ask(questions[i]), timeout=120).text.strip().lower()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("5" in answers[i] for i in (0, 2, 4)) and all("rome" in answers[i] for i in (1, 3, 5))
    assert len({answers[i] for i in (0, 2, 4)}) == 1 and len({answers[i] for i in (1, 3, 5)}) == 1


def test_a_reply_cut_at_max_output_tokens_says_length(tiny):
    reply = tiny.complete([{"role": "user", "content": "Count from 1 to 100, separated by commas."}])
    assert reply.finish_reason == "length" and reply.output_tokens == 4


def test_a_prompt_over_the_window_raises_context_window_exceeded(tiny):
    long = [{"role": "user", "content": "Summarise: " + "the river flows past the old mill. " * 40}]
    with pytest.raises(ContextWindowExceeded) as err:
        tiny.complete(long)
    assert err.value.window == 256 and err.value.prompt_tokens is not None and err.value.prompt_tokens > 256
    assert not err.value.retryable and "n_ctx" in str(err.value)


def test_generation_stops_at_the_timeout(model):
    with pytest.raises(ProviderError, match="timed out") as err:
        model.complete([{"role": "user", "content": "Write a long story about a river."}], timeout=0.8)
    assert err.value.retryable


def test_the_cli_uses_the_embedded_model_when_nothing_else_is_configured(capsys):
    require_local_llm()
    settings = llm_settings(build_parser().parse_args(["query", "q"]), env={})
    assert settings["backend"] == "llama-cpp" and settings["other_backends"] == ["llama-cpp"]  # two contexts
    assert settings["backend_kwargs"] == {"model_name": DEFAULT_MODEL}
    err = capsys.readouterr().err
    assert "embedded local model" in err and "OPENAI_API_KEY" in err and err.count("\n") == 1
