"""Streaming (``complete(..., on_delta=...)``) on every shape, against scripted servers streaming as the vendors do.

The real clients parse the streams: DeepRecall's own SSE reader for the OpenAI shape, the ``anthropic`` and
``google-genai`` SDKs, litellm and its Router. Checked: pieces arrive in order while the server is still sending
and join to the ``Completion`` text; usage and cost come from the stream's last event; retries and pool failover
happen only before the first piece; an error after it surfaces, not retried; a server that cannot stream gives one
piece; no key in any error."""

from __future__ import annotations

import time

import pytest

from deeprecall.errors import ProviderError
from deeprecall.providers import build_chat_model
from deeprecall.testing.scripted_server import Reply
from tests.providers.conftest import MSGS, sequence

SECRET = {"openai": "sk-secret-openai-123456", "anthropic": "sk-ant-secret-123456", "gemini": "AIzaSecretGemini123456"}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
PIECES = ["Acme's ", "revenue ", "grew ", "12% ", "in ", "2023."]
TEXT = "".join(PIECES)


def model_for(backend, server, **extra):
    if backend == "litellm":
        return build_chat_model("litellm", {"model_name": f"openai/{MODELS['openai']}", "api_key": SECRET["openai"],
                                            "base_url": server.base_url, "max_retries": 0, **extra})
    base = server.base_url if backend == "openai" else server.root_url
    return build_chat_model(backend, {"model_name": MODELS[backend], "api_key": SECRET[backend], "base_url": base,
                                      "max_retries": 0, **extra})


class Recorder:
    """An ``on_delta`` that keeps each piece and when it came."""

    def __init__(self):
        self.pieces: list[str] = []
        self.times: list[float] = []

    def __call__(self, piece: str) -> None:
        self.pieces.append(piece)
        self.times.append(time.monotonic())


SHAPES = ["openai", "anthropic", "gemini", "litellm"]


@pytest.mark.parametrize("backend", SHAPES)
def test_pieces_arrive_in_order_while_the_server_sends_and_join_to_the_completion(llm, backend):
    s = llm(lambda r: Reply(text=TEXT, chunks=PIECES, chunk_delay=0.05, usage=(1000, 100)))
    m = model_for(backend, s, pricing=PRICE)
    m.complete(MSGS, on_delta=lambda p: None)  # warm: litellm's first stream spends ~0.4 s on imports
    got = Recorder()
    c = m.complete(MSGS, on_delta=got)
    req = s.requests[-1]
    assert req.stream, "a streaming request was made"
    assert got.pieces == PIECES and c.text == TEXT
    # The server paused 50 ms before each piece: a client that buffered the reply would hand them over at once.
    assert got.times[-1] - got.times[0] > 0.15, "pieces were handed on as they arrived"
    assert (c.input_tokens, c.output_tokens) == (1000, 100), "usage from the stream's last event"
    assert c.cost_usd == pytest.approx((1000 * 1.0 + 100 * 4.0) / 1e6)
    assert c.finish_reason == "stop"
    assert req.messages == MSGS


@pytest.mark.parametrize("backend", SHAPES)
def test_without_on_delta_the_call_is_not_streamed(llm, backend):
    s = llm(lambda r: Reply(text=TEXT, usage=(10, 2)))
    c = model_for(backend, s).complete(MSGS)
    assert not s.requests[-1].stream and c.text == TEXT and (c.input_tokens, c.output_tokens) == (10, 2)


@pytest.mark.parametrize("backend", ["openai", "anthropic", "gemini"])
def test_a_streamed_reply_cut_at_the_output_limit_says_length(llm, backend):
    s = llm(lambda r: Reply(text=TEXT, finish_reason="length"))
    assert model_for(backend, s).complete(MSGS, on_delta=lambda p: None).finish_reason == "length"


def test_openai_shape_asks_for_usage_in_the_last_chunk(llm):
    s = llm(lambda r: Reply(text=TEXT, usage=(7, 3), cost=0.5))
    c = build_chat_model("openrouter", {"model_name": "openai/gpt-4o-mini", "api_key": "sk-or-x",
                                        "base_url": s.base_url}).complete(MSGS, on_delta=lambda p: None)
    body = s.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["usage"] == {"include": True}, "the row's extra body still goes out"
    assert (c.input_tokens, c.output_tokens, c.cost_usd) == (7, 3, 0.5), "the reported cost from the usage chunk"


def test_a_server_sending_no_usage_leaves_the_tokens_at_zero(llm):
    s = llm(lambda r: Reply(text=TEXT, stream_usage=False))
    c = model_for("openai", s, pricing=PRICE).complete(MSGS, on_delta=lambda p: None)
    assert c.text == TEXT and (c.input_tokens, c.output_tokens) == (0, 0) and c.cost_usd == 0.0


def test_a_server_refusing_stream_options_is_asked_again_without_them_and_never_again(llm):
    def script(r):
        if "stream_options" in r.body:
            return Reply(status=400, text="Unrecognized request argument supplied: stream_options")
        return Reply(text=TEXT)

    s = llm(script)
    m = model_for("openai", s)
    got = Recorder()
    assert m.complete(MSGS, on_delta=got).text == TEXT and "".join(got.pieces) == TEXT
    assert m.complete(MSGS, on_delta=lambda p: None).text == TEXT
    assert ["stream_options" in r.body for r in s.requests] == [True, False, False]


def test_a_server_that_cannot_stream_gives_one_piece(llm):
    s = llm(lambda r: Reply(text=TEXT, stream=False, usage=(5, 6)))
    got = Recorder()
    c = model_for("openai", s).complete(MSGS, on_delta=got)
    assert s.requests[-1].stream and got.pieces == [TEXT]
    assert (c.text, c.input_tokens, c.output_tokens) == (TEXT, 5, 6)


def test_the_connection_is_reused_after_a_stream(llm):
    s = llm(lambda r: Reply(text=TEXT))
    m = model_for("openai", s)
    for _ in range(3):
        m.complete(MSGS, on_delta=lambda p: None)
    m.complete(MSGS)
    assert len({r.client_port for r in s.requests}) == 1


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_failure_before_the_first_piece_is_retried(llm, backend):
    s = llm(sequence(Reply(status=429, text="slow down", headers={"Retry-After": "0"}), Reply(text=TEXT)))
    got = Recorder()
    assert model_for(backend, s, max_retries=1).complete(MSGS, on_delta=got).text == TEXT
    assert got.pieces == PIECES_OF(TEXT) and len(s.requests) == 2


def PIECES_OF(text):
    return Reply(text=text).pieces()


@pytest.mark.parametrize("backend", SHAPES)
def test_an_error_after_the_first_piece_surfaces_and_is_not_retried(llm, backend):
    s = llm(lambda r: Reply(text=TEXT, chunks=PIECES, cut_after=2))
    got = Recorder()
    with pytest.raises(ProviderError) as err:
        model_for(backend, s, max_retries=2).complete(MSGS, on_delta=got)
    assert got.pieces == PIECES[:2]
    assert not err.value.retryable, "nothing may retry a reply the consumer has half seen"
    assert len(s.requests) == 1
    assert SECRET["openai" if backend == "litellm" else backend] not in str(err.value)


@pytest.mark.parametrize("backend", SHAPES)
@pytest.mark.parametrize(("status", "retryable"), [(429, True), (401, False)])
def test_errors_before_the_stream_map_as_without_streaming_and_hide_the_key(llm, backend, status, retryable):
    key = SECRET["openai" if backend == "litellm" else backend]
    s = llm(lambda r: Reply(status=status, text=f"refused, key {key}"))
    got = Recorder()
    with pytest.raises(ProviderError) as err:
        model_for(backend, s).complete(MSGS, on_delta=got)
    assert err.value.status == status and err.value.retryable is retryable
    assert key not in str(err.value) and not got.pieces


class Stop(Exception):
    pass


@pytest.mark.parametrize("backend", SHAPES)
def test_an_exception_from_on_delta_propagates_unchanged(llm, backend):
    s = llm(lambda r: Reply(text=TEXT, chunks=PIECES))

    def on_delta(piece):
        raise Stop(piece)

    with pytest.raises(Stop, match="Acme's"):
        model_for(backend, s).complete(MSGS, on_delta=on_delta)


def test_a_stream_stalling_past_the_call_timeout_is_a_retryable_timeout(llm):
    s = llm(lambda r: Reply(text=TEXT, chunks=PIECES, chunk_delay=2.0))
    start = time.monotonic()
    with pytest.raises(ProviderError, match="timed out") as err:
        model_for("openai", s).complete(MSGS, timeout=0.5, on_delta=lambda p: None)
    assert err.value.retryable and time.monotonic() - start < 1.5


# ---- The pool: LiteLLM's Router fails over only before the first piece -------------------------------------

def member(server, model="gpt-4o-mini", **extra):
    return {"backend": "vllm", "model_name": model, "base_url": server.base_url, **extra}


def test_pool_streams_and_meters_by_the_member_that_served(llm):
    s = llm(lambda r: Reply(text=TEXT, chunks=PIECES, usage=(1000, 100)))
    pool = build_chat_model("pool", {"model_name": "llm-pool", "members": [member(s, pricing=PRICE)]})
    got = Recorder()
    c = pool.complete(MSGS, on_delta=got)
    assert got.pieces == PIECES and c.text == TEXT and c.model == "gpt-4o-mini"
    assert (c.input_tokens, c.output_tokens) == (1000, 100)
    assert c.cost_usd == pytest.approx((1000 * 1.0 + 100 * 4.0) / 1e6)
    assert s.requests[-1].stream
    pool.close()


def test_pool_fails_over_before_the_first_piece(llm):
    bad = llm(lambda r: Reply(status=500, text="boom"))
    good = llm(lambda r: Reply(text=TEXT, chunks=PIECES))
    pool = build_chat_model("pool", {"strategy": "ordered", "members": [member(bad), member(good)], "timeout": 5})
    got = Recorder()
    assert pool.complete(MSGS, on_delta=got).text == TEXT
    assert got.pieces == PIECES, "only the member that answered sent pieces"
    assert len(bad.requests) == 1 and len(good.requests) == 1
    pool.close()


def test_pool_does_not_fail_over_after_the_first_piece(llm):
    dying = llm(lambda r: Reply(text=TEXT, chunks=PIECES, cut_after=1))
    spare = llm(lambda r: Reply(text="from the spare"))
    pool = build_chat_model("pool", {"strategy": "ordered", "members": [member(dying), member(spare)]})
    got = Recorder()
    with pytest.raises(ProviderError) as err:
        pool.complete(MSGS, on_delta=got)
    assert got.pieces == PIECES[:1] and not err.value.retryable
    assert not spare.requests, "the spare was never asked: the consumer had already seen part of a reply"
    pool.close()


def test_pool_stream_errors_hide_keys(llm):
    bad = llm(lambda r: Reply(status=401, text="bad key sk-secret-abcdef123456"))
    pool = build_chat_model("pool", {"fallback": False, "members": [
        {"backend": "openai", "model_name": "gpt-4o-mini", "api_key": "sk-secret-abcdef123456", "base_url": bad.base_url}]})
    with pytest.raises(ProviderError) as err:
        pool.complete(MSGS, on_delta=lambda p: None)
    assert "sk-secret" not in str(err.value) and not err.value.retryable
    pool.close()


def test_hybrid_streams_its_reasoner(llm):
    s = llm({"thinker": lambda r: Reply(text=TEXT, chunks=PIECES), "doer": lambda r: "done"})
    m = build_chat_model("hybrid", {"reasoner": {"backend": "vllm", "model_name": "thinker", "base_url": s.base_url},
                                    "executor": {"backend": "vllm", "model_name": "doer", "base_url": s.base_url}})
    got = Recorder()
    assert m.complete(MSGS, on_delta=got).text == TEXT and got.pieces == PIECES
    assert s.calls_for("thinker")[-1].stream and not s.calls_for("doer")
    m.close()


# ---- The embedded model (real llama.cpp, skipped without it) ------------------------------------------------

@pytest.mark.realmodel
def test_the_embedded_model_streams_the_same_reply_it_returns():
    from deeprecall.providers.local_models import DEFAULT_MODEL
    from deeprecall.testing.local_llm import require_local_llm

    require_local_llm()
    m = build_chat_model("llama-cpp", {"model_name": DEFAULT_MODEL, "n_ctx": 2048, "max_output_tokens": 24})
    try:
        ask = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name three rivers."}]
        whole = m.complete(ask)
        got = Recorder()
        streamed = m.complete(ask, on_delta=got)
        # Not compared with `whole` word for word: the second call reuses the cached prompt prefix, and llama.cpp's
        # logits then differ in the last bits, enough to change a greedy choice now and then.
        assert len(got.pieces) > 3 and "".join(got.pieces) == streamed.text and streamed.text.strip()
        assert streamed.input_tokens == whole.input_tokens and streamed.finish_reason in ("stop", "length")
        assert 0 < streamed.output_tokens <= 24 and streamed.cost_usd == 0.0
    finally:
        m.close()
