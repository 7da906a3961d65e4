"""FunctionChatModel: a ChatModel whose replies come from a function, for in-process tests."""

from __future__ import annotations

from deeprecall.providers.base import ChatModel, Completion
from deeprecall.testing.function_model import FunctionChatModel


def test_replies_come_from_the_function_and_stream_in_pieces():
    model = FunctionChatModel(lambda messages: f"you said {messages[-1]['content']}", model_name="echo", chunk=4)
    assert isinstance(model, ChatModel)
    pieces: list[str] = []
    completion = model.complete([{"role": "user", "content": "hello there"}], on_delta=pieces.append)
    assert completion.text == "you said hello there" and completion.model == "echo"
    assert pieces == ["you ", "said", " hel", "lo t", "here"]
    assert model.complete([{"role": "user", "content": "x"}]).text == "you said x"  # no on_delta: no stream
    assert model.calls == [[{"role": "user", "content": "hello there"}], [{"role": "user", "content": "x"}]]


def test_a_completion_returned_whole_keeps_its_tokens_and_a_price_makes_a_cost():
    given = Completion(text="cut", model="m", input_tokens=7, output_tokens=3, finish_reason="length")
    assert FunctionChatModel(lambda m: given).complete([{"role": "user", "content": "q"}]) is given
    priced = FunctionChatModel(lambda m: "abcdefgh", price=(0.001, 0.002))
    completion = priced.complete([{"role": "user", "content": "x" * 40}])
    assert priced.has_price and (completion.input_tokens, completion.output_tokens) == (10, 2)
    assert completion.cost_usd == 10 * 0.001 + 2 * 0.002


def test_the_function_gets_a_copy_of_the_messages():
    sent = [{"role": "user", "content": "q"}]

    def mutate(messages: list[dict[str, str]]) -> str:
        messages[0]["content"] = "changed"
        return "ok"

    FunctionChatModel(mutate).complete(sent)
    assert sent == [{"role": "user", "content": "q"}]
