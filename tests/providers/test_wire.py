"""Each API shape against a scripted server speaking it: request shape, response parsing, error mapping."""

from __future__ import annotations

import json
import time

import pytest

from deeprecall.errors import ProviderError
from deeprecall.providers import build_chat_model
from deeprecall.providers.anthropic import to_anthropic
from deeprecall.providers.gemini import to_gemini
from deeprecall.testing.scripted_server import ANTHROPIC, GEMINI, OPENAI, Reply
from tests.providers.conftest import MSGS, sequence

SECRET = {"openai": "sk-secret-openai-123456", "anthropic": "sk-ant-secret-123456", "gemini": "AIzaSecretGemini123456"}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}
PROTOCOLS = ["openai", "anthropic", "gemini"]


def model_for(backend, server, **extra):
    base = server.base_url if backend == "openai" else server.root_url
    return build_chat_model(backend, {"model_name": MODELS[backend], "api_key": SECRET[backend], "base_url": base,
                                      "max_retries": 0, **extra})


def test_openai_request_shape(llm):
    s = llm(lambda r: Reply(text="fine", usage=(12, 3)))
    c = model_for("openai", s, sampling_args={"temperature": 0.2}).complete(MSGS)
    req = s.requests[-1]
    assert req.protocol == OPENAI and req.path == "/v1/chat/completions"
    assert req.body["messages"] == MSGS and req.body["temperature"] == 0.2 and req.body["model"] == "gpt-4o-mini"
    assert req.headers["authorization"] == f"Bearer {SECRET['openai']}"
    assert (c.text, c.input_tokens, c.output_tokens) == ("fine", 12, 3)


def test_anthropic_request_shape(llm):
    s = llm(lambda r: Reply(text="fine", usage=(12, 3)))
    c = model_for("anthropic", s).complete([*MSGS, {"role": "user", "content": "And 2022?"}])
    req = s.requests[-1]
    assert req.protocol == ANTHROPIC and req.path == "/v1/messages"
    assert req.body["system"] == "Be brief." and req.body["max_tokens"] == 4096
    assert req.body["messages"] == [{"role": "user", "content": "What grew in 2023?\n\nAnd 2022?"}]
    assert "anthropic-version" in req.headers
    assert SECRET["anthropic"] in (req.headers.get("x-api-key", "") + req.headers.get("authorization", ""))
    assert (c.text, c.input_tokens, c.output_tokens, c.model) == ("fine", 12, 3, "claude-sonnet-4-6")


def test_gemini_request_shape(llm):
    s = llm(lambda r: Reply(text="fine", usage=(12, 3)))
    convo = [*MSGS, {"role": "assistant", "content": "Revenue."}, {"role": "user", "content": "Whose?"}]
    c = model_for("gemini", s, sampling_args={"temperature": 0.0}).complete(convo)
    req = s.requests[-1]
    assert req.protocol == GEMINI and req.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert req.body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert [c["role"] for c in req.body["contents"]] == ["user", "model", "user"]
    assert req.body["generationConfig"]["temperature"] == 0.0
    assert req.headers["x-goog-api-key"] == SECRET["gemini"]
    assert req.turn == 1 and req.last_user == "Whose?"
    assert (c.text, c.input_tokens, c.output_tokens) == ("fine", 12, 3)


def test_message_conversion_edge_cases():
    system, turns = to_anthropic([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}])
    assert system is None and turns[0] == {"role": "user", "content": "(continue)"} and turns[1]["role"] == "assistant"
    system, contents = to_gemini([{"role": "system", "content": "s"}])
    assert system == "s" and contents == [{"role": "user", "parts": [{"text": "(continue)"}]}]


@pytest.mark.parametrize("backend", PROTOCOLS)
@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (401, False)])
def test_http_errors_map_to_provider_errors(llm, backend, status, retryable):
    s = llm(lambda r: Reply(status=status, text=f"scripted failure, key {SECRET[backend]}"))
    with pytest.raises(ProviderError) as err:
        model_for(backend, s).complete(MSGS)
    assert err.value.status == status and err.value.retryable is retryable
    assert SECRET[backend] not in str(err.value) and MODELS[backend] in str(err.value)


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_garbage_is_a_retryable_provider_error(llm, backend):
    s = llm(lambda r: Reply(raw=b"<html>502 bad gateway</html>"))
    with pytest.raises(ProviderError) as err:
        model_for(backend, s).complete(MSGS)
    assert err.value.retryable


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_a_hanging_server_times_out_as_retryable(llm, backend):
    s = llm(lambda r: Reply(hang=True))
    start = time.monotonic()
    with pytest.raises(ProviderError) as err:
        model_for(backend, s).complete(MSGS, timeout=0.5)
    assert err.value.retryable and time.monotonic() - start < 5


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_an_unreachable_server_is_retryable(backend):
    m = build_chat_model(backend, {"model_name": MODELS[backend], "api_key": SECRET[backend], "max_retries": 0,
                                   "base_url": "http://127.0.0.1:9"})
    with pytest.raises(ProviderError) as err:
        m.complete(MSGS, timeout=2)
    assert err.value.retryable


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_retries_honour_retry_after(llm, backend):
    s = llm(sequence(Reply(status=429, text="slow down", headers={"Retry-After": "1"}), "ok"))
    start = time.monotonic()
    assert model_for(backend, s, max_retries=1).complete(MSGS).text == "ok"
    assert time.monotonic() - start >= 0.9 and len(s.requests) == 2


def test_concurrent_calls_keep_their_own_usage(llm):
    from concurrent.futures import ThreadPoolExecutor

    s = llm(lambda r: Reply(text=r.last_user, usage=(len(r.last_user), 1)))
    m = model_for("openai", s)
    questions = [f"q{'x' * i}" for i in range(16)]
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda q: m.complete([{"role": "user", "content": q}]), questions))
    assert [(c.text, c.input_tokens) for c in results] == [(q, len(q)) for q in questions]


def test_a_reply_in_typed_parts_keeps_only_its_text(llm):
    # Mistral's reasoning models and some gateways answer with a list of parts.
    parts = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}, {"type": "text", "text": "42"}]
    body = {"choices": [{"message": {"role": "assistant", "content": parts}}], "usage": {"prompt_tokens": 3}}
    s = llm(lambda r: Reply(raw=json.dumps(body).encode()))
    c = build_chat_model("vllm", {"model_name": "m", "base_url": s.base_url, "max_retries": 0}).complete(MSGS)
    assert (c.text, c.input_tokens, c.output_tokens) == ("42", 3, 0)
