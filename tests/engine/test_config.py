"""Bad configuration fails at construction, with a message that names the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deeprecall import ConfigError, DeepRecall, DeepRecallConfig, FilterError, MissingAPIKeyError


def test_defaults_are_valid():
    config = DeepRecallConfig(backend_kwargs={"model_name": "gpt-4o-mini"})
    assert config.environment == "local" and config.max_iterations == 15 and config.top_k == 5


@pytest.mark.parametrize(("values", "fragment"), [
    ({"backend": "nope", "backend_kwargs": {"model_name": "m"}}, "unknown backend 'nope'"),
    ({"backend_kwargs": {}}, "needs 'model_name'"),
    ({"backend_kwargs": {"model_name": "m"}, "other_backends": ["openai"]}, "needs other_backend_kwargs"),
    ({"backend_kwargs": {"model_name": "m"}, "other_backends": ["openai"], "other_backend_kwargs": [{}, {}]},
     "other_backends has 1 entries but other_backend_kwargs has 2"),
    ({"backend_kwargs": {"model_name": "m"}, "max_iterations": 0}, "greater than or equal to 1"),
    ({"backend_kwargs": {"model_name": "m"}, "environment": "kubernetes"}, "environment"),
    ({"backend_kwargs": {"model_name": "m"}, "top_k": 1000}, "top_k"),
    ({"backend_kwargs": {"model_name": "m"}, "max_seconds": -1}, "max_seconds"),
    ({"backend_kwargs": {"model_name": "m"}, "filters": {"tenant": {"$regex": "a"}}}, "unknown operator '$regex'"),
    ({"backend_kwargs": {"model_name": "m"}, "max_iteration": 3}, "valid settings are"),
])
def test_bad_values_are_rejected_with_the_fix(values, fragment):
    with pytest.raises(ValidationError):
        DeepRecallConfig(**values)
    with pytest.raises(ConfigError) as info:
        DeepRecallConfig.build(**values)
    assert fragment in str(info.value)


def test_secrets_are_hidden_in_repr():
    config = DeepRecallConfig(backend_kwargs={"model_name": "m", "api_key": "sk-abcdef123456"},
                              other_backends=["openai"], other_backend_kwargs=[{"model_name": "s", "api_key": "sk-zzzz99999"}])
    assert "sk-abcdef" not in repr(config) and "sk-zzzz" not in repr(config) and "***" in repr(config)


def test_engine_rejects_a_non_store(tmp_path):
    with pytest.raises(ConfigError, match="VectorStore"):
        DeepRecall(vectorstore=object(), backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://x"})


def test_missing_openai_key_names_the_env_var(store):
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        DeepRecall(vectorstore=store, backend="openai", backend_kwargs={"model_name": "gpt-4o-mini"})


def test_bad_environment_kwargs_name_the_setting(store):
    with pytest.raises(ConfigError, match="cell_timeout"):
        DeepRecall(vectorstore=store, backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://x"},
                   environment_kwargs={"cell_timeout": -5})
    with pytest.raises(ConfigError, match="celltimeout"):
        DeepRecall(vectorstore=store, backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://x"},
                   environment_kwargs={"celltimeout": 5})


def test_keyword_settings_override_a_config(store):
    config = DeepRecallConfig(backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://x"})
    with DeepRecall(vectorstore=store, config=config, max_iterations=4) as engine:
        assert engine.config.max_iterations == 4 and engine.config.backend == "vllm"


def test_query_input_is_checked(store):
    with DeepRecall(vectorstore=store, backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://x"}) as engine:
        with pytest.raises(ConfigError, match="non-empty question"):
            engine.query("  ")
        with pytest.raises(FilterError):
            engine.query("q", filters={"$nor": []})
        with pytest.raises(ConfigError, match="top_k"):
            engine.query("q", top_k=0)


def test_closed_engine_refuses_queries(store):
    engine = DeepRecall(vectorstore=store, backend="vllm", backend_kwargs={"model_name": "m", "base_url": "http://x"})
    engine.close()
    with pytest.raises(ConfigError, match="closed"):
        engine.query("q")


def test_secrets_nested_in_pool_members_are_hidden_in_repr():
    config = DeepRecallConfig(backend="pool", backend_kwargs={"members": [
        {"backend": "openai", "model_name": "a", "api_key": "sk-member1secret"},
        {"backend": "anthropic", "model_name": "b", "backend_kwargs": {"api_key": "sk-ant-member2secret"}},
    ]})
    assert "member1secret" not in repr(config) and "member2secret" not in repr(config)
