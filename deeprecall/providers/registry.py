"""The provider registry: one ``ProviderSpec`` row per provider DeepRecall can reach.

A row is data only (where the server is, which env var holds the key, how keys
look, how litellm prices its models). Which *API shape* a row speaks is its
``adapter``: ``openai`` (chat completions, most rows), ``anthropic`` (messages),
``gemini`` (generateContent) or ``azure`` (OpenAI on Azure deployments). Adding a
provider that speaks one of those shapes is adding a row, nothing more.

Names resolve case-insensitively by id or alias; ``provider/model`` names are
split once (``infer_provider``) and a redundant ``provider/`` prefix is stripped
(``normalize_model_name``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

LOCAL, BYOK = "local", "byok"


@dataclass(frozen=True)
class ProviderSpec:
    """Where a provider lives and how to authenticate to it. No behaviour here."""

    id: str
    display_name: str
    category: str
    connection: str = BYOK
    adapter: str = "openai"
    aliases: tuple[str, ...] = ()
    api_key_env_vars: tuple[str, ...] = ()
    base_url_env_var: str | None = None
    default_base_url: str | None = None
    docs_url: str | None = None
    example_models: tuple[str, ...] = ()
    key_prefix: str | None = None
    # litellm's provider names, tried as "<prefix>/<model>" in its price table.
    price_prefixes: tuple[str, ...] = ()
    # A gateway passes upstream prices through: "openai/gpt-4o" may be priced as "gpt-4o".
    gateway: bool = False
    reports_cost: bool = False
    key_optional: bool = False
    settings: tuple[str, ...] = ()
    notes: str = ""

    @property
    def requires_api_key(self) -> bool:
        return self.connection == BYOK and not self.key_optional

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


def _local(
    id: str, name: str, url: str, env: str, aliases: tuple[str, ...], docs: str | None, models: tuple[str, ...] = ()
) -> ProviderSpec:
    return ProviderSpec(
        id,
        name,
        "Local",
        LOCAL,
        aliases=aliases,
        base_url_env_var=env,
        default_base_url=url,
        docs_url=docs,
        example_models=models,
    )


PROVIDERS: tuple[ProviderSpec, ...] = (
    # ---- Local servers: no key; every one speaks OpenAI chat completions.
    _local(
        "ollama",
        "Ollama",
        "http://localhost:11434",
        "OLLAMA_HOST",
        ("local-ollama",),
        "https://ollama.com",
        ("qwen2.5-coder:7b", "llama3.2:3b", "gpt-oss:20b"),
    ),
    _local(
        "lmstudio",
        "LM Studio",
        "http://localhost:1234/v1",
        "LMSTUDIO_BASE_URL",
        ("lm-studio",),
        "https://lmstudio.ai",
        ("qwen2.5-7b-instruct",),
    ),
    _local(
        "vllm",
        "vLLM",
        "http://localhost:8000/v1",
        "VLLM_BASE_URL",
        ("vllm-server",),
        "https://docs.vllm.ai",
        ("meta-llama/Llama-3-70b",),
    ),
    _local(
        "sglang",
        "SGLang",
        "http://localhost:30000/v1",
        "SGLANG_BASE_URL",
        ("sg-lang",),
        "https://docs.sglang.ai",
        ("Qwen/Qwen2.5-7B-Instruct",),
    ),
    _local(
        "tgi",
        "Hugging Face TGI",
        "http://localhost:8080/v1",
        "TGI_BASE_URL",
        ("text-generation-inference",),
        "https://huggingface.co/docs/text-generation-inference",
        ("tgi",),
    ),
    _local(
        "mlx",
        "MLX",
        "http://localhost:8080/v1",
        "MLX_BASE_URL",
        ("mlx-lm",),
        "https://github.com/ml-explore/mlx-lm",
        ("mlx-community/Llama-3.2-3B-Instruct-4bit",),
    ),
    _local(
        "llama-cpp",
        "llama.cpp server",
        "http://localhost:8080/v1",
        "LLAMACPP_BASE_URL",
        ("llamacpp", "llama_cpp"),
        "https://github.com/ggml-org/llama.cpp",
        ("local-model",),
    ),
    _local(
        "openai-compatible",
        "OpenAI-compatible (generic)",
        "http://localhost:8000/v1",
        "OPENAI_COMPATIBLE_BASE_URL",
        ("openai_compatible", "compatible"),
        None,
    ),
    # ---- US labs
    ProviderSpec(
        "openai",
        "OpenAI",
        "US Labs",
        aliases=("gpt",),
        api_key_env_vars=("OPENAI_API_KEY",),
        base_url_env_var="OPENAI_API_BASE",
        default_base_url="https://api.openai.com/v1",
        docs_url="https://platform.openai.com/",
        example_models=("gpt-4o", "gpt-4o-mini", "gpt-5-mini", "o1"),
        key_prefix="sk-",
        price_prefixes=("openai",),
        settings=("organization (or OPENAI_ORG_ID)",),
    ),
    ProviderSpec(
        "anthropic",
        "Anthropic",
        "US Labs",
        adapter="anthropic",
        aliases=("claude",),
        api_key_env_vars=("ANTHROPIC_API_KEY",),
        base_url_env_var="ANTHROPIC_BASE_URL",
        default_base_url="https://api.anthropic.com",
        docs_url="https://console.anthropic.com/",
        example_models=(
            "claude-sonnet-4-20250514",
            "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5-20251001",
            "claude-3-5-sonnet-20241022",
        ),
        key_prefix="sk-ant-",
        price_prefixes=("anthropic",),
        settings=("max_tokens (required by the API; default 4096)",),
    ),
    ProviderSpec(
        "gemini",
        "Google Gemini",
        "US Labs",
        adapter="gemini",
        aliases=("google", "vertex", "vertex_ai", "google-vertex"),
        api_key_env_vars=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        base_url_env_var="GEMINI_BASE_URL",
        default_base_url="https://generativelanguage.googleapis.com",
        docs_url="https://aistudio.google.com/",
        example_models=("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash"),
        key_prefix="AIza",
        price_prefixes=("gemini", "vertex_ai"),
        settings=("vertexai, project (GOOGLE_CLOUD_PROJECT), location (GOOGLE_CLOUD_LOCATION): Vertex AI instead of a key",),
    ),
    ProviderSpec(
        "xai",
        "xAI",
        "US Labs",
        aliases=("grok",),
        api_key_env_vars=("XAI_API_KEY",),
        default_base_url="https://api.x.ai/v1",
        base_url_env_var="XAI_BASE_URL",
        docs_url="https://console.x.ai/",
        example_models=("grok-3", "grok-3-mini"),
        key_prefix="xai-",
        price_prefixes=("xai",),
    ),
    ProviderSpec(
        "perplexity",
        "Perplexity",
        "US Labs",
        aliases=("pplx",),
        api_key_env_vars=("PERPLEXITY_API_KEY", "PPLX_API_KEY"),
        default_base_url="https://api.perplexity.ai",
        base_url_env_var="PERPLEXITY_BASE_URL",
        docs_url="https://docs.perplexity.ai/",
        example_models=("sonar-pro", "sonar", "sonar-reasoning"),
        key_prefix="pplx-",
        price_prefixes=("perplexity",),
    ),
    # ---- China labs
    ProviderSpec(
        "deepseek",
        "DeepSeek",
        "China Labs",
        api_key_env_vars=("DEEPSEEK_API_KEY",),
        base_url_env_var="DEEPSEEK_BASE_URL",
        default_base_url="https://api.deepseek.com/v1",
        docs_url="https://platform.deepseek.com/",
        example_models=("deepseek-chat", "deepseek-reasoner"),
        price_prefixes=("deepseek",),
    ),
    ProviderSpec(
        "moonshot",
        "Moonshot (Kimi)",
        "China Labs",
        aliases=("kimi",),
        api_key_env_vars=("MOONSHOT_API_KEY", "KIMI_API_KEY"),
        base_url_env_var="MOONSHOT_BASE_URL",
        default_base_url="https://api.moonshot.ai/v1",
        docs_url="https://platform.moonshot.cn/",
        example_models=("kimi-k2", "moonshot-v1-128k", "moonshot-v1-32k"),
        price_prefixes=("moonshot",),
    ),
    ProviderSpec(
        "alibaba",
        "Alibaba (DashScope / Qwen)",
        "China Labs",
        aliases=("qwen", "dashscope"),
        api_key_env_vars=("DASHSCOPE_API_KEY", "QWEN_API_KEY"),
        base_url_env_var="DASHSCOPE_BASE_URL",
        default_base_url="https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        docs_url="https://dashscope.aliyun.com/",
        example_models=("qwen-max", "qwen-plus", "qwen-turbo", "qwen2.5-72b-instruct"),
        price_prefixes=("dashscope",),
    ),
    ProviderSpec(
        "zai",
        "Z.ai (Zhipu GLM)",
        "China Labs",
        aliases=("z.ai", "zhipu", "glm"),
        api_key_env_vars=("ZAI_API_KEY", "ZHIPU_API_KEY"),
        base_url_env_var="ZAI_BASE_URL",
        default_base_url="https://api.z.ai/api/paas/v4",
        docs_url="https://docs.z.ai/",
        example_models=("glm-4.6", "glm-4.5", "glm-4.5-air"),
        price_prefixes=("zai",),
    ),
    ProviderSpec(
        "zai-coding-plan",
        "Z.ai Coding Plan",
        "China Labs",
        aliases=("zai_coding_plan", "zai-coding"),
        api_key_env_vars=("ZAI_API_KEY", "ZHIPU_API_KEY"),
        base_url_env_var="ZAI_CODING_BASE_URL",
        default_base_url="https://api.z.ai/api/coding/paas/v4",
        docs_url="https://docs.z.ai/devpack/overview",
        example_models=("glm-4.6", "glm-4.5-air"),
        notes="subscription plan: no per-token price",
    ),
    ProviderSpec(
        "kimi-code",
        "Kimi For Coding",
        "China Labs",
        aliases=("kimi_code", "kimi-for-coding"),
        api_key_env_vars=("KIMI_API_KEY",),
        base_url_env_var="KIMI_CODE_BASE_URL",
        default_base_url="https://api.kimi.com/coding/v1",
        docs_url="https://www.kimi.com/code",
        example_models=("kimi-for-coding",),
        notes="the endpoint admits recognised coding agents only; pass default_headers if it refuses you",
    ),
    ProviderSpec(
        "minimax",
        "MiniMax",
        "China Labs",
        api_key_env_vars=("MINIMAX_API_KEY",),
        base_url_env_var="MINIMAX_BASE_URL",
        default_base_url="https://api.minimax.io/v1",
        docs_url="https://www.minimax.io/platform",
        example_models=("MiniMax-M2", "MiniMax-Text-01"),
        price_prefixes=("minimax",),
    ),
    ProviderSpec(
        "internlm",
        "InternLM (Intern AI)",
        "China Labs",
        aliases=("intern", "internai"),
        api_key_env_vars=("INTERNLM_API_KEY", "INTERNAI_API_KEY"),
        base_url_env_var="INTERNLM_BASE_URL",
        default_base_url="https://chat.intern-ai.org.cn/api/v1",
        docs_url="https://internlm.intern-ai.org.cn/",
        example_models=("internlm3-latest", "internlm2.5-latest"),
    ),
    ProviderSpec(
        "siliconflow",
        "SiliconFlow",
        "China Labs",
        aliases=("silicon-flow",),
        api_key_env_vars=("SILICONFLOW_API_KEY", "SILICON_API_KEY"),
        base_url_env_var="SILICONFLOW_BASE_URL",
        default_base_url="https://api.siliconflow.cn/v1",
        docs_url="https://siliconflow.cn/",
        example_models=("Qwen/Qwen2.5-72B-Instruct", "deepseek-ai/DeepSeek-V3"),
    ),
    # ---- Model hosts (Llama via Together, Groq or Fireworks lives here)
    ProviderSpec(
        "openrouter",
        "OpenRouter",
        "Model Hosts",
        api_key_env_vars=("OPENROUTER_API_KEY",),
        base_url_env_var="OPENROUTER_BASE_URL",
        default_base_url="https://openrouter.ai/api/v1",
        docs_url="https://openrouter.ai/",
        example_models=("openai/gpt-4o", "anthropic/claude-sonnet-4", "meta-llama/llama-3.3-70b-instruct"),
        key_prefix="sk-or-",
        price_prefixes=("openrouter",),
        gateway=True,
        reports_cost=True,
    ),
    ProviderSpec(
        "opencode",
        "OpenCode Zen",
        "Model Hosts",
        aliases=("opencode-zen",),
        api_key_env_vars=("OPENCODE_API_KEY",),
        base_url_env_var="OPENCODE_BASE_URL",
        default_base_url="https://api.opencode.ai/v1",
        docs_url="https://opencode.ai/",
        example_models=("glm-4.7-free", "kimi-k2.5-free", "gpt-5-nano"),
        key_optional=True,
        notes="free models work without a key",
    ),
    ProviderSpec(
        "groq",
        "Groq",
        "Model Hosts",
        api_key_env_vars=("GROQ_API_KEY",),
        base_url_env_var="GROQ_BASE_URL",
        default_base_url="https://api.groq.com/openai/v1",
        docs_url="https://console.groq.com/",
        example_models=("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
        key_prefix="gsk_",
        price_prefixes=("groq",),
    ),
    ProviderSpec(
        "together",
        "Together AI",
        "Model Hosts",
        aliases=("togetherai", "together_ai"),
        api_key_env_vars=("TOGETHER_API_KEY", "TOGETHERAI_API_KEY"),
        base_url_env_var="TOGETHER_BASE_URL",
        default_base_url="https://api.together.xyz/v1",
        docs_url="https://api.together.xyz/",
        example_models=("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-Coder-32B-Instruct"),
        price_prefixes=("together_ai",),
    ),
    ProviderSpec(
        "fireworks",
        "Fireworks AI",
        "Model Hosts",
        aliases=("fireworks_ai", "fireworks-ai"),
        api_key_env_vars=("FIREWORKS_API_KEY",),
        base_url_env_var="FIREWORKS_BASE_URL",
        default_base_url="https://api.fireworks.ai/inference/v1",
        docs_url="https://fireworks.ai/",
        example_models=("accounts/fireworks/models/llama-v3p3-70b-instruct",),
        price_prefixes=("fireworks_ai",),
    ),
    ProviderSpec(
        "cerebras",
        "Cerebras",
        "Model Hosts",
        api_key_env_vars=("CEREBRAS_API_KEY",),
        base_url_env_var="CEREBRAS_BASE_URL",
        default_base_url="https://api.cerebras.ai/v1",
        docs_url="https://cloud.cerebras.ai/",
        example_models=("llama-3.3-70b", "qwen-3-coder-480b"),
        price_prefixes=("cerebras",),
    ),
    ProviderSpec(
        "nvidia",
        "NVIDIA NIM",
        "Model Hosts",
        aliases=("nvidia-nim", "nvidia_nim", "nim"),
        api_key_env_vars=("NVIDIA_API_KEY",),
        base_url_env_var="NVIDIA_BASE_URL",
        default_base_url="https://integrate.api.nvidia.com/v1",
        docs_url="https://build.nvidia.com/",
        example_models=("meta/llama-3.3-70b-instruct",),
        key_prefix="nvapi-",
        price_prefixes=("nvidia_nim",),
        notes="self-hosted NIM: set base_url",
    ),
    ProviderSpec(
        "llama",
        "Meta Llama (self-hosted or any host)",
        "Model Hosts",
        aliases=("meta",),
        api_key_env_vars=("LLAMA_API_KEY",),
        base_url_env_var="LLAMA_ENDPOINT_URL",
        key_optional=True,
        docs_url="https://www.llama.com/",
        example_models=("llama-3.3-70b-instruct", "llama-3.1-8b-instruct"),
        notes="needs base_url (LLAMA_ENDPOINT_URL); for Together, Groq or Fireworks use those backends",
    ),
    # ---- Gateways
    ProviderSpec(
        "azure_openai",
        "Azure OpenAI",
        "Gateways",
        adapter="azure",
        aliases=("azure", "azure-openai"),
        api_key_env_vars=("AZURE_OPENAI_API_KEY",),
        base_url_env_var="AZURE_OPENAI_ENDPOINT",
        docs_url="https://learn.microsoft.com/azure/ai-services/openai/",
        example_models=("my-gpt-4o-deployment",),
        price_prefixes=("azure",),
        settings=(
            "deployment (the model_name)",
            "api_version (or OPENAI_API_VERSION)",
            "price_model: the base model to price a deployment by",
        ),
    ),
    ProviderSpec(
        "portkey",
        "Portkey",
        "Gateways",
        api_key_env_vars=("PORTKEY_API_KEY",),
        base_url_env_var="PORTKEY_BASE_URL",
        default_base_url="https://api.portkey.ai/v1",
        docs_url="https://portkey.ai/docs",
        example_models=("@openai/gpt-5-mini",),
        gateway=True,
        settings=("virtual_key", "config"),
    ),
    ProviderSpec(
        "vercel",
        "Vercel AI Gateway",
        "Gateways",
        aliases=("vercel-ai-gateway", "vercel_ai_gateway"),
        api_key_env_vars=("AI_GATEWAY_API_KEY", "VERCEL_AI_GATEWAY_API_KEY"),
        base_url_env_var="AI_GATEWAY_BASE_URL",
        default_base_url="https://ai-gateway.vercel.sh/v1",
        docs_url="https://vercel.com/docs/ai-gateway",
        example_models=("openai/gpt-4o-mini", "anthropic/claude-sonnet-4"),
        price_prefixes=("vercel_ai_gateway",),
        gateway=True,
    ),
    ProviderSpec(
        "zenmux",
        "ZenMux",
        "Gateways",
        api_key_env_vars=("ZENMUX_API_KEY",),
        base_url_env_var="ZENMUX_BASE_URL",
        default_base_url="https://zenmux.ai/api/v1",
        docs_url="https://docs.zenmux.ai/",
        example_models=("openai/gpt-5", "anthropic/claude-sonnet-4"),
        gateway=True,
    ),
    ProviderSpec(
        "litellm",
        "LiteLLM (100+ providers in-process)",
        "Gateways",
        adapter="litellm",
        key_optional=True,
        docs_url="https://docs.litellm.ai/docs/providers",
        example_models=("gpt-4o-mini", "groq/llama-3.3-70b-versatile"),
        notes="pip install 'deeprecall[litellm]'; keys come from each provider's own env var",
    ),
    # ---- Other labs
    ProviderSpec(
        "mistral",
        "Mistral AI",
        "Other Labs",
        aliases=("mistralai",),
        api_key_env_vars=("MISTRAL_API_KEY",),
        base_url_env_var="MISTRAL_BASE_URL",
        default_base_url="https://api.mistral.ai/v1",
        docs_url="https://console.mistral.ai/",
        example_models=("mistral-large-latest", "mistral-small-latest", "codestral-latest", "mistral-nemo"),
        price_prefixes=("mistral",),
    ),
)

_BY_NAME: dict[str, ProviderSpec] = {name.lower(): spec for spec in PROVIDERS for name in spec.names}


def get_provider(name: str) -> ProviderSpec | None:
    """Resolve a provider by id or alias, case-insensitively (``"Claude"`` -> anthropic)."""
    return _BY_NAME.get(name.strip().lower())


def require_provider(name: str) -> ProviderSpec:
    """Like ``get_provider`` but raise a ``ConfigError`` that suggests the closest names."""
    spec = get_provider(name)
    if spec is None:
        from deeprecall.errors import ConfigError

        close = difflib.get_close_matches(name.strip().lower(), list(_BY_NAME), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown provider {name!r}.{hint} Run `deeprecall providers` to list them.")
    return spec


def list_providers(connection: str | None = None) -> list[ProviderSpec]:
    """Every provider, or only ``"local"`` or ``"byok"`` ones."""
    return [p for p in PROVIDERS if connection is None or p.connection == connection]


def infer_provider(model_name: str) -> ProviderSpec | None:
    """The provider named by a ``provider/model`` prefix (``"anthropic/claude-3"`` -> anthropic), else None."""
    head, sep, _ = model_name.partition("/")
    return get_provider(head) if sep else None


def normalize_model_name(provider: str | ProviderSpec, model_name: str) -> str:
    """Strip a prefix that only repeats the provider: ``("anthropic", "claude/claude-3")`` -> ``"claude-3"``.

    Prefixes that name *another* provider are kept, because gateways need them
    (OpenRouter's ``"openai/gpt-4o"``).
    """
    spec = provider if isinstance(provider, ProviderSpec) else get_provider(provider)
    head, sep, rest = model_name.partition("/")
    if spec is not None and sep and rest and head.lower() in {n.lower() for n in spec.names}:
        return rest
    return model_name


def key_format_problem(spec: ProviderSpec, key: str) -> str | None:
    """Why ``key`` cannot be a key for ``spec`` (wrong prefix, another provider's shape), or None.

    The message names the provider and the expected prefix, never the key.
    """
    for other in PROVIDERS:
        prefix = other.key_prefix
        if other is spec or not prefix or prefix in _SHARED_PREFIXES or not key.startswith(prefix):
            continue
        if spec.key_prefix is None or len(prefix) > len(spec.key_prefix) or not prefix.startswith(spec.key_prefix):
            return f"the key given for {spec.display_name} looks like a {other.display_name} key ({prefix!r}...)"
    if spec.key_prefix and not key.startswith(spec.key_prefix):
        return f"{spec.display_name} keys start with {spec.key_prefix!r}; the key given does not"
    return None


# Prefixes many providers share (DeepSeek, Moonshot, DashScope keys also start with "sk-"):
# they prove nothing about which provider a key belongs to.
_SHARED_PREFIXES = frozenset({"sk-"})
