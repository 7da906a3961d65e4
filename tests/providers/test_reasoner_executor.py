"""hybrid: the reasoner is the root model, the executor the default sub-model."""

from __future__ import annotations

import pytest

from deeprecall.errors import ConfigError
from deeprecall.providers import build_chat_model, expand_hybrid
from tests.providers.conftest import MSGS

HYBRID = {"reasoner": {"backend": "anthropic", "model_name": "claude-sonnet-4-6"},
          "executor": {"backend": "openai", "model_name": "gpt-4o-mini"}}


def test_expand_hybrid_as_root_puts_the_executor_first_among_sub_models():
    backend, kwargs, others, other_kwargs = expand_hybrid("hybrid", HYBRID, ["ollama"], [{"model_name": "llama3.2"}])
    assert (backend, kwargs) == ("anthropic", {"model_name": "claude-sonnet-4-6"})
    assert others == ["openai", "ollama"] and other_kwargs[0] == {"model_name": "gpt-4o-mini"}


def test_expand_hybrid_as_a_sub_backend_adds_both_models():
    backend, _, others, _ = expand_hybrid("openai", {"model_name": "gpt-4o"}, ["hybrid"], [HYBRID])
    assert backend == "openai" and others == ["anthropic", "openai"]


def test_non_hybrid_configs_pass_through():
    assert expand_hybrid("openai", {"model_name": "x"}, None, None) == ("openai", {"model_name": "x"}, [], [])


def test_hybrid_model_reasons_with_one_and_executes_with_the_other(llm):
    s = llm({"thinker": lambda r: "plan", "doer": lambda r: "done"})
    m = build_chat_model("hybrid", {"reasoner": {"backend": "vllm", "model_name": "thinker", "base_url": s.base_url},
                                    "executor": {"backend": "vllm", "model_name": "doer", "base_url": s.base_url}})
    assert m.model_name == "thinker" and m.complete(MSGS).text == "plan"
    assert m.sub_model.model_name == "doer" and m.sub_model.complete(MSGS).text == "done"
    m.close()


@pytest.mark.parametrize("kwargs", [{}, {"reasoner": HYBRID["reasoner"]}, {**HYBRID, "extra": 1},
                                    {"reasoner": {"backend": "hybrid"}, "executor": HYBRID["executor"]}])
def test_hybrid_config_errors(kwargs):
    with pytest.raises(ConfigError, match="hybrid"):
        build_chat_model("hybrid", kwargs)


def test_mismatched_sub_backend_lists_are_refused():
    with pytest.raises(ConfigError, match="same length"):
        expand_hybrid("openai", {}, ["a", "b"], [{}])
