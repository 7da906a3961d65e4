"""Who is asking: the request's API key, checked against the configured sha256 hashes.

Why constant time: a byte-by-byte comparison that stops at the first difference tells a patient attacker,
through response times, how much of a guess is right. The presented key is hashed, and the hash is compared
with EVERY configured hash by ``hmac.compare_digest`` (no early exit when one matches), so the time taken
depends on neither the key nor which key matched. Keys never reach logs: a key is known by its ``name``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from deeprecall.server.settings import ApiKeySettings, ServerSettings

ANONYMOUS = ApiKeySettings(name="anonymous", key_sha256="0" * 64)


def hash_key(key: str) -> str:
    """The value to put in ``server.keys[*].key_sha256`` for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (32 bytes, URL-safe), prefixed so it is recognisable in a secret scanner."""
    return "dr-" + secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` header (what the OpenAI SDKs send), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authenticate(settings: ServerSettings, token: str | None) -> ApiKeySettings | None:
    """The key ``token`` is, or None (no key, or a wrong one). Anonymous servers accept everyone."""
    if settings.allow_anonymous:
        return ANONYMOUS
    if token is None:
        return None
    presented = hashlib.sha256(token.encode("utf-8")).hexdigest().encode("ascii")
    found = None
    for key in settings.keys:  # every hash is compared: no early exit
        if hmac.compare_digest(presented, key.key_sha256.encode("ascii")):
            found = key
    return found
