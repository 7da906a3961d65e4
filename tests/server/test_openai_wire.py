"""The wire shapes parse with the official openai SDK's own types, and requests are checked field by field."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deeprecall.events import AnswerEvent, SearchDone
from deeprecall.results import QueryResult
from deeprecall.server import openai_wire as wire

USAGE = {"root": {"m": {"calls": 2, "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.01}},
         "sub": {"s": {"calls": 1, "input_tokens": 30, "output_tokens": 5, "cost_usd": None}},
         "search_calls": 2, "total_tokens": 155, "total_cost_usd": 0.01}


def answer(error: str | None = None) -> AnswerEvent:
    return AnswerEvent.model_construct(query_id="q1", t=1.0, step=2, answer="Lyon", grounded=True, usage=USAGE,
                                       sources=[{"id": "d1", "content": "Lyon", "metadata": {}, "score": 0.9}],
                                       seconds=1.0, error=error, error_message=None, result=QueryResult("q", "Lyon"))


def test_completion_and_chunks_parse_as_the_sdk_types():
    whole = ChatCompletion.model_validate(wire.completion(answer(), "deeprecall"))
    assert whole.choices[0].message.content == "Lyon" and whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (130, 25, 155)
    writer = wire.ChunkWriter("q1", "deeprecall")
    step = writer.step(SearchDone(query_id="q1", t=0.5, query="acme", top_k=5, hit_ids=["a", "b"], ms=3.0))
    assert step is not None
    chunks = [writer.role(), step, *writer.answer(answer("max_iterations")), writer.usage(answer())]
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert parsed[1].choices[0].delta.model_extra == {"reasoning_content": "[  0.50s] search   'acme' -> 2 hits (3 ms)\n"}
    assert parsed[3].choices[0].finish_reason == "length"  # a limit ended it: a partial answer
    assert parsed[3].model_extra["deeprecall"]["error"] == "max_iterations"
    assert parsed[4].choices == [] and parsed[4].usage is not None


@pytest.mark.parametrize(("body", "says"), [
    ([], "must be a JSON object"),
    ({"model": "x"}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "no message with role 'user'"),
    ({"messages": [{"role": "user", "content": "  "}]}, "the last user message is empty"),
    ({"messages": [{"role": "user", "content": "q"}], "model": 3}, "'model' must be a string"),
    ({"messages": [{"role": "user", "content": "q"}], "stream": "yes"}, "'stream' must be true or false"),
    ({"messages": [{"role": "user", "content": "q"}], "deeprecall": {"backend": "x"}}, "takes only"),
    ({"messages": [{"role": "user", "content": "q"}], "deeprecall": {"top_k": True}}, "must be an integer"),
])
def test_bad_requests_name_their_problem(body, says):
    with pytest.raises(wire.RequestInvalid) as refused:
        wire.parse_chat_request(body, max_messages=8, max_question_chars=100)
    assert says in str(refused.value) and refused.value.status == 400


def test_the_last_user_message_is_the_question_text_parts_joined():
    asked = wire.parse_chat_request({"model": "m", "stream": True, "stream_options": {"include_usage": True},
                                     "messages": [{"role": "user", "content": "first"},
                                                  {"role": "assistant", "content": "a"},
                                                  {"role": "user", "content": [{"type": "text", "text": "second"},
                                                                               {"type": "image_url", "image_url": {}},
                                                                               {"type": "text", "text": "part"}]}],
                                     "deeprecall": {"filters": {"year": 2023}, "top_k": 3}},
                                    max_messages=8, max_question_chars=100)
    assert asked == wire.ChatRequest(question="second\npart", model="m", stream=True, include_usage=True,
                                     filters={"year": 2023}, top_k=3)
