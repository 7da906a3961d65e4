"""A scripted OpenAI-compatible LLM server on loopback, for tests and benchmarks.

DeepRecall's tests fake exactly one thing, the LLM, and they fake it here, over
real HTTP, so the real openai client, the rlms loop and the sandbox all run.

A *script* maps each request to a reply. It is a function of the request, not
of call order, so concurrent conversations never steal each other's turns:
``by_turn("turn 1 text", "turn 2 text")`` answers by the number of assistant
messages already in the conversation.

    with ScriptedLLMServer({"root": by_turn(t1, t2), "sub": lambda r: "ok"}) as llm:
        DeepRecallConfig(backend="vllm", backend_kwargs={"model_name": "root", "base_url": llm.base_url})
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ChatRequest:
    """One request as the server saw it."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def turn(self) -> int:
        """0 for the first call of a conversation, then 1, 2 ... (assistant messages so far)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return str(m.get("content", ""))
        return ""

    @property
    def text(self) -> str:
        """All message contents joined, for scripts that key on the question."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass
class Reply:
    """What to send back. ``raw`` replaces the JSON body (for garbage tests);
    ``hang`` never answers; ``delay`` adds latency to this reply."""

    text: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    hang: bool = False
    usage: tuple[int, int] | None = None


Script = Callable[[ChatRequest], "Reply | str"]


def by_turn(*replies: Reply | str | Callable[[ChatRequest], Reply | str]) -> Script:
    """Answer the n-th turn of each conversation with ``replies[n]`` (the last one repeats)."""
    if not replies:
        raise ValueError("by_turn needs at least one reply")

    def script(request: ChatRequest) -> Reply | str:
        reply = replies[min(request.turn, len(replies) - 1)]
        return reply(request) if callable(reply) else reply

    return script


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ScriptedLLMServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server driven by scripts.

    ``scripts`` is one script for every model, or a mapping from model name to
    script (key ``"*"`` catches the rest). ``latency`` is added to every reply.
    ``requests`` records every request, in arrival order.
    """

    def __init__(self, scripts: Script | Mapping[str, Script], *, latency: float = 0.0, port: int = 0) -> None:
        self.scripts: Mapping[str, Script] = scripts if isinstance(scripts, Mapping) else {"*": scripts}
        self.latency = latency
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedLLMServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls_for(self, model: str) -> list[ChatRequest]:
        with self._lock:
            return [r for r in self.requests if r.model == model]

    def reply_for(self, request: ChatRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        script = self.scripts.get(request.model) or self.scripts.get("*")
        if script is None:
            return Reply(status=404, raw=json.dumps({"error": {"message": f"model {request.model!r} not found"}}).encode())
        reply = script(request)
        return Reply(text=reply) if isinstance(reply, str) else reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access logs
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                request = ChatRequest(path=self.path, body=body, headers={k.lower(): v for k, v in self.headers.items()})
                reply = server.reply_for(request)
                if reply.hang:
                    time.sleep(3600)
                    return
                time.sleep(server.latency + reply.delay)
                payload = reply.raw if reply.raw is not None else json.dumps(openai_body(request, reply)).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def openai_body(request: ChatRequest, reply: Reply) -> dict[str, Any]:
    if reply.status >= 400:
        return {"error": {"message": reply.text or f"scripted error {reply.status}", "type": "scripted"}}
    prompt_tokens, completion_tokens = reply.usage or (estimate_tokens(request.text), estimate_tokens(reply.text))
    return {
        "id": f"chatcmpl-{len(request.messages)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
