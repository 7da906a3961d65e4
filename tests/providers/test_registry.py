"""The registry: every seed provider present, resolution by id/alias/prefix, key formats."""

from __future__ import annotations

import pytest

from deeprecall.errors import ConfigError
from deeprecall.providers import known_backends
from deeprecall.providers.registry import (
    PROVIDERS,
    get_provider,
    infer_provider,
    key_format_problem,
    list_providers,
    normalize_model_name,
    require_provider,
)

SEED_001 = ["ollama", "lmstudio", "vllm", "sglang", "tgi", "mlx", "llama-cpp", "openai-compatible", "openai", "anthropic",
            "gemini", "xai", "perplexity", "deepseek", "moonshot", "alibaba", "openrouter", "opencode", "groq", "together",
            "siliconflow", "fireworks", "cerebras", "mistral"]
SEED_002 = ["nvidia", "zenmux", "zai", "zai-coding-plan", "kimi-code", "minimax", "internlm", "qwen", "hybrid"]
SEED_003 = ["openai", "anthropic", "gemini", "azure_openai", "portkey", "openrouter", "vllm", "litellm", "vercel"]


def test_every_seed_backend_is_accepted():
    backends = known_backends()
    for name in SEED_001 + SEED_002 + SEED_003 + ["pool", "meta", "llama"]:
        assert name in backends, name


def test_every_row_is_complete():
    ids = [p.id for p in PROVIDERS]
    assert len(ids) == len(set(ids))
    for p in PROVIDERS:
        assert p.display_name and p.category and p.connection in ("local", "byok")
        if p.connection == "local":
            assert not p.requires_api_key and p.default_base_url and p.base_url_env_var
        elif p.requires_api_key:
            assert p.api_key_env_vars, p.id
        assert p.example_models or p.id == "openai-compatible", p.id


def test_seed_001_rows_match_the_seed():
    ollama = get_provider("ollama")
    assert ollama.default_base_url == "http://localhost:11434" and ollama.base_url_env_var == "OLLAMA_HOST"
    assert get_provider("gemini").api_key_env_vars == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert get_provider("perplexity").api_key_env_vars == ("PERPLEXITY_API_KEY", "PPLX_API_KEY")
    assert get_provider("groq").default_base_url == "https://api.groq.com/openai/v1"
    assert get_provider("openai").base_url_env_var == "OPENAI_API_BASE"
    assert {p.id for p in list_providers("local")} == {"ollama", "lmstudio", "vllm", "sglang", "tgi", "mlx", "llama-cpp",
                                                        "openai-compatible"}


@pytest.mark.parametrize(("name", "expected"), [
    ("Claude", "anthropic"), ("GPT", "openai"), ("google", "gemini"), ("kimi", "moonshot"), ("qwen", "alibaba"),
    ("DashScope", "alibaba"), ("llamacpp", "llama-cpp"), ("llama_cpp", "llama-cpp"), ("LM-Studio", "lmstudio"),
    ("text-generation-inference", "tgi"), ("compatible", "openai-compatible"), ("togetherai", "together"),
    ("azure", "azure_openai"), ("azure-openai", "azure_openai"), ("meta", "llama"), ("vertex", "gemini"),
    ("kimi_code", "kimi-code"), (" zai-coding-plan ", "zai-coding-plan"),
])
def test_aliases_resolve_case_insensitively(name, expected):
    assert get_provider(name).id == expected


def test_unknown_names_get_suggestions():
    assert get_provider("nope") is None
    with pytest.raises(ConfigError, match="anthropic"):
        require_provider("antropic")


def test_provider_is_inferred_from_the_model_prefix():
    assert infer_provider("anthropic/claude-sonnet-4-5").id == "anthropic"
    assert infer_provider("claude/claude-3").id == "anthropic"
    assert infer_provider("ollama/qwen2.5-coder:7b").id == "ollama"
    assert infer_provider("gpt-4o") is None
    assert infer_provider("meta-llama/Llama-3-70b") is None  # a Hugging Face repo id, not a provider prefix


def test_redundant_prefixes_are_stripped_but_gateway_prefixes_kept():
    assert normalize_model_name("anthropic", "anthropic/claude-3-5") == "claude-3-5"
    assert normalize_model_name("anthropic", "Claude/claude-3-5") == "claude-3-5"
    assert normalize_model_name("openrouter", "openai/gpt-4o") == "openai/gpt-4o"
    assert normalize_model_name("openrouter", "openrouter/openai/gpt-4o") == "openai/gpt-4o"
    assert normalize_model_name("vllm", "meta-llama/Llama-3-70b") == "meta-llama/Llama-3-70b"
    assert normalize_model_name("ollama", "qwen2.5:7b") == "qwen2.5:7b"


@pytest.mark.parametrize(("provider", "key", "problem"), [
    ("openai", "sk-proj-abc", None),
    ("openai", "abc123", "start with 'sk-'"),
    ("openai", "sk-ant-api03-xyz", "Anthropic"),
    ("anthropic", "sk-ant-api03-xyz", None),
    ("anthropic", "sk-proj-abc", "start with 'sk-ant-'"),
    ("gemini", "AIzaSyXYZ", None),
    ("gemini", "sk-abc", "start with 'AIza'"),
    ("openrouter", "sk-or-v1-abc", None),
    ("openrouter", "sk-proj-abc", "start with 'sk-or-'"),
    ("deepseek", "sk-abc", None),  # "sk-" is shared by many providers: no claim
    ("deepseek", "sk-ant-api03", "Anthropic"),
    ("groq", "gsk_abc", None),
])
def test_key_formats(provider, key, problem):
    found = key_format_problem(get_provider(provider), key)
    if problem is None:
        assert found is None
    else:
        assert problem in found and key not in found
