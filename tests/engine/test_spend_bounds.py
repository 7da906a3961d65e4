"""Spend is bounded by default: max_sub_calls, max_llm_calls and max_tokens hold without the user setting them,
and a batch of sub-calls that would cross a limit is refused whole, before any of its calls is sent."""

from __future__ import annotations

from collections.abc import Callable

from deeprecall import DeepRecallConfig
from deeprecall.events import AnswerEvent, LimitTripped, QueryStarted
from deeprecall.testing.scripted_server import ChatRequest
from tests.conftest import ROOT, SUB
from tests.engine.test_query import repl

ATTACK = repl('answer["content"] = "draft"\nfor i in range(100000):\n    llm_query(f"summarise part {i}")')
EVIDENCE = "Answer the question from these documents only"


def _root(code: str) -> Callable[[ChatRequest], str]:
    def root(request: ChatRequest) -> str:
        if request.messages[-1]["content"].startswith(EVIDENCE):
            return "answered from the evidence"
        return code
    return root


def test_the_defaults_bound_calls_and_tokens():
    config = DeepRecallConfig(backend_kwargs={"model_name": "m"})
    assert (config.max_sub_calls, config.max_llm_calls, config.max_tokens) == (100, 150, 1_000_000)
    assert config.sub_concurrency is None  # adaptive


def test_a_sub_call_loop_from_a_poisoned_document_ends_at_max_sub_calls_by_default(llm, make_engine):
    """The attack in issue 12: the model is made to write `for i in range(100000): llm_query(...)`. With no limit
    set by the user, the 101st sub-call is refused, the cell ends, and the query ends within a second."""
    server = llm({ROOT: _root(ATTACK), SUB: lambda r: "ok"})
    events: list = []
    result = make_engine(server).query("What did Acme do?", on_event=events.append)
    assert result.error == "max_sub_calls" and "max_sub_calls=100" in (result.error_message or "")
    assert len(server.calls_for(SUB)) == 100 and result.usage.sub_calls == 100
    assert result.answer == "draft"
    started = next(e for e in events if isinstance(e, QueryStarted))
    assert started.limits["max_sub_calls"] == 100 and started.limits["max_llm_calls"] == 150
    tripped = [e for e in events if isinstance(e, LimitTripped)]
    assert [e.reason for e in tripped] == ["max_sub_calls"]
    answered = events[-1]
    assert isinstance(answered, AnswerEvent)
    assert answered.t - tripped[0].t < 1.5, "the query went on long after the limit tripped"
    assert "max_sub_calls" in result.steps[-1].output  # the refusal the model's code saw


def test_a_batch_that_would_cross_max_sub_calls_is_refused_before_any_call(llm, make_engine):
    code = repl('answer["content"] = "draft"\nfirst = llm_query_batched(["a"] * 8)\n'
                'try:\n    llm_query_batched(["b"] * 5)\nexcept ToolError as e:\n    print("refused:", e)')
    server = llm({ROOT: _root(code), SUB: lambda r: "ok " + r.last_user})
    result = make_engine(server, max_sub_calls=10).query("q")
    assert result.error == "max_sub_calls"
    assert [r.last_user for r in server.calls_for(SUB)] == ["a"] * 8  # none of the second batch was sent
    assert "refused: 5 more sub-calls would make 13, over max_sub_calls=10" in result.steps[0].output


def test_max_llm_calls_counts_root_turns_and_sub_calls_and_makes_no_call_past_it(llm, make_engine):
    server = llm({ROOT: _root(ATTACK), SUB: lambda r: "ok"})
    result = make_engine(server, max_llm_calls=5).query("q")
    assert result.error == "max_llm_calls"
    assert len(server.calls_for(ROOT)) == 1 and len(server.calls_for(SUB)) == 4  # no evidence call past the limit
    assert result.answer == "draft"


def test_sub_call_prompts_that_alone_would_cross_max_tokens_are_not_sent(llm, make_engine):
    code = repl('answer["content"] = "draft"\nllm_query_batched(["x" * 30000, "y" * 30000])')
    server = llm({ROOT: _root(code), SUB: lambda r: "ok"})
    result = make_engine(server, max_tokens=10_000).query("q")
    assert result.error == "max_tokens" and "would take the query past max_tokens=10000" in (result.error_message or "")
    assert server.calls_for(SUB) == []


def test_the_config_file_takes_the_new_limits(tmp_path):
    path = tmp_path / "deeprecall.yaml"
    path.write_text("root: {type: openai, model_name: m}\n"
                    "limits: {max_sub_calls: 7, max_llm_calls: 9, sub_concurrency: 4, max_tokens: null}\n")
    config = DeepRecallConfig.from_file(path)
    assert (config.max_sub_calls, config.max_llm_calls, config.sub_concurrency, config.max_tokens) == (7, 9, 4, None)


def test_a_loop_that_catches_the_refusal_is_ended_too(llm, make_engine):
    """The next attack: the loop catches ToolError and goes on. Every call after the trip is refused without
    spending anything, and after 50 refusals the cell's worker is killed, so the query ends now, not after
    100000 refusals (about 30 s here) or at max_seconds."""
    code = repl('answer["content"] = "draft"\nfor i in range(100000):\n    try:\n        llm_query(f"p {i}")\n'
                '    except ToolError:\n        pass')
    server = llm({ROOT: _root(code), SUB: lambda r: "ok"})
    events: list = []
    result = make_engine(server, max_sub_calls=10).query("q", on_event=events.append)
    assert result.error == "max_sub_calls" and len(server.calls_for(SUB)) == 10
    tripped = next(e for e in events if isinstance(e, LimitTripped))
    assert events[-1].t - tripped.t < 1.5
    assert result.answer == "answered from the evidence"  # the draft was written in the killed cell: the floor
