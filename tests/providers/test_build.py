"""build_chat_model for every backend value: the right adapter, URL and key, and errors before any call."""

from __future__ import annotations

import pytest

from deeprecall.errors import ConfigError, MissingAPIKeyError
from deeprecall.providers import build_chat_model
from deeprecall.providers.anthropic import AnthropicChatModel
from deeprecall.providers.gemini import GeminiChatModel
from deeprecall.providers.openai_compat import OpenAIChatModel
from tests.providers.conftest import MSGS

KEYS = {"OPENAI_API_KEY": "sk-test-openai-0000", "ANTHROPIC_API_KEY": "sk-ant-test-0000", "GEMINI_API_KEY": "AIzaTest0000",
        "PORTKEY_API_KEY": "pk-test-0000", "OPENROUTER_API_KEY": "sk-or-v1-test0000", "AI_GATEWAY_API_KEY": "vk-test",
        "AZURE_OPENAI_API_KEY": "az-test-0000", "NVIDIA_API_KEY": "nvapi-test", "ZENMUX_API_KEY": "zm-test",
        "ZAI_API_KEY": "zai-test", "KIMI_API_KEY": "kimi-test", "MINIMAX_API_KEY": "mm-test", "INTERNLM_API_KEY": "il-test",
        "DASHSCOPE_API_KEY": "sk-dash", "MISTRAL_API_KEY": "ms-test", "GROQ_API_KEY": "gsk_test", "TOGETHER_API_KEY": "tg",
        "FIREWORKS_API_KEY": "fw-test", "DEEPSEEK_API_KEY": "sk-ds"}


@pytest.fixture
def keys(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://my-resource.openai.azure.com/")


@pytest.mark.parametrize(("backend", "model", "cls", "base_url"), [
    ("openai", "gpt-4o-mini", OpenAIChatModel, "https://api.openai.com/v1"),
    ("anthropic", "claude-sonnet-4-20250514", AnthropicChatModel, "https://api.anthropic.com"),
    ("gemini", "gemini-2.0-flash", GeminiChatModel, "https://generativelanguage.googleapis.com"),
    ("azure_openai", "my-gpt-4o-deployment", OpenAIChatModel, "https://my-resource.openai.azure.com"),
    ("portkey", "@openai/gpt-5-mini", OpenAIChatModel, "https://api.portkey.ai/v1"),
    ("openrouter", "openai/gpt-5-mini", OpenAIChatModel, "https://openrouter.ai/api/v1"),
    ("vercel", "openai/gpt-4o-mini", OpenAIChatModel, "https://ai-gateway.vercel.sh/v1"),
    ("vllm", "meta-llama/Llama-3-70b", OpenAIChatModel, "http://localhost:8000/v1"),
    ("nvidia", "meta/llama-3.3-70b-instruct", OpenAIChatModel, "https://integrate.api.nvidia.com/v1"),
    ("zenmux", "openai/gpt-5", OpenAIChatModel, "https://zenmux.ai/api/v1"),
    ("zai", "glm-4.6", OpenAIChatModel, "https://api.z.ai/api/paas/v4"),
    ("zai-coding-plan", "glm-4.6", OpenAIChatModel, "https://api.z.ai/api/coding/paas/v4"),
    ("kimi-code", "kimi-for-coding", OpenAIChatModel, "https://api.kimi.com/coding/v1"),
    ("minimax", "MiniMax-M2", OpenAIChatModel, "https://api.minimax.io/v1"),
    ("internlm", "internlm3-latest", OpenAIChatModel, "https://chat.intern-ai.org.cn/api/v1"),
    ("qwen", "qwen-max", OpenAIChatModel, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
    ("mistral", "mistral-large-latest", OpenAIChatModel, "https://api.mistral.ai/v1"),
    ("groq", "llama-3.3-70b-versatile", OpenAIChatModel, "https://api.groq.com/openai/v1"),
    ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", OpenAIChatModel, "https://api.together.xyz/v1"),
    ("ollama", "qwen2.5-coder:7b", OpenAIChatModel, "http://localhost:11434/v1"),
])
def test_each_backend_builds_its_adapter_without_a_network_call(keys, backend, model, cls, base_url):
    m = build_chat_model(backend, {"model_name": model})
    assert isinstance(m, cls) and m.model_name == model and m.base_url == base_url
    assert all(v not in repr(m) for v in KEYS.values())
    m.close()


def test_litellm_backend_builds(keys):
    m = build_chat_model("litellm", {"model_name": "gpt-4o-mini"})
    assert type(m).__name__ == "LiteLLMChatModel" and m.has_price


@pytest.mark.parametrize(("backend", "env"), [
    ("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"), ("gemini", "GEMINI_API_KEY or GOOGLE_API_KEY"),
    ("openrouter", "OPENROUTER_API_KEY"), ("portkey", "PORTKEY_API_KEY"), ("nvidia", "NVIDIA_API_KEY"),
    ("kimi-code", "KIMI_API_KEY"), ("vercel", "AI_GATEWAY_API_KEY"),
])
def test_a_missing_key_names_the_env_var(backend, env):
    with pytest.raises(MissingAPIKeyError, match=env):
        build_chat_model(backend, {"model_name": "m"})


def test_local_providers_need_no_key():
    for backend in ("ollama", "lmstudio", "vllm", "sglang", "tgi", "mlx", "openai-compatible"):
        build_chat_model(backend, {"model_name": "m"}).close()
    # llama-cpp is a server only with a URL; without one it runs in-process (test_local_models.py).
    build_chat_model("llama-cpp", {"model_name": "m", "base_url": "http://localhost:8080/v1"}).close()


def test_a_wrong_key_format_fails_before_any_call(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-proj-wrong-provider-123456")
    with pytest.raises(ConfigError, match="sk-ant-") as err:
        build_chat_model("anthropic", {"model_name": "claude-sonnet-4-6"})
    assert "wrong-provider" not in str(err.value) and "ANTHROPIC_API_KEY" in str(err.value)
    with pytest.raises(ConfigError, match="Anthropic"):
        build_chat_model("openai", {"model_name": "gpt-4o", "api_key": "sk-ant-api03-secretsecret"})
    with pytest.raises(ConfigError, match="AIza"):
        build_chat_model("gemini", {"model_name": "gemini-2.5-flash", "api_key": "not-a-google-key"})


def test_a_custom_base_url_skips_the_key_format_check(llm):
    s = llm(lambda r: "ok")
    m = build_chat_model("openai", {"model_name": "gpt-4o-mini", "api_key": "proxy-key", "base_url": s.base_url})
    assert m.complete(MSGS).text == "ok"


@pytest.mark.parametrize(("backend", "kwargs", "match"), [
    ("openai", {"model_name": "gpt-4o", "api_key": "sk-x", "temperature": 0}, "temperature"),
    ("openai", {"api_key": "sk-x"}, "model_name"),
    ("antropic", {"model_name": "x"}, "anthropic"),
    ("azure_openai", {"model_name": "dep", "api_key": "k"}, "AZURE_OPENAI_ENDPOINT"),
    ("llama", {"model_name": "llama-3.3-70b-instruct"}, "LLAMA_ENDPOINT_URL"),
    ("gemini", {"model_name": "gemini-2.5-flash", "vertexai": True}, "GOOGLE_CLOUD_PROJECT"),
    ("auto", {"model_name": "gpt-4o"}, "provider/model"),
    ("litellm", {"model_name": "gpt-4o", "colour": 1}, "extra"),
    ("", {}, "backend"),
])
def test_config_errors_name_the_fix(backend, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_chat_model(backend, kwargs)


def test_gemini_on_vertex_needs_no_key():
    m = build_chat_model("gemini", {"model_name": "gemini-2.5-flash", "project": "my-proj", "location": "europe-west4"})
    assert isinstance(m, GeminiChatModel) and m.vertexai and "vertex" in repr(m)


def test_auto_infers_the_provider_and_strips_the_prefix(llm):
    s = llm(lambda r: f"{r.protocol}:{r.model}")
    m = build_chat_model("auto", {"model_name": "anthropic/claude-sonnet-4-6", "api_key": "sk-ant-x", "base_url": s.root_url})
    assert isinstance(m, AnthropicChatModel) and m.complete(MSGS).text == "anthropic:claude-sonnet-4-6"


def test_openai_organisation_is_sent(llm, monkeypatch):
    s = llm(lambda r: "ok")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    build_chat_model("openai", {"model_name": "gpt-4o", "api_key": "k", "base_url": s.base_url}).complete(MSGS)
    assert s.requests[-1].headers["openai-organization"] == "org-123"


def test_azure_sends_deployment_api_version_and_api_key_header(llm):
    s = llm(lambda r: f"deployment={r.model}")
    m = build_chat_model("azure", {"deployment": "gpt-4o-prod", "api_key": "az-secret", "base_url": s.root_url,
                                    "api_version": "2024-08-01-preview"})
    assert m.complete(MSGS).text == "deployment=gpt-4o-prod"
    req = s.requests[-1]
    assert req.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-08-01-preview"
    assert req.headers["api-key"] == "az-secret"


def test_portkey_authenticates_with_its_headers(llm):
    s = llm(lambda r: "ok")
    m = build_chat_model("portkey", {"model_name": "@openai/gpt-5-mini", "api_key": "pk-secret", "virtual_key": "vk-1",
                                      "base_url": s.base_url})
    m.complete(MSGS)
    h = s.requests[-1].headers
    assert h["x-portkey-api-key"] == "pk-secret" and h["x-portkey-virtual-key"] == "vk-1"
    assert s.requests[-1].model == "@openai/gpt-5-mini" and "pk-secret" not in repr(m)


def test_ollama_host_env_var_points_at_the_server(llm, monkeypatch):
    s = llm({"qwen2.5:7b": lambda r: "from ollama"})
    monkeypatch.setenv("OLLAMA_HOST", s.root_url.removeprefix("http://"))
    m = build_chat_model("ollama", {"model_name": "ollama/qwen2.5:7b"})
    assert m.base_url == s.base_url and m.complete(MSGS).text == "from ollama"


def test_anthropic_max_tokens_is_always_sent(llm):
    s = llm(lambda r: "ok")
    build_chat_model("anthropic", {"model_name": "claude-sonnet-4-6", "api_key": "sk-ant-x", "base_url": s.root_url,
                                   "max_tokens": 8192}).complete(MSGS)
    assert s.requests[-1].body["max_tokens"] == 8192
