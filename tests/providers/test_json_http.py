"""The HTTP client behind every OpenAI-compatible backend, against real servers on loopback:
the scripted LLM server, a raw socket server that drops idle connections, a
forwarding proxy and an HTTPS server with a self-signed certificate."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from deeprecall.errors import ProviderError
from deeprecall.providers import build_chat_model
from deeprecall.providers.json_http import JsonHttpClient
from deeprecall.testing.scripted_server import Reply, ScriptedLLMServer
from tests.conftest import max_in_flight
from tests.providers.conftest import MSGS, sequence


def vllm(base_url: str, **kwargs):
    return build_chat_model("vllm", {"model_name": "m", "base_url": base_url, **kwargs})


def test_calls_reuse_one_keep_alive_connection(llm):
    s = llm(lambda r: "ok")
    m = vllm(s.base_url, max_retries=0)
    for _ in range(5):
        assert m.complete(MSGS).text == "ok"
    assert len({r.client_port for r in s.requests}) == 1


def test_concurrent_calls_use_separate_connections_and_replies(llm):
    from concurrent.futures import ThreadPoolExecutor

    s = llm(lambda r: Reply(text=r.last_user, delay=0.5))
    m = vllm(s.base_url)
    with ThreadPoolExecutor(8) as ex:
        texts = list(ex.map(lambda i: m.complete([{"role": "user", "content": f"q{i}"}]).text, range(8)))
    assert texts == [f"q{i}" for i in range(8)]
    assert max_in_flight(s.requests) == 8  # all eight in flight at once, not one connection taking turns
    assert len({r.client_port for r in s.requests}) == 8


class DroppingServer:
    """Answers one request per connection with ``Connection: keep-alive``, then closes it,
    as servers and load balancers do with idle keep-alive connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}]}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply))


def test_a_dropped_idle_connection_is_replaced_without_spending_a_retry():
    server = DroppingServer()
    m = vllm(server.url, max_retries=0)
    assert m.complete(MSGS).text == "ok"
    time.sleep(0.1)  # the server has closed the pooled connection by now
    assert m.complete(MSGS).text == "ok"
    assert server.connections == 2
    server.sock.close()


def test_should_retry_false_is_obeyed(llm):
    s = llm(sequence(Reply(status=500, text="do not retry", headers={"x-should-retry": "false"}), "ok"))
    with pytest.raises(ProviderError) as err:
        vllm(s.base_url, max_retries=2).complete(MSGS)
    assert err.value.status == 500 and len(s.requests) == 1


def test_should_retry_true_retries_a_4xx(llm):
    s = llm(sequence(Reply(status=400, text="transient", headers={"x-should-retry": "true", "retry-after-ms": "10"}),
                     "ok"))
    assert vllm(s.base_url, max_retries=1).complete(MSGS).text == "ok" and len(s.requests) == 2


def test_retry_after_ms_is_honoured(llm):
    """The retry waits as long as the server asked (1.5 s), not the 0.375-0.5 s default backoff.

    A lower bound from the server's own timestamps: load can only lengthen the wait, never fake it."""
    s = llm(sequence(Reply(status=429, text="slow down", headers={"retry-after-ms": "1500"}), "ok"))
    assert vllm(s.base_url, max_retries=1).complete(MSGS).text == "ok"
    refused, retried = s.requests
    assert retried.received_at - refused.replied_at >= 1.5


def test_each_429_is_reported_to_the_threads_watcher_also_when_retried(llm):
    """The engine's adaptive sub-call limit backs off on 429s the client retries itself; other statuses, and
    calls outside the watcher's block, are not reported."""
    from deeprecall.providers.base import rate_limit_watcher

    s = llm(sequence(Reply(status=429, text="slow down", headers={"retry-after-ms": "10"}),
                     Reply(status=503, text="busy", headers={"retry-after-ms": "10"}),
                     Reply(status=429, text="slow down", headers={"retry-after-ms": "10"}), "ok"))
    seen: list[str] = []
    with rate_limit_watcher(lambda: seen.append("429")):
        assert vllm(s.base_url, max_retries=3).complete(MSGS).text == "ok"
    assert seen == ["429", "429"]
    limited = llm(lambda r: Reply(status=429, text="slow down"))
    with pytest.raises(ProviderError):
        vllm(limited.base_url, max_retries=0).complete(MSGS)  # after the watcher's block: nothing reported
    assert seen == ["429", "429"]


def test_the_call_timeout_bounds_retries_and_waits(llm):
    """With a 3 s call timeout and Retry-After: 2, the first retry fits and the second would not: the call
    gives up at once instead of waiting past its timeout (checked by order: it raised before the server's
    next allowed retry time)."""
    s = llm(lambda r: Reply(status=503, text="busy", headers={"Retry-After": "2"}))
    with pytest.raises(ProviderError) as err:
        vllm(s.base_url, max_retries=10).complete(MSGS, timeout=3)
    raised = time.monotonic()
    assert err.value.retryable and len(s.requests) == 2
    first, second = s.requests
    assert second.received_at - first.replied_at >= 2  # the first Retry-After was honoured
    assert raised < second.replied_at + 2  # the second was not waited out


def test_a_bad_base_url_is_a_config_error_naming_the_fix():
    from deeprecall.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url must be an http"):
        vllm("localhost:8000/v1")


class ForwardingProxy(http.server.ThreadingHTTPServer):
    """A forward proxy that only knows one upstream host, ``llm.invalid``: plain HTTP
    by absolute URL, HTTPS by a CONNECT tunnel."""

    def __init__(self, upstream_port: int) -> None:
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                proxy.seen.append(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path.startswith("http://llm.invalid:")
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port)
                path = "/" + self.path.split("/", 3)[3]
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", path, body, headers)
                reply = upstream.getresponse()
                payload = reply.read()
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

            def do_CONNECT(self) -> None:
                proxy.seen.append(f"CONNECT {self.path} {self.headers.get('Proxy-Authorization', '')}".strip())
                assert self.path.startswith("llm.invalid:")
                upstream = socket.create_connection(("127.0.0.1", upstream_port))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                _pump(self.connection, upstream)
                self.close_connection = True

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    import selectors

    with selectors.DefaultSelector() as sel, b:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select(timeout=10):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


def test_http_proxy_from_the_environment_is_used(llm, monkeypatch):
    s = llm(lambda r: "via proxy")
    port = s.root_url.rsplit(":", 1)[1]
    proxy = ForwardingProxy(int(port))
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    m = vllm(f"http://llm.invalid:{port}/v1", max_retries=0)  # resolvable only by the proxy
    assert m.complete(MSGS).text == "via proxy"
    assert proxy.seen == [f"http://llm.invalid:{port}/v1/chat/completions"]
    proxy.shutdown()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = str(where / "cert.pem"), str(where / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:llm.invalid"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def https_llm(self_signed: tuple[str, str]) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(lambda r: "over tls", tls=self_signed) as server:
        yield server


def test_an_untrusted_certificate_fails_at_once_and_names_the_fix(https_llm, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(ProviderError) as err:
        vllm(https_llm.base_url, max_retries=3).complete(MSGS)
    assert not err.value.retryable and "SSL_CERT_FILE" in str(err.value) and not https_llm.requests


def test_https_goes_through_the_proxy_in_a_connect_tunnel(self_signed, monkeypatch):
    # The usual corporate set-up: HTTPS_PROXY with credentials, TLS checked end to end.
    with ScriptedLLMServer(lambda r: "tunnelled", tls=self_signed) as server:
        port = int(server.root_url.rsplit(":", 1)[1])
        proxy = ForwardingProxy(port)
        monkeypatch.setenv("https_proxy", f"http://user:p%40ss@127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("SSL_CERT_FILE", self_signed[0])
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        m = vllm(f"https://llm.invalid:{port}/v1", max_retries=0)
        assert m.complete(MSGS).text == "tunnelled"
        assert proxy.seen == [f"CONNECT llm.invalid:{port} Basic dXNlcjpwQHNz"]  # base64("user:p@ss")
        proxy.shutdown()


def test_ssl_cert_file_adds_a_trusted_ca(https_llm, self_signed, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", self_signed[0])
    assert vllm(https_llm.base_url, max_retries=0).complete(MSGS).text == "over tls"


def test_close_drops_idle_connections(llm):
    s = llm(lambda r: "ok")
    client = JsonHttpClient(s.base_url, headers={}, timeout=5, max_retries=0, where="t", secrets=[])
    client.post("/chat/completions", {"model": "m", "messages": MSGS})
    client.close()
    assert client.post("/chat/completions", {"model": "m", "messages": MSGS})["choices"]
    assert len({r.client_port for r in s.requests}) == 2

