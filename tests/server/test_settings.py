"""The config file's server: section: keys by hash, tenants as validated filters, refusals that name the fix."""

from __future__ import annotations

import json

import pytest

from deeprecall import DeepRecallConfig
from deeprecall.config_file import load_config_file
from deeprecall.errors import ConfigError
from deeprecall.server.auth import hash_key
from deeprecall.server.settings import ServerSettings

KEY = {"name": "acme", "key_sha256": hash_key("dr-k"), "filters": {"tenant": "acme"}}


@pytest.mark.parametrize(("section", "says"), [
    ({}, "add API keys"),
    ({"keys": [{"name": "a", "key_sha256": "nothex"}]}, "server.keys.0.key_sha256: must be the 64-character sha256"),
    ({"keys": [{**KEY, "filters": {"$where": "1"}}]}, "server.keys.0.filters: filters: unknown operator '$where'"),
    ({"keys": [KEY, {**KEY, "name": "b"}]}, "two keys have the same key_sha256"),
    ({"keys": [KEY, {**KEY, "key_sha256": "a" * 64}]}, "names must be unique"),
    ({"keys": [KEY], "allow_anonymous": True}, "would let anyone in"),
    ({"keys": [KEY], "max_body_bytes": 10}, "server.max_body_bytes"),
    ({"keys": [{**KEY, "requests_per_minute": 0}]}, "server.keys.0.requests_per_minute"),
    ({"keys": [KEY], "port": 80}, "server.port: Extra inputs are not permitted"),
    ("keys", "server must be a mapping"),
])
def test_bad_sections_are_refused_by_name(section, says):
    with pytest.raises(ConfigError) as refused:
        ServerSettings.from_section(section)
    assert says in str(refused.value)


def test_a_key_hash_is_case_insensitive_and_its_limits_are_read():
    settings = ServerSettings.from_section({"keys": [{**KEY, "key_sha256": KEY["key_sha256"].upper(),
                                                      "max_concurrent": 2, "daily_cost_usd": 1.5}]})
    (key,) = settings.keys
    assert key.key_sha256 == KEY["key_sha256"] and key.limits.max_concurrent == 2 and key.limits.daily_cost_usd == 1.5
    assert key.limits.requests_per_minute is None


def test_a_config_file_with_a_server_section_still_configures_the_engine_and_query(tmp_path):
    path = tmp_path / "deeprecall.yaml"
    path.write_text(json.dumps({"backend": "vllm", "backend_kwargs": {"model_name": "m", "base_url": "http://x/v1"},
                                "server": {"keys": [KEY]}}))
    assert load_config_file(path)["server"] == {"keys": [KEY]}
    assert DeepRecallConfig.from_file(path).backend == "vllm"  # the engine's config ignores the section
