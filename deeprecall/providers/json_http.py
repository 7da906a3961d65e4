"""A small, fast JSON-over-HTTP client for the OpenAI-compatible chat API.

Why not the ``openai`` SDK (or bare httpx)? An RLM query makes several chat
calls, and under load every millisecond of host CPU per call is latency for
every other query sharing the interpreter. Measured per call against a local
server (``benchmarks/overhead.py`` notes): the openai SDK 2.2 ms of CPU,
httpx alone 1.2 ms, ``http.client`` 0.4 ms. The chat-completions call is one
POST with a JSON body, so this module keeps what the SDK gave us and drops the
rest:

- keep-alive connections, pooled per model and safe to share between threads;
- retries on connection failures, timeouts, 408/409/429/5xx, with the SDK's
  backoff, ``Retry-After``/``retry-after-ms`` honoured (up to 60 s) and
  ``x-should-retry`` obeyed;
- a call budget: ``timeout`` bounds the whole call, retries and waits included;
- TLS verified against the system store plus certifi's bundle when installed;
- ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment;
- server-sent event streams (``stream``): the same retries until the reply
  starts, then each event as it arrives, the call's deadline checked on every
  read; a connection read to the end of its stream goes back to the pool.

Errors come out as ``ProviderError`` with the status and ``retryable`` set,
and with every secret redacted.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from deeprecall.errors import ProviderError, redact
from deeprecall.providers.base import rate_limited, retryable_status

_T = TypeVar("_T")

MAX_RETRY_AFTER = 60.0  # a longer Retry-After than this fails over instead of stalling a query
MAX_IDLE = 64  # idle keep-alive connections kept per model
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


class _Origin:
    """Where connections go: the server, or a proxy in front of it."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.proxy = _proxy_for(parts.scheme, self.host)

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        host, port = (self.proxy.hostname or "", self.proxy.port or 80) if self.proxy else (self.host, self.port)
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls_context())
            if self.proxy:
                conn.set_tunnel(self.host, self.port, headers=_proxy_auth(self.proxy))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn

    def target(self, path: str) -> str:
        """The request target: a path, or the absolute URL a plain-HTTP proxy needs."""
        if self.proxy and not self.https:
            return f"http://{self.host}:{self.port}{self.prefix}{path}"
        return f"{self.prefix}{path}"


def _proxy_for(scheme: str, host: str) -> urllib.parse.SplitResult | None:
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host) or host in ("127.0.0.1", "localhost", "::1"):
        return None
    return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _proxy_auth(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if not proxy.username:
        return {}
    import base64

    user = urllib.parse.unquote(proxy.username) + ":" + urllib.parse.unquote(proxy.password or "")
    return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode()}


_tls: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _tls_context() -> ssl.SSLContext:
    """Built once per SSL_CERT_FILE/SSL_CERT_DIR setting (loading CA bundles is slow)."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if key not in _tls:
        context = ssl.create_default_context()  # the system store, or SSL_CERT_FILE/SSL_CERT_DIR
        try:
            import certifi

            context.load_verify_locations(certifi.where())
        except (ImportError, OSError):
            pass
        _tls[key] = context
    return _tls[key]


class JsonHttpClient:
    """POSTs JSON to one base URL; thread-safe, one instance per model."""

    def __init__(self, base_url: str, *, headers: dict[str, str], timeout: float, max_retries: int,
                 where: str, secrets: list[str]) -> None:
        self._origin = _Origin(base_url)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self._stream_headers = {**self._headers, "Accept": "text/event-stream"}
        self._timeout = timeout
        self._max_retries = max(0, max_retries)
        self._where = where
        self._secrets = secrets
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST ``body``; the parsed JSON object of a 2xx reply, or ``ProviderError``.

        Each attempt may take the client's ``timeout``; the call's own ``timeout``
        (the query's time left) bounds all attempts and waits together."""
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        return self._retrying(lambda t: self._parse(self._send(path, payload, t)), deadline)

    def _retrying(self, attempt_once: Callable[[float], _T], deadline: float) -> _T:
        """``attempt_once(its timeout)`` until it succeeds, or the error is not worth retrying, or the
        retries or the deadline are spent. A stream is retried only this way: until its reply starts."""
        attempt = 0
        while True:
            try:
                return attempt_once(self._attempt_timeout(deadline))
            except ProviderError as e:
                if e.status == 429:
                    rate_limited()
                wait = self._retry_wait(e, attempt, deadline)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def _attempt_timeout(self, deadline: float) -> float:
        left = min(self._timeout, deadline - time.monotonic())
        if left <= 0:
            raise self._error("timed out: the call's time budget is spent", retryable=True)
        return left

    def _retry_wait(self, error: ProviderError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        hint = error.hint if isinstance(error, _StatusError) else _Retry(None, None)
        should = hint.should if hint.should is not None else error.retryable
        if not should or attempt >= self._max_retries:
            return None
        wait = hint.after if hint.after is not None else _backoff(attempt)
        return wait if time.monotonic() + wait < deadline else None

    def _send(self, path: str, payload: bytes, timeout: float) -> Response:
        conn, reused = self._checkout(timeout)
        try:
            try:
                return self._exchange(conn, path, payload, timeout)
            except _STALE:
                if not reused:
                    raise
                conn.close()  # the server closed an idle keep-alive connection: one fresh try
                conn = self._origin.connect(timeout)
                return self._exchange(conn, path, payload, timeout)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._transport_error(e) from None

    def _transport_error(self, e: OSError | http.client.HTTPException) -> ProviderError:
        if isinstance(e, ssl.SSLCertVerificationError):
            return self._error(f"the TLS certificate of {self._service()} could not be verified ({e.verify_message}); "
                               "if a proxy on your network re-signs TLS, point SSL_CERT_FILE at its CA bundle",
                               retryable=False)
        if isinstance(e, TimeoutError):
            return self._error("timed out waiting for the server", retryable=True)
        return self._error(f"{type(e).__name__}: cannot reach {self._service()}", retryable=True)

    def _exchange(self, conn: http.client.HTTPConnection, path: str, payload: bytes, timeout: float) -> Response:
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request("POST", self._origin.target(path), body=payload, headers=self._headers)
        reply = conn.getresponse()
        body = reply.read()
        response = Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, body)
        if reply.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return response

    def stream(self, path: str, body: dict[str, Any], *,
               timeout: float | None = None) -> Generator[dict[str, Any], None, None]:
        """POST ``body`` and yield the JSON object of each server-sent event as it arrives (up to ``[DONE]``).

        Retries as ``post`` does until the reply starts; after that a broken stream, a timeout or an
        ``{"error": ...}`` event raises ``ProviderError``. A 2xx reply that is not an event stream (a
        server that ignored ``stream``) is yielded whole, once. Nothing is sent before the first ``next()``."""
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        conn, reply = self._retrying(lambda t: self._open(path, payload, t), deadline)
        yield from self._events(conn, reply, deadline)

    def _open(self, path: str, payload: bytes, timeout: float) -> tuple[http.client.HTTPConnection,
                                                                        http.client.HTTPResponse]:
        """Send the request and read the status; a non-2xx reply is read whole and raised."""
        conn, reused = self._checkout(timeout)
        try:
            try:
                reply = self._request(conn, path, payload, timeout)
            except _STALE:
                if not reused:
                    raise
                conn.close()
                conn = self._origin.connect(timeout)
                reply = self._request(conn, path, payload, timeout)
            if 200 <= reply.status < 300:
                return conn, reply
            response = Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._transport_error(e) from None
        if reply.will_close:
            conn.close()
        else:
            self._checkin(conn)
        self._parse(response)  # raises the status error
        raise AssertionError("unreachable")

    def _request(self, conn: http.client.HTTPConnection, path: str, payload: bytes,
                 timeout: float) -> http.client.HTTPResponse:
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request("POST", self._origin.target(path), body=payload, headers=self._stream_headers)
        return conn.getresponse()

    def _events(self, conn: http.client.HTTPConnection, reply: http.client.HTTPResponse,
                deadline: float) -> Iterator[dict[str, Any]]:
        finished = False
        try:
            if "text/event-stream" not in (reply.getheader("Content-Type") or ""):
                body = reply.read()
                finished = True
                yield self._parse(Response(reply.status, {}, body))
                return
            # read1() hands over what has arrived (one HTTP chunk or more) and events are split here: a few
            # Python calls per read, not two readline()s through http.client's chunked reader per line.
            pending = b""
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(self._attempt_timeout(deadline))
                received = reply.read1(65536)
                if not received:
                    if _cut_short(reply):
                        raise http.client.IncompleteRead(pending)
                    last = _sse_data(pending.strip().replace(b"\r\n", b"\n"))
                    if last is not None and last != "[DONE]":  # a last event without its blank line
                        yield self._event(last)
                    break
                pending += received
                if b"\r" in pending:
                    pending = pending.replace(b"\r\n", b"\n")
                *events, pending = pending.split(b"\n\n")
                for raw in events:
                    event = _sse_data(raw)
                    if event is None:
                        continue
                    if event == "[DONE]":
                        break
                    yield self._event(event)
                else:
                    continue
                break
            reply.read()  # the rest of the body, so the connection can be reused
            finished = True
        except TimeoutError:
            raise self._error("timed out waiting for the rest of the stream", retryable=True) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._error(f"the stream broke ({type(e).__name__})", retryable=True) from None
        finally:
            if finished and not reply.will_close:
                self._checkin(conn)
            else:
                conn.close()

    def _event(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._error("malformed stream event (not a JSON object)", retryable=True)
        if data.get("error") and not data.get("choices"):
            raise self._error(f"error in the stream: {_message(text.encode())}", retryable=True)
        return data

    def _checkout(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._origin.connect(timeout), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _parse(self, response: Response) -> dict[str, Any]:
        if not 200 <= response.status < 300:
            message = redact(f"{self._where}: HTTP {response.status}: {_message(response.body)}", self._secrets)
            raise _StatusError(message, retryable=retryable_status(response.status), status=response.status,
                               hint=_Retry.from_headers(response.headers))
        try:
            data = json.loads(response.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._error("malformed response (not a JSON object)", retryable=True)
        return data

    def _error(self, message: str, *, retryable: bool, status: int | None = None) -> ProviderError:
        return ProviderError(f"{self._where}: {redact(message, self._secrets)}", retryable=retryable, status=status)

    def _service(self) -> str:
        return f"{'https' if self._origin.https else 'http'}://{self._origin.host}:{self._origin.port}"

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _sse_data(raw: bytes) -> str | None:
    """The ``data`` of one server-sent event (its ``data:`` lines joined), None if it has none."""
    if raw.startswith(b"data: ") and b"\n" not in raw:  # the usual event: one data line
        return raw[6:].decode("utf-8", "replace")
    lines = [line[5:].removeprefix(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines).decode("utf-8", "replace") if lines else None


def _cut_short(reply: http.client.HTTPResponse) -> bool:
    """At EOF: did the body end before its end? (A chunked body whose last, empty chunk never came, or
    fewer bytes than Content-Length.) http.client's ``readline`` reports both as a quiet EOF."""
    if reply.chunked:
        return reply.chunk_left is not None  # set to None only on reading the last chunk
    return bool(reply.length)


class _StatusError(ProviderError):
    """A non-2xx reply, with what the server said about retrying it."""

    def __init__(self, message: str, *, retryable: bool, status: int, hint: _Retry) -> None:
        super().__init__(message, retryable=retryable, status=status)
        self.hint = hint


@dataclass(frozen=True)
class _Retry:
    """What the server said about retrying."""

    should: bool | None
    after: float | None

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> _Retry:
        flag = headers.get("x-should-retry")
        return cls(should={"true": True, "false": False}.get(flag) if flag else None, after=_retry_after(headers))


def _retry_after(headers: dict[str, str]) -> float | None:
    seconds: float | None = None
    try:
        if "retry-after-ms" in headers:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            seconds = float(headers["retry-after"])
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(headers["retry-after"]) if "retry-after" in headers else None
        seconds = parsed.timestamp() - time.time() if parsed is not None else None
    return seconds if seconds is not None and 0 <= seconds <= MAX_RETRY_AFTER else None


def _backoff(attempt: int) -> float:
    """The openai SDK's schedule: 0.5 s doubling to at most 8 s, minus up to 25% jitter."""
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def _message(body: bytes) -> str:
    """The server's error message: OpenAI's ``{"error": {"message": ...}}``, else the text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:500].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:500]
    if isinstance(error, str):
        return error[:500]
    return json.dumps(data)[:500]
