"""A chat model backed by a Python function, for in-process tests (like pydantic-ai's ``FunctionModel``).

    def reply(messages):
        return "FINAL(Lyon)" if "factory" in messages[-1]["content"] else "```repl\\nprint(1)\\n```"

    engine = DeepRecall(store, chat_model=FunctionChatModel(reply))

No server and no socket: the engine, the rlms loop, the sandbox and the events
all run for real, and the test decides every reply. ``fn`` gets the messages
(OpenAI-shaped role/content dicts, a copy) and returns the reply's text or a
whole ``Completion`` (to set tokens, cost or ``finish_reason``). When the engine
asks for a stream (``on_delta``), the text is sent in ``chunk``-character
pieces, as a streaming provider would. ``calls`` records every call's messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from deeprecall.providers.base import Completion, Message

Reply = Callable[[list[Message]], "str | Completion"]


def estimate_tokens(text: str) -> int:
    """About four characters a token, as the scripted server counts."""
    return max(1, len(text) // 4)


class FunctionChatModel:
    """A ``ChatModel`` whose replies come from ``fn(messages)``. ``price`` (USD per token, input
    and output) makes every ``Completion`` carry a cost, so ``max_cost_usd`` can be tested."""

    def __init__(self, fn: Reply, *, model_name: str = "function", chunk: int = 8,
                 price: tuple[float, float] | None = None) -> None:
        self.fn = fn
        self.model_name = model_name
        self.chunk = max(1, chunk)
        self.price = price
        self.has_price = price is not None
        self.calls: list[list[Message]] = []
        self.closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FunctionChatModel({getattr(self.fn, '__name__', 'fn')}, model_name={self.model_name!r})"

    def complete(self, messages: list[Message], *, timeout: float | None = None,
                 on_delta: Callable[[str], None] | None = None) -> Completion:
        sent = [dict(m) for m in messages]
        with self._lock:
            self.calls.append(sent)
        reply = self.fn(sent)
        completion = reply if isinstance(reply, Completion) else self._completion(sent, reply)
        if on_delta is not None:
            for start in range(0, len(completion.text), self.chunk):
                on_delta(completion.text[start:start + self.chunk])
        return completion

    def _completion(self, messages: list[Message], text: str) -> Completion:
        prompt_tokens = estimate_tokens("\n".join(str(m.get("content", "")) for m in messages))
        output_tokens = estimate_tokens(text)
        cost = None if self.price is None else prompt_tokens * self.price[0] + output_tokens * self.price[1]
        return Completion(text=text, model=self.model_name, input_tokens=prompt_tokens, output_tokens=output_tokens,
                          cost_usd=cost, finish_reason="stop")

    def close(self) -> None:
        self.closed = True
