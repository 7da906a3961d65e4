"""deeprecall.yaml (and .toml): sections, named backends, pools, interpolation, errors."""

from __future__ import annotations

import textwrap

import pytest

from deeprecall.config import DeepRecallConfig
from deeprecall.config_file import load_config_file
from deeprecall.errors import ConfigError
from deeprecall.providers import build_chat_model

FULL = """
backends:
  gpt:
    type: openai
    model_name: gpt-4o-mini
    api_key: ${OPENAI_API_KEY}
  claude: {type: anthropic, model_name: claude-sonnet-4-6, max_tokens: 8192}
pools:
  llm-pool:
    strategy: latency
    fallback: ${POOL_FALLBACK:-true}
    members:
      - {backend: gpt, weight: 70}
      - {backend: claude, weight: 30}
      - {backend: vllm, model_name: local, base_url: "http://127.0.0.1:${VLLM_PORT:-8000}/v1", weight: 1}
root: llm-pool
sub_backends: [gpt, {type: ollama, model_name: "llama3.2:3b"}]
sandbox: {type: docker, image: "python:3.12-slim"}
store: {type: chroma, path: ./chroma, collection: docs}
limits: {max_iterations: 20, max_cost_usd: "${BUDGET:-0.5}"}
search: {top_k: 8, filters: {tenant: acme}}
"""


def write(tmp_path, text, name="deeprecall.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_full_yaml_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-1234")
    cfg = load_config_file(write(tmp_path, FULL))
    assert cfg["backend"] == "pool"
    pool = cfg["backend_kwargs"]
    assert pool["strategy"] == "latency" and pool["fallback"] is True
    assert pool["members"][0] == {"backend": "openai", "model_name": "gpt-4o-mini", "api_key": "sk-from-env-1234", "weight": 70}
    assert pool["members"][1]["backend"] == "anthropic" and pool["members"][1]["max_tokens"] == 8192
    assert pool["members"][2]["base_url"] == "http://127.0.0.1:8000/v1"
    assert cfg["other_backends"] == ["openai", "ollama"]
    assert cfg["other_backend_kwargs"][1] == {"model_name": "llama3.2:3b"}
    assert (cfg["environment"], cfg["environment_kwargs"]) == ("docker", {"image": "python:3.12-slim"})
    assert cfg["max_iterations"] == 20 and cfg["max_cost_usd"] == 0.5 and cfg["top_k"] == 8
    assert cfg["filters"] == {"tenant": "acme"} and cfg["store"]["collection"] == "docs"


def test_the_loaded_pool_builds(tmp_path, monkeypatch, llm):
    s = llm(lambda r: "pooled")
    monkeypatch.setenv("PORT", s.base_url.rsplit(":", 1)[1].split("/")[0])
    cfg = load_config_file(write(tmp_path, """
        pools:
          p: {members: [{type: vllm, model_name: m, base_url: "http://127.0.0.1:${PORT}/v1"}]}
        root: p
    """))
    model = build_chat_model(cfg["backend"], cfg["backend_kwargs"])
    assert model.complete([{"role": "user", "content": "hi"}]).text == "pooled"
    model.close()


def test_toml_has_the_same_structure(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL", "gpt-4o")
    cfg = load_config_file(write(tmp_path, """
        root = "main"
        [backends.main]
        type = "openai"
        model_name = "${MODEL}"
        [limits]
        max_seconds = 60
    """, "deeprecall.toml"))
    assert cfg == {"backend": "openai", "backend_kwargs": {"model_name": "gpt-4o"}, "max_seconds": 60}


def test_seed_004_list_form_and_hybrid(tmp_path):
    cfg = load_config_file(write(tmp_path, """
        backends:
          - name: thinker
            type: anthropic
            config: {model_name: claude-sonnet-4-6}
          - name: doer
            type: openai
            config: {model_name: gpt-4o-mini}
        root: {type: hybrid, reasoner: thinker, executor: doer}
    """))
    assert cfg["backend"] == "hybrid"
    assert cfg["backend_kwargs"]["reasoner"] == {"backend": "anthropic", "model_name": "claude-sonnet-4-6"}
    assert cfg["backend_kwargs"]["executor"] == {"backend": "openai", "model_name": "gpt-4o-mini"}


def test_config_field_names_pass_through(tmp_path):
    cfg = load_config_file(write(tmp_path, "backend: vllm\nbackend_kwargs: {model_name: m}\nmax_tokens: 5000\n"))
    assert cfg == {"backend": "vllm", "backend_kwargs": {"model_name": "m"}, "max_tokens": 5000}


def test_prompt_settings_are_top_level_fields(tmp_path):
    """docs/configuration.md documents prompt_style and ground_first_turn at the top level."""
    cfg = load_config_file(write(tmp_path, "backend: vllm\nbackend_kwargs: {model_name: m}\nprompt_style: compact\nground_first_turn: false\n"))
    assert DeepRecallConfig.build(**cfg).prompt_style == "compact"
    assert cfg["ground_first_turn"] is False


def test_a_lone_backend_is_the_root(tmp_path):
    cfg = load_config_file(write(tmp_path, "backends:\n  only: {type: groq, model_name: llama-3.3-70b-versatile}\n"))
    assert cfg["backend"] == "groq"


def test_interpolation_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.setenv("NUM_KEY", "12345")
    cfg = load_config_file(write(tmp_path, """
        backend: openai
        backend_kwargs:
          model_name: "gpt-${EMPTY:-4o}"
          api_key: "${NUM_KEY}"
          default_headers: {X-Price: "$$5"}
    """))
    kwargs = cfg["backend_kwargs"]
    assert kwargs["model_name"] == "gpt-4o" and kwargs["api_key"] == "12345" and kwargs["default_headers"]["X-Price"] == "$5"


@pytest.mark.parametrize(("text", "match"), [
    ("backend: openai\nbackend_kwargs: {api_key: '${NOPE_NOT_SET}'}\n", r"backend_kwargs.api_key uses \$\{NOPE_NOT_SET\}"),
    ("colour: red\n", "unknown settings"),
    ("- a\n- b\n", "mapping"),
    ("limits: {max_apples: 3}\n", "limits takes only"),
    ("root: {model_name: x}\n", "type"),
    ("backend: openai\nroot: {type: anthropic}\n", "set twice"),
    ("backends: {a: {type: openai}}\npools: {a: {members: []}}\n", "declared twice"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_errors_name_the_place_and_the_fix(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config_file(write(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "nope.yaml")


def test_the_example_in_the_docs_loads(tmp_path, monkeypatch):
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-doc-example")
    cfg = load_config_file(write(tmp_path, example))
    assert cfg["backend"] == "pool" and len(cfg["backend_kwargs"]["members"]) == 3
    assert cfg["backend_kwargs"]["members"][2]["base_url"] == "http://gpu-box:8000/v1"
    assert cfg["other_backends"] == ["ollama", "anthropic"] and cfg["max_cost_usd"] == 0.5
    assert cfg["environment"] == "docker" and cfg["store"]["type"] == "chroma"
