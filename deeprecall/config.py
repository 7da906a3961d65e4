"""``DeepRecallConfig``: everything a query needs, validated up front.

A bad value fails here, at construction, with a message that names the fix,
not halfway through a query. Secrets inside ``backend_kwargs`` are hidden from
``repr`` and ``str``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deeprecall.errors import ConfigError
from deeprecall.vectorstores import filters as filter_language

Environment = Literal["local", "docker", "modal", "e2b", "daytona", "prime"]
SECRET_KEYS = ("api_key", "key", "token", "secret", "password", "virtual_key")


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(lowered == s or lowered.endswith("_" + s) for s in SECRET_KEYS)


def redact_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``kwargs`` with secret-looking values replaced by ``'***'``, at any depth
    (pool members and hybrid halves nest their own kwargs)."""
    return {k: "***" if _is_secret(k) and v else _redact_value(v) for k, v in kwargs.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return redact_kwargs(value)
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return value


class DeepRecallConfig(BaseModel):
    """Which LLMs, which sandbox, which limits.

    Limits end a query with the best partial answer and ``result.error`` set
    to the limit's name. ``None`` turns a limit off.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    backend: str = Field("openai", description="root LLM backend, e.g. 'openai', 'vllm'")
    backend_kwargs: dict[str, Any] = Field(default_factory=dict, description="model_name, api_key, base_url ...")
    other_backends: list[str] = Field(default_factory=list, description="sub-LLM backends for llm_query()")
    other_backend_kwargs: list[dict[str, Any]] = Field(default_factory=list, description="one dict per other_backends entry")
    environment: Environment = Field("local", description="where the model's code runs")
    environment_kwargs: dict[str, Any] = Field(default_factory=dict, description="sandbox settings and limits")
    max_iterations: int = Field(15, ge=1, le=200, description="root LLM turns before the query is cut off")
    max_search_calls: int | None = Field(50, ge=1, description="search_db calls per query")
    max_tokens: int | None = Field(1_000_000, ge=1, description="input+output tokens per query, root and sub-LLMs "
                                   "together; a sub-call whose prompt alone would cross it is refused before it is sent")
    max_sub_calls: int | None = Field(100, ge=1, description="sub-LLM calls per query (llm_query, each prompt of "
                                      "llm_query_batched); a batch that would cross it is refused whole")
    max_llm_calls: int | None = Field(150, ge=1, description="LLM calls per query, root turns and sub-calls together")
    max_seconds: float | None = Field(300.0, gt=0, description="wall-clock seconds per query")
    max_cost_usd: float | None = Field(None, gt=0, description="USD per query, root and sub-LLMs together")
    max_depth: int = Field(1, ge=1, le=5, description="depth of the query tree: 1 serves rlm_query as llm_query; "
                           "2 or more runs it as a child query in its own sandbox, within this query's filters, "
                           "deadline and limits (docs/recursion.md)")
    top_k: int = Field(5, ge=1, le=100, description="default top_k of search_db")
    max_top_k: int = Field(50, ge=1, le=1000, description="largest top_k the model may ask for")
    filters: dict[str, Any] | None = Field(None, description="filters enforced on every search, ANDed with query filters")
    sub_concurrency: int | None = Field(
        None, ge=1, le=256, description="most concurrent sub-LLM calls per model, across the engine's queries; None "
                                        "adapts (starts at 32, halves on a 429, grows on success, at most 64)")
    prompt_style: Literal["auto", "rlms", "compact"] = Field(
        "auto", description="system prompt: rlms's full one, a compact one for small models, or auto (compact "
                            "when the root model says it is small, e.g. the embedded llama-cpp model)")
    ground_first_turn: bool = Field(
        True, description="search the question before the first turn and show its top hits to the model, so its "
                          "first turn knows what one-shot retrieval would have known")
    trace_dir: Path | None = Field(
        None, description="write one JSONL trace file per query into this folder: rlms's log format (its trajectory "
                          "viewer opens it) plus DeepRecall's searches, sources, usage and error; see docs/traces.md. "
                          "`deeprecall trace view FILE` renders one as an HTML page")

    @field_validator("backend")
    @classmethod
    def _backend_known(cls, value: str) -> str:
        return _check_backend(value, "backend")

    @field_validator("other_backends")
    @classmethod
    def _others_known(cls, value: list[str]) -> list[str]:
        return [_check_backend(v, f"other_backends[{i}]") for i, v in enumerate(value)]

    @field_validator("filters")
    @classmethod
    def _filters_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return filter_language.validate(value)

    @model_validator(mode="after")
    def _shapes_match(self) -> DeepRecallConfig:
        if self.other_backend_kwargs and len(self.other_backend_kwargs) != len(self.other_backends):
            raise ValueError(
                f"other_backends has {len(self.other_backends)} entries but other_backend_kwargs has "
                f"{len(self.other_backend_kwargs)}; give one kwargs dict per backend, in the same order"
            )
        if self.other_backends and not self.other_backend_kwargs:
            raise ValueError("other_backends needs other_backend_kwargs, e.g. [{'model_name': 'gpt-4o-mini'}]")
        for i, kwargs in enumerate([self.backend_kwargs, *self.other_backend_kwargs]):
            if "model_name" not in kwargs and kwargs.get("model") is None and self._needs_model_name(i):
                where = "backend_kwargs" if i == 0 else f"other_backend_kwargs[{i - 1}]"
                raise ValueError(f"{where} needs 'model_name', e.g. {{'model_name': 'gpt-4o-mini'}}")
        return self

    def _needs_model_name(self, index: int) -> bool:
        backend = self.backend if index == 0 else self.other_backends[index - 1]
        return backend not in ("pool", "hybrid")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "backend_kwargs":
                value = redact_kwargs(value)
            elif name == "other_backend_kwargs":
                value = [redact_kwargs(v) for v in value]
            elif name == "environment_kwargs":
                value = redact_kwargs(value)
            yield name, value

    @classmethod
    def build(cls, **values: Any) -> DeepRecallConfig:
        """Like the constructor, but raises ``ConfigError`` (a ``ValueError``) with one readable message."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> DeepRecallConfig:
        """Load ``deeprecall.yaml``; see docs/configuration.md for its shape."""
        from deeprecall.config_file import load_config_file

        values = load_config_file(path)
        values.pop("store", None)
        values.pop("server", None)  # deeprecall serve's own settings
        return cls.build(**values)


def format_validation_error(error: ValidationError) -> str:
    lines = ["invalid DeepRecallConfig:"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown setting; valid settings are: {', '.join(DeepRecallConfig.model_fields)}"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def _check_backend(value: str, where: str) -> str:
    from deeprecall.providers import known_backends

    known = known_backends()
    if value not in known:
        raise ValueError(f"{where}: unknown backend {value!r}; choose one of: {', '.join(sorted(known))}")
    return value
