"""hybrid: the reasoner is the root model, the executor the default sub-model."""

from __future__ import annotations

import pytest

from deeprecall.errors import ConfigError
from deeprecall.providers import build_chat_model, expand_hybrid
from deeprecall.testing.scripted_server import by_turn
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


# ---- One mechanism (assemble), exercised by the engine both ways: configured and per query ------------------

CODE = 'Working.\n```repl\nanswer["content"] = llm_query("do the work")\nanswer["ready"] = True\n```'


def _hybrid_on(server, reasoner="reasoner", executor="executor"):
    return {"reasoner": {"backend": "vllm", "model_name": reasoner, "base_url": server.base_url, "max_retries": 0},
            "executor": {"backend": "vllm", "model_name": executor, "base_url": server.base_url, "max_retries": 0}}


def test_assemble_takes_a_hybrid_apart_as_root_and_as_sub_model(llm):
    from deeprecall.providers import assemble

    s = llm(lambda r: "x")
    plain = build_chat_model("vllm", {"model_name": "plain", "base_url": s.base_url})
    root, subs = assemble(build_chat_model("hybrid", _hybrid_on(s)), [plain])
    assert root.model_name == "reasoner" and [m.model_name for m in subs] == ["executor", "plain"]
    root2, subs2 = assemble(plain, [build_chat_model("hybrid", _hybrid_on(s, "r2", "e2"))])
    assert root2 is plain and [m.model_name for m in subs2] == ["r2", "e2"]
    for m in {id(m): m for m in [root, *subs, *subs2]}.values():
        m.close()


def test_a_configured_hybrid_runs_sub_calls_on_its_executor(llm, make_engine):
    server = llm({"reasoner": by_turn(CODE), "executor": lambda r: "done by executor"})
    engine = make_engine(server, backend="hybrid", backend_kwargs=_hybrid_on(server), subs=())
    result = engine.query("q")
    assert result.answer == "done by executor" and result.error is None
    assert list(result.usage.root) == ["reasoner"] and list(result.usage.sub) == ["executor"]


def test_a_per_query_hybrid_runs_that_querys_sub_calls_on_its_own_executor(llm, make_engine):
    """query(backend="hybrid") used to build the executor and never call it: sub-calls went to the engine's
    default sub-model. Now the executor built for the query is its default sub-model; other queries keep theirs."""
    server = llm({"root-model": by_turn(CODE), "sub-model": lambda r: "done by the engine's sub-model",
                  "reasoner": by_turn(CODE), "executor": lambda r: "done by the query's executor"})
    engine = make_engine(server)
    switched = engine.query("q", backend="hybrid", backend_kwargs=_hybrid_on(server))
    assert switched.answer == "done by the query's executor" and switched.error is None
    assert list(switched.usage.root) == ["reasoner"] and list(switched.usage.sub) == ["executor"]
    plain = engine.query("q")
    assert plain.answer == "done by the engine's sub-model" and list(plain.usage.sub) == ["sub-model"]
    assert len(server.calls_for("executor")) == 1 and len(server.calls_for("sub-model")) == 1
