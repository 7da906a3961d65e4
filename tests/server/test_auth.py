"""API keys: the Bearer header, the hash, and a match against every configured key."""

from __future__ import annotations

import hashlib

from deeprecall.server.auth import authenticate, bearer_token, hash_key, new_key
from deeprecall.server.settings import ServerSettings


def settings() -> ServerSettings:
    return ServerSettings.from_section({"keys": [{"name": "a", "key_sha256": hash_key("dr-a")},
                                                 {"name": "b", "key_sha256": hash_key("dr-b")}]})


def test_each_key_maps_to_its_name_and_anything_else_to_none():
    assert authenticate(settings(), "dr-a").name == "a"  # type: ignore[union-attr]
    assert authenticate(settings(), "dr-b").name == "b"  # type: ignore[union-attr]
    for wrong in ("dr-c", "", "dr-a ", hash_key("dr-a"), None):
        assert authenticate(settings(), wrong) is None


def test_bearer_header_parsing():
    assert bearer_token("Bearer dr-a") == "dr-a" and bearer_token("bearer  dr-a ") == "dr-a"
    assert bearer_token(None) is None and bearer_token("Basic dr-a") is None and bearer_token("Bearer ") is None


def test_new_keys_are_random_and_hash_to_sha256_hex():
    one, two = new_key(), new_key()
    assert one != two and one.startswith("dr-") and len(one) > 40
    assert hash_key(one) == hashlib.sha256(one.encode()).hexdigest()


def test_anonymous_servers_admit_everyone():
    open_server = ServerSettings.from_section({"allow_anonymous": True})
    assert authenticate(open_server, None).name == "anonymous"  # type: ignore[union-attr]
