"""A tiny OpenAI-compatible ``/v1/embeddings`` server on loopback, for tests.

It answers with HashingEmbedding vectors in reversed ``index`` order (clients
must sort by index), records every request, and can be told to fail with a
status code, from the first request or after ``fail_after`` good ones. No real
provider is ever called.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deeprecall.embeddings import HashingEmbedding


class EmbeddingServer:
    def __init__(self, dim: int = 16) -> None:
        self.embed = HashingEmbedding(dim)
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.fail_after: int | None = None  # with fail_with: answer this many requests, then fail
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if server.fail_with and (server.fail_after is None or len(server.requests) > server.fail_after):
                    self._reply(server.fail_with, {"error": {"message": "nope", "type": "invalid_request_error"}})
                elif not self.path.endswith("/embeddings"):
                    self._reply(404, {"error": {"message": "not found"}})
                else:
                    self._reply(200, server.answer(body))

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = self.embed(texts)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)][::-1]
        return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> EmbeddingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
