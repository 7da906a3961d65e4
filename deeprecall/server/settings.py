"""The ``server:`` section of ``deeprecall.yaml``: API keys, their tenants and limits, request limits.

    server:
      model_name: deeprecall              # what /v1/models lists and responses name
      keys:
        - name: acme                      # counters and logs know a key by its name, never by its value
          key_sha256: 9f86d0...           # sha256 hex of the key (`deeprecall serve --hash-key` prints it)
          filters: {tenant: acme}         # enforced on every search of this key's queries (its tenant)
          requests_per_minute: 60         # each limit optional; absent = unlimited
          max_concurrent: 4
          daily_cost_usd: 5.00
      max_body_bytes: 1048576             # larger bodies: 413
      max_messages: 64                    # more messages: 400
      max_question_chars: 8000            # a longer last user message: 400
      body_timeout_seconds: 10            # a body not fully received by then (a slow client): 408
      query_timeout_seconds: 300          # a query still running then is cancelled (504, or the stream ends)
      shutdown_grace_seconds: 30          # on SIGTERM, in-flight queries get this long, then are cancelled
      heartbeat_seconds: 15               # a stream silent this long gets an SSE comment (idle proxies)
      redis_url: redis://127.0.0.1:6379/0 # optional: counters (and the cache) shared by every server process
      cache: {enabled: false, ttl_seconds: 300, max_entries: 1024}   # the answer cache (docs/server.md)

Why hashes: the config file is read by more people and tools than the server; a leaked file must not be
a leaked key. A key is 32+ random bytes, so an unsalted sha256 is enough (no dictionary to attack).

No keys at all refuses to start unless ``allow_anonymous: true`` (a local, single-user server): an open
server that spends its owner's model budget should be a decision, not a default.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deeprecall.errors import ConfigError
from deeprecall.server.answer_cache import AnswerCacheSettings
from deeprecall.server.limits import KeyLimits
from deeprecall.vectorstores import filters as filter_language

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ApiKeySettings(BaseModel):
    """One API key: its name, the sha256 of its value, its tenant filters and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    key_sha256: str
    filters: dict[str, Any] | None = None
    requests_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    daily_cost_usd: float | None = Field(default=None, gt=0)

    @field_validator("key_sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256.match(value):
            raise ValueError("must be the 64-character sha256 hex of the key; `deeprecall serve --hash-key` prints it")
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return filter_language.validate(value)

    @property
    def limits(self) -> KeyLimits:
        return KeyLimits(self.requests_per_minute, self.max_concurrent, self.daily_cost_usd)


class ServerSettings(BaseModel):
    """Everything the server needs beyond the engine's own config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = "deeprecall"
    keys: list[ApiKeySettings] = Field(default_factory=list)
    allow_anonymous: bool = False
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_messages: int = Field(default=64, ge=1)
    max_question_chars: int = Field(default=8000, ge=1)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    query_timeout_seconds: float = Field(default=300.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    redis_url: str | None = Field(default=None, repr=False)  # may hold a password: kept out of reprs
    cache: AnswerCacheSettings = Field(default_factory=AnswerCacheSettings)

    @model_validator(mode="after")
    def _keys_or_anonymous(self) -> ServerSettings:
        if not self.keys and not self.allow_anonymous:
            raise ValueError("server.keys is empty: add API keys (name, key_sha256, filters), or set "
                             "allow_anonymous: true for a local single-user server")
        if self.keys and self.allow_anonymous:
            raise ValueError("allow_anonymous: true with keys configured would let anyone in; remove one")
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError(f"server.keys: names must be unique; got {names}")
        hashes = [k.key_sha256 for k in self.keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("server.keys: two keys have the same key_sha256")
        return self

    @classmethod
    def from_section(cls, section: Any) -> ServerSettings:
        """Build from the config file's ``server:`` mapping; a ``ConfigError`` naming the field otherwise."""
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError("server must be a mapping, e.g. {keys: [{name: acme, key_sha256: ..., filters: ...}]}")
        try:
            return cls.model_validate(section)
        except ValidationError as e:
            problems = "; ".join(_problem(err) for err in e.errors())
            raise ConfigError(problems) from None


def _problem(err: Any) -> str:
    where = ".".join(["server", *(str(p) for p in err["loc"])])
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"
