"""A scripted LLM server on loopback, for tests and benchmarks.

DeepRecall's tests fake exactly one thing, the LLM, and they fake it here, over
real HTTP, so the real SDKs (openai, anthropic, google-genai, litellm), the
rlms loop and the sandbox all run. One server speaks three wire protocols,
chosen by the request path:

- OpenAI chat completions: ``POST {base_url}/chat/completions`` (also Azure's
  ``/openai/deployments/{name}/chat/completions``);
- Anthropic messages: ``POST {root_url}/v1/messages``;
- Gemini: ``POST {root_url}/{version}/models/{model}:generateContent``;

each also streamed when the request asks (OpenAI and Anthropic ``"stream": true``, Gemini
``:streamGenerateContent?alt=sse``), as server-sent events in the shape each vendor's own SDK
parses (written from the installed ``openai``, ``anthropic`` and ``google-genai`` sources);

plus ``GET /v1/models`` and Ollama's ``GET /api/tags`` for discovery.

A *script* maps each request to a reply. It is a function of the request, not
of call order, so concurrent conversations never steal each other's turns:
``by_turn("turn 1 text", "turn 2 text")`` answers by the number of assistant
messages already in the conversation. Requests of every protocol are shown to
scripts in OpenAI shape (``ChatRequest.messages``); ``body`` keeps the raw JSON.

    with ScriptedLLMServer({"root": by_turn(t1, t2), "sub": lambda r: "ok"}) as llm:
        DeepRecallConfig(backend="vllm", backend_kwargs={"model_name": "root", "base_url": llm.base_url})
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI, ANTHROPIC, GEMINI = "openai", "anthropic", "gemini"
_GEMINI_PATH = re.compile(r"/models/(?P<model>[^/:]+):(?:generateContent|streamGenerateContent)")
_AZURE_PATH = re.compile(r"/openai/deployments/(?P<model>[^/]+)/chat/completions")


def _text_of(content: Any) -> str:
    """Flatten Anthropic content blocks / Gemini parts into plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


@dataclass
class ChatRequest:
    """One request as the server saw it. ``messages`` is OpenAI-shaped whatever the protocol."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    protocol: str = OPENAI
    path_model: str = ""
    client_port: int = 0  # the client's TCP port: one value per connection, for keep-alive tests
    # time.monotonic() when the request arrived and when its reply was sent (0.0: not yet / never), so tests
    # can check ordering and overlap (were calls in flight together? did a retry wait?) instead of wall time.
    received_at: float = 0.0
    replied_at: float = 0.0

    @property
    def model(self) -> str:
        return self.path_model or str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        if self.protocol == ANTHROPIC:
            system = _text_of(self.body.get("system"))
            turns = [{"role": m.get("role"), "content": _text_of(m.get("content"))} for m in self.body.get("messages") or []]
            return ([{"role": "system", "content": system}] if system else []) + turns
        if self.protocol == GEMINI:
            instruction = self.body.get("systemInstruction") or self.body.get("system_instruction") or {}
            system = _text_of(instruction.get("parts"))
            turns = [
                {"role": "assistant" if c.get("role") == "model" else "user", "content": _text_of(c.get("parts"))}
                for c in self.body.get("contents") or []
            ]
            return ([{"role": "system", "content": system}] if system else []) + turns
        return list(self.body.get("messages") or [])

    @property
    def stream(self) -> bool:
        """The client asked for a streamed reply."""
        if self.protocol == GEMINI:
            return ":streamGenerateContent" in self.path
        return bool(self.body.get("stream"))

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
    ``hang`` never answers (until the server stops); ``delay`` adds latency to
    this reply; ``cost`` adds a provider-reported ``usage.cost`` (as OpenRouter does).

    Streamed replies (the request asked for a stream): ``chunks`` are the text pieces sent one event
    each (default: ``text`` split after each run of spaces); ``chunk_delay`` pauses before each piece;
    ``cut_after`` drops the connection after that many pieces (a server dying mid-stream);
    ``stream_usage=False`` leaves usage out of an OpenAI stream even when the client asked for it;
    ``stream=False`` answers a stream request with the plain JSON body (a server that cannot stream).

    Silence and junk: ``stall_after`` sends the status line and headers (and that many pieces of a
    stream) and then goes quiet until the server stops (a server that started answering and stalled
    mid-body); ``raw_stream`` is sent as it is as the body of a ``text/event-stream`` reply (a junk stream)."""

    text: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    hang: bool = False
    usage: tuple[int, int] | None = None
    cost: float | None = None
    finish_reason: str = "stop"  # "length": the reply was cut at the output-token limit
    chunks: list[str] | None = None
    chunk_delay: float = 0.0
    cut_after: int | None = None
    stream_usage: bool = True
    stream: bool = True
    stall_after: int | None = None
    raw_stream: bytes | None = None

    def pieces(self) -> list[str]:
        """The text pieces a stream sends, in order; joined they are ``text``."""
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\S+\s*|\s+", self.text)


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


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 32 new connections
    # overflows it and the kernel drops SYNs, which clients retry after 1 s.
    # Real LLM APIs accept bursts, so the stand-in must too.
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-reply (a cancelled query closes its stream) is what real APIs
        see every day, not a server fault: no traceback on stderr for it."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class ScriptedLLMServer:
    """An LLM server driven by scripts, speaking OpenAI, Anthropic and Gemini wire shapes.

    ``scripts`` is one script for every model, or a mapping from model name to
    script (key ``"*"`` catches the rest). ``latency`` is added to every reply.
    ``requests`` records every request, in arrival order. ``models`` is what
    ``/v1/models`` and ``/api/tags`` list (default: the script names).
    """

    def __init__(
        self,
        scripts: Script | Mapping[str, Script],
        *,
        latency: float = 0.0,
        port: int = 0,
        models: list[str] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.scripts: Mapping[str, Script] = scripts if isinstance(scripts, Mapping) else {"*": scripts}
        self.latency = latency
        self.models = models if models is not None else [m for m in self.scripts if m != "*"]
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._scheme = "http"
        if tls is not None:  # (certfile, keyfile): serve HTTPS, for certificate-checking tests
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        """The server root, for SDKs that add their own path (Anthropic, Gemini, Ollama)."""
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``root_url + "/v1"``)."""
        return f"{self.root_url}/v1"

    def start(self) -> ScriptedLLMServer:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
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
            return Reply(status=404, text=f"model {request.model!r} not found")
        reply = script(request)
        return Reply(text=reply) if isinstance(reply, str) else reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:  # silence access logs
                return

            def _send(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None,
                      length: bool = True) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if length:
                    self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, request: ChatRequest, reply: Reply) -> None:
                """Server-sent events, one HTTP chunk each; ``cut_after`` drops the connection mid-body."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if reply.raw_stream is not None:
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(reply.raw_stream), reply.raw_stream))
                    request.replied_at = time.monotonic()
                    return
                sent = 0
                for kind, event in STREAMS[request.protocol](request, reply):
                    if kind == "piece" and reply.stall_after is not None and sent >= reply.stall_after:
                        self._stall()
                        return
                    sent += kind == "piece"
                    if kind == "piece" and reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    if kind == "cut":
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # socket.SHUT_RDWR: no terminating chunk
                        request.replied_at = time.monotonic()
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                request.replied_at = time.monotonic()

            def _stall(self) -> None:
                """What has been written goes out; then nothing more until the server stops."""
                self.wfile.flush()
                server._stopping.wait(3600)
                self.close_connection = True

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.endswith("/api/tags"):
                    body: dict[str, Any] = {"models": [{"name": m, "model": m} for m in server.models]}
                elif path.endswith("/models"):
                    body = {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]}
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                self._send(200, json.dumps(body).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                path = self.path.split("?", 1)[0]
                protocol, path_model = OPENAI, ""
                if path.endswith("/messages"):
                    protocol = ANTHROPIC
                elif match := _GEMINI_PATH.search(path):
                    protocol, path_model = GEMINI, match.group("model")
                elif match := _AZURE_PATH.search(path):
                    path_model = match.group("model")
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = ChatRequest(path=self.path, body=body, headers=headers, protocol=protocol, path_model=path_model,
                                      client_port=int(self.client_address[1]), received_at=time.monotonic())
                reply = server.reply_for(request)
                if reply.hang:
                    server._stopping.wait(3600)
                    return
                time.sleep(server.latency + reply.delay)
                if (request.stream and reply.stream and reply.status < 400 and reply.raw is None) or reply.raw_stream:
                    self._stream(request, reply)
                    return
                payload = reply.raw if reply.raw is not None else json.dumps(BODIES[protocol](request, reply)).encode()
                if reply.stall_after is not None:
                    self._send(reply.status, b"", {"Content-Length": str(len(payload)), **reply.headers}, length=False)
                    self._stall()
                    return
                request.replied_at = time.monotonic()
                self._send(reply.status, payload, reply.headers)

        return Handler


def _tokens(request: ChatRequest, reply: Reply) -> tuple[int, int]:
    return reply.usage or (estimate_tokens(request.text), estimate_tokens(reply.text))


def openai_body(request: ChatRequest, reply: Reply) -> dict[str, Any]:
    if reply.status >= 400:
        return {"error": {"message": reply.text or f"scripted error {reply.status}", "type": "scripted"}}
    prompt_tokens, completion_tokens = _tokens(request, reply)
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if reply.cost is not None:
        usage["cost"] = reply.cost
    return {
        "id": f"chatcmpl-{len(request.messages)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": reply.finish_reason}],
        "usage": usage,
    }


_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                     429: "rate_limit_error", 529: "overloaded_error"}


def anthropic_body(request: ChatRequest, reply: Reply) -> dict[str, Any]:
    if reply.status >= 400:
        kind = _ANTHROPIC_ERRORS.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": reply.text or f"scripted error {reply.status}"}}
    input_tokens, output_tokens = _tokens(request, reply)
    return {
        "id": f"msg_{len(request.messages)}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                  500: "INTERNAL", 503: "UNAVAILABLE"}


def gemini_body(request: ChatRequest, reply: Reply) -> dict[str, Any]:
    if reply.status >= 400:
        status = _GEMINI_STATUS.get(reply.status, "UNKNOWN")
        return {"error": {"code": reply.status, "message": reply.text or f"scripted error {reply.status}", "status": status}}
    prompt_tokens, output_tokens = _tokens(request, reply)
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": reply.text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                          "totalTokenCount": prompt_tokens + output_tokens},
        "modelVersion": request.model,
    }


BODIES: dict[str, Callable[[ChatRequest, Reply], dict[str, Any]]] = {
    OPENAI: openai_body, ANTHROPIC: anthropic_body, GEMINI: gemini_body,
}


# ---- Streams: (kind, bytes) events; kind "piece" carries text, "cut" drops the connection there.
StreamEvent = tuple[str, bytes]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _pieces(reply: Reply) -> list[str | None]:
    """The text pieces, with None where the connection is to be cut."""
    pieces = reply.pieces()
    if reply.cut_after is not None:
        return [*pieces[: reply.cut_after], None]
    return list(pieces)


def openai_stream(request: ChatRequest, reply: Reply) -> list[StreamEvent]:
    """``chat.completion.chunk`` events as the openai SDK reads them; usage in a last, choice-less
    chunk only when the client sent ``stream_options: {"include_usage": true}`` (as OpenAI does)."""
    head = {"id": f"chatcmpl-{len(request.messages)}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": request.model}
    wants_usage = bool((request.body.get("stream_options") or {}).get("include_usage")) and reply.stream_usage
    extra: dict[str, Any] = {"usage": None} if wants_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    events: list[StreamEvent] = [("head", chunk({"role": "assistant", "content": ""}))]
    for piece in _pieces(reply):
        if piece is None:
            return [*events, ("cut", b"")]
        events.append(("piece", chunk({"content": piece})))
    events.append(("end", chunk({}, reply.finish_reason)))
    if wants_usage:
        prompt_tokens, completion_tokens = _tokens(request, reply)
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if reply.cost is not None:
            usage["cost"] = reply.cost
        events.append(("usage", _sse({**head, "choices": [], "usage": usage})))
    return [*events, ("done", _sse("[DONE]"))]


def anthropic_stream(request: ChatRequest, reply: Reply) -> list[StreamEvent]:
    """The messages stream as the anthropic SDK reads it: message_start (input tokens), a text block
    of ``text_delta`` events, message_delta (stop reason, output tokens), message_stop."""
    input_tokens, output_tokens = _tokens(request, reply)
    message: dict[str, Any] = {
        "id": f"msg_{len(request.messages)}", "type": "message", "role": "assistant", "model": request.model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}
    events: list[StreamEvent] = [
        ("head", _sse({"type": "message_start", "message": message}, "message_start")),
        ("head", _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                      "content_block_start")),
        ("head", _sse({"type": "ping"}, "ping")),
    ]
    for piece in _pieces(reply):
        if piece is None:
            return [*events, ("cut", b"")]
        events.append(("piece", _sse({"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")))
    stop = "max_tokens" if reply.finish_reason == "length" else "end_turn"
    return [*events,
            ("end", _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")),
            ("end", _sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                          "usage": {"output_tokens": output_tokens}}, "message_delta")),
            ("end", _sse({"type": "message_stop"}, "message_stop"))]


def gemini_stream(request: ChatRequest, reply: Reply) -> list[StreamEvent]:
    """``streamGenerateContent?alt=sse``: one GenerateContentResponse per event, as google-genai reads
    them; the last carries ``finishReason`` and the full usage."""
    prompt_tokens, output_tokens = _tokens(request, reply)

    def chunk(text: str, finish: str | None, usage: dict[str, int]) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return _sse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": request.model})

    partial = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
    events: list[StreamEvent] = []
    pieces = _pieces(reply) or [""]
    for i, piece in enumerate(pieces):
        if piece is None:
            return [*events, ("cut", b"")]
        if i == len(pieces) - 1:
            full = {**partial, "candidatesTokenCount": output_tokens, "totalTokenCount": prompt_tokens + output_tokens}
            finish = "MAX_TOKENS" if reply.finish_reason == "length" else "STOP"
            events.append(("piece", chunk(piece, finish, full)))
        else:
            events.append(("piece", chunk(piece, None, partial)))
    return events


STREAMS: dict[str, Callable[[ChatRequest, Reply], list[StreamEvent]]] = {
    OPENAI: openai_stream, ANTHROPIC: anthropic_stream, GEMINI: gemini_stream,
}
