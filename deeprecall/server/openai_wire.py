"""OpenAI's chat-completions wire shapes: the request we accept, the response and the stream chunks we send.

Only the shapes live here (no I/O), so they are checked against the official ``openai`` SDK's parser in the
tests and the app stays a thin mapping from the query's events to these dicts.

A request may carry DeepRecall's own options in a ``deeprecall`` object (the SDKs send it with
``extra_body={"deeprecall": {...}}``): ``filters`` (ANDed with the key's tenant filters: they narrow,
never widen) and ``top_k``. The answer's sources, usage, error and query id come back in a ``deeprecall``
object of the response, and of the last stream chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from deeprecall.interfaces.cli_live import plain_line

LIMIT_ERRORS = frozenset({"max_iterations", "max_search_calls", "max_tokens", "max_seconds", "max_cost_usd",
                          "cell_timeout", "context_window", "stalled", "max_sub_calls", "max_llm_calls"})


class RequestInvalid(ValueError):
    """A request we refuse with 400 (or ``status``); ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    """What a chat-completions request asks DeepRecall for."""

    question: str
    model: str
    stream: bool
    include_usage: bool
    filters: dict[str, Any] | None
    top_k: int | None


def parse_chat_request(body: Any, *, max_messages: int, max_question_chars: int) -> ChatRequest:
    """Check a decoded JSON body; the last user message is the question. ``RequestInvalid`` names the problem."""
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object with 'model' and 'messages'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestInvalid("'messages' must be a non-empty list of {role, content} objects", "messages")
    if len(messages) > max_messages:
        raise RequestInvalid(f"too many messages: {len(messages)} (this server accepts at most {max_messages}); "
                             f"send the conversation's last turns only", "messages", code="too_many_messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise RequestInvalid("no message with role 'user': the last user message is the question", "messages")
    question = message_text(users[-1].get("content"))
    if not question.strip():
        raise RequestInvalid("the last user message is empty; it is the question", "messages")
    if len(question) > max_question_chars:
        raise RequestInvalid(f"the question is {len(question)} characters; this server accepts at most "
                             f"{max_question_chars}", "messages", code="question_too_long")
    model = body.get("model", "")
    if not isinstance(model, str):
        raise RequestInvalid("'model' must be a string", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestInvalid("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestInvalid("'stream_options' must be an object such as {\"include_usage\": true}", "stream_options")
    own = body.get("deeprecall") or {}
    if not isinstance(own, dict) or set(own) - {"filters", "top_k"}:
        raise RequestInvalid("'deeprecall' takes only {\"filters\": {...}, \"top_k\": N}", "deeprecall")
    filters, top_k = own.get("filters"), own.get("top_k")
    if filters is not None and not isinstance(filters, dict):
        raise RequestInvalid("'deeprecall.filters' must be an object such as {\"year\": 2023}", "deeprecall.filters")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)):
        raise RequestInvalid("'deeprecall.top_k' must be an integer", "deeprecall.top_k")
    return ChatRequest(question=question, model=model, stream=stream, include_usage=options.get("include_usage") is True,
                       filters=filters or None, top_k=top_k)


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list (images and other parts are ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def error_body(message: str, type_: str, code: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "code", "param"}}``."""
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def finish_reason(error: str | None) -> str:
    """``length`` when a limit cut the query short (the answer is a partial one), else ``stop``."""
    return "length" if error in LIMIT_ERRORS else "stop"


def openai_usage(usage: dict[str, Any]) -> dict[str, int]:
    """The query's tokens, root and sub-calls together, as OpenAI's usage object."""
    models = [*usage.get("root", {}).values(), *usage.get("sub", {}).values()]
    prompt = sum(int(m.get("input_tokens", 0)) for m in models)
    completion = sum(int(m.get("output_tokens", 0)) for m in models)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def deeprecall_field(answer: Any) -> dict[str, Any]:
    """What an ``AnswerEvent`` adds to OpenAI's shape: sources, grounding, DeepRecall's usage, the error."""
    return {"query_id": answer.query_id, "sources": answer.sources, "grounded": answer.grounded,
            "usage": answer.usage, "seconds": answer.seconds, "error": answer.error,
            "error_message": answer.error_message}


def completion(answer: Any, model: str) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` from the query's ``AnswerEvent``."""
    return {"id": f"chatcmpl-{answer.query_id}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": finish_reason(answer.error), "logprobs": None}],
            "usage": openai_usage(answer.usage), "deeprecall": deeprecall_field(answer)}


class ChunkWriter:
    """Builds one streamed query's ``chat.completion.chunk`` payloads, all with the same id and created time."""

    def __init__(self, query_id: str, model: str) -> None:
        self.base = {"id": f"chatcmpl-{query_id}", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model}

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                **extra}

    def role(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": ""})

    def step(self, event: Any) -> dict[str, Any] | None:
        """A step of the query as one ``reasoning_content`` line (None for events that are not steps)."""
        if event.type in ("answer", "model_delta"):
            return None
        line = plain_line(event)
        return None if line is None else self.chunk({"reasoning_content": f"[{event.t:6.2f}s] {line}\n"})

    def answer(self, answer: Any) -> list[dict[str, Any]]:
        """The answer as a content delta, then the last chunk: ``finish_reason`` and the ``deeprecall`` field."""
        chunks = [self.chunk({"content": answer.answer})] if answer.answer else []
        return [*chunks, self.chunk({}, finish_reason(answer.error), deeprecall=deeprecall_field(answer))]

    def usage(self, answer: Any) -> dict[str, Any]:
        """The usage chunk (``stream_options.include_usage``): no choices, OpenAI's usage object."""
        return {**self.base, "choices": [], "usage": openai_usage(answer.usage)}
