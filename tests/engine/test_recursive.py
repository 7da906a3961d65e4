"""Recursive sub-queries (max_depth > 1): rlm_query in the model's code runs a child query in its own
sandbox worker, within the parent's filters, deadline and limits, and its answer comes back as text.

One scripted server plays every level: a child's conversation is told apart by its question, which is
the prompt the parent passed to rlm_query (rlms's first user message: "Answer the following: <question>")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deeprecall import DeepRecallConfig
from deeprecall.errors import ConfigError
from deeprecall.testing.scripted_server import ChatRequest, Reply
from tests.conftest import ROOT, SUB, max_in_flight
from tests.engine.test_cancel import SLEEPY_CELL, group_alive, query_threads, wait_until
from tests.engine.test_query import repl

CHILD_MARK = "CHILD:"
PARENT_ASKS = repl(
    'secret = 42\n'
    f'x = rlm_query("{CHILD_MARK} In which city did Acme open a factory?")\n'
    'print("child said", x)\n'
    'answer["content"] = "Acme opened its factory in " + x\n'
    'answer["ready"] = True')
CHILD_SEARCHES = repl(
    'print("parent variable visible:", "secret" in globals())\n'
    'hits = search_db("Acme factory")\n'
    'found = [h for h in hits if "Lyon" in h["content"]]\n'
    'answer["content"] = "Lyon" if found else "unknown"\n'
    'answer["ready"] = True')


def question_of(request: ChatRequest) -> str:
    """The question this conversation answers (a child's is the parent's rlm_query prompt)."""
    return next((str(m["content"]) for m in request.messages if m["role"] == "user"), "")


def is_child(request: ChatRequest) -> bool:
    return CHILD_MARK in question_of(request)


def two_levels(parent: str, child: str | Reply) -> object:
    return lambda request: child if is_child(request) else parent


def test_a_child_query_searches_in_its_own_sandbox_and_the_parent_uses_its_answer(llm, make_engine):
    server = llm({ROOT: two_levels(PARENT_ASKS, CHILD_SEARCHES), SUB: lambda r: "unused"})
    events: list = []
    result = make_engine(server, max_depth=2).query("Where did Acme open a factory?", on_event=events.append)

    assert result.error is None and result.answer == "Acme opened its factory in Lyon"
    [child] = result.children
    assert child.answer == "Lyon" and child.error is None
    assert child.parent_query_id == result.query_id and child.depth == 2 and result.depth == 1
    assert result.steps[0].children == [child.query_id]
    assert "parent variable visible: False" in child.steps[0].output  # its own worker, not the parent's REPL
    assert [s.query for s in child.steps[0].searches] == [f"{CHILD_MARK} In which city did Acme open a factory?",
                                                          "Acme factory"]  # its question's, then the model's
    # Usage: the parent's is the tree's; the child's own stays visible on it.
    assert child.usage.root[ROOT].calls == 1 and result.usage.root[ROOT].calls == 2
    assert child.usage.search_calls == 2 and result.usage.search_calls == 3  # each query's first search + the child's
    assert not result.usage.sub  # rlm_query was not served as llm_query
    # The parent's answer rests on what the child retrieved.
    assert result.grounded and "doc1" in [s.id for s in result.sources]
    assert len(server.calls_for(ROOT)) == 2 and not server.calls_for(SUB)

    child_events = [e for e in events if e.parent_query_id == result.query_id]
    assert child_events[0].type == "query_started" and child_events[-1].type == "answer"
    assert all(e.query_id == child.query_id and e.depth == 2 for e in child_events)
    assert all(e.parent_query_id is None and e.depth == 1 for e in events if e.query_id == result.query_id)
    order = [(e.query_id, e.type) for e in events]
    cell = order.index((result.query_id, "cell_started"))
    assert cell < order.index((child.query_id, "query_started")) < order.index((child.query_id, "answer")) \
        < order.index((result.query_id, "cell_ended"))
    assert child_events[0].question.startswith(CHILD_MARK) and child_events[0].limits["max_depth"] == 2
    assert result.to_dict()["children"][0]["answer"] == "Lyon"


def test_a_streamed_tree_ends_with_the_top_answer_and_only_the_top_query_streams(llm, make_engine):
    engine = make_engine(llm({ROOT: two_levels(PARENT_ASKS, CHILD_SEARCHES)}), max_depth=2)
    with engine.stream("Where did Acme open a factory?") as stream:
        events = list(stream)
    assert stream.result is not None and events[-1].query_id == stream.query_id == stream.result.query_id
    assert events[-1].type == "answer" and events[-1].answer == "Acme opened its factory in Lyon"
    deltas = [e for e in events if e.type == "model_delta"]
    assert deltas and all(e.query_id == stream.query_id for e in deltas)  # the child's turn came whole
    assert [e.type for e in events if e.depth == 2 and e.type in ("query_started", "model_turn", "answer")] == [
        "query_started", "model_turn", "answer"]


def test_at_max_depth_rlm_query_is_an_llm_query(llm, make_engine):
    """max_depth=2: the child's own rlm_query is one sub-model call; max_depth=1 (the default): the parent's is."""
    child_asks_again = repl(f'y = rlm_query("{CHILD_MARK} deeper?")\nanswer["content"] = "child got " + y\n'
                            'answer["ready"] = True')
    server = llm({ROOT: two_levels(PARENT_ASKS, child_asks_again), SUB: lambda r: "Lyon"})
    result = make_engine(server, max_depth=2).query("Where did Acme open a factory?")
    assert result.answer == "Acme opened its factory in child got Lyon"
    [child] = result.children
    assert child.children == [] and child.usage.sub[SUB].calls == 1 and result.usage.sub[SUB].calls == 1

    flat = make_engine(server).query("Where did Acme open a factory?")
    assert flat.answer == "Acme opened its factory in Lyon" and flat.children == []
    assert flat.usage.sub[SUB].calls == 1 and flat.usage.root[ROOT].calls == 1


def test_three_levels_nest_and_the_top_usage_is_the_trees(llm, make_engine):
    middle = repl(f'y = rlm_query("GRAND: {CHILD_MARK} the city only")\nanswer["content"] = y\nanswer["ready"] = True')

    def root(request: ChatRequest) -> str:
        question = question_of(request)
        return CHILD_SEARCHES if "GRAND:" in question else middle if CHILD_MARK in question else PARENT_ASKS

    result = make_engine(llm({ROOT: root}), max_depth=3).query("Where did Acme open a factory?")
    assert result.answer == "Acme opened its factory in Lyon"
    [child] = result.children
    [grandchild] = child.children
    assert (grandchild.depth, grandchild.parent_query_id, grandchild.answer) == (3, child.query_id, "Lyon")
    assert [r.usage.root[ROOT].calls for r in (result, child, grandchild)] == [3, 2, 1]
    assert [r.usage.search_calls for r in (result, child, grandchild)] == [4, 3, 2]


def test_a_limit_of_the_tree_tripped_inside_a_child_ends_the_child_and_the_parent(llm, make_engine):
    """max_llm_calls=3 counts the whole tree: the parent's turn and two of the child's; the child's third turn
    is refused, the child ends, the parent's rlm_query raises ToolError and the parent ends with its draft."""
    parent = repl('answer["content"] = "draft: somewhere in France"\n'
                  f'try:\n    x = rlm_query("{CHILD_MARK} think hard")\nexcept ToolError as e:\n    print("refused:", e)')
    child_never_answers = lambda r: repl(f"n = {len(r.messages)}\nprint(n)")  # noqa: E731 - new code each turn
    server = llm({ROOT: lambda r: child_never_answers(r) if is_child(r) else parent})
    events: list = []
    started = time.monotonic()
    result = make_engine(server, max_depth=2, max_llm_calls=3, max_iterations=10).query("q", on_event=events.append)

    assert time.monotonic() - started < 10
    assert result.error == "max_llm_calls" and result.answer == "draft: somewhere in France"
    [child] = result.children
    assert child.error == "max_llm_calls" and child.usage.root[ROOT].calls == 2
    assert len(server.calls_for(ROOT)) == 3 and result.usage.root[ROOT].calls == 3  # not one call past the bound
    assert "refused:" in result.steps[0].output and "max_llm_calls" in result.steps[0].output
    limits = [(e.query_id, e.reason) for e in events if e.type == "limit"]
    assert (child.query_id, "max_llm_calls") in limits and (result.query_id, "max_llm_calls") in limits


@pytest.mark.parametrize("limit", ["max_tokens", "max_cost_usd"])
def test_the_trees_tokens_and_cost_count_a_childs_calls(llm, make_engine, limit):
    """The child's turn (~1,900 tokens) and its sub-call (10,010) stay under max_tokens=13,000 (and $0.013 at $1 per
    million tokens) on their own; with the parent's turn (~1,900) the tree crosses it at the child's sub-call.
    The child ends, then the parent."""
    parent = repl('answer["content"] = "draft"\n'
                  f'try:\n    rlm_query("{CHILD_MARK} read it all")\nexcept ToolError as e:\n    print("refused:", e)')
    child = repl('x = llm_query("read everything")\nanswer["content"] = x\nanswer["ready"] = True')
    server = llm({ROOT: two_levels(parent, child), SUB: lambda r: Reply(text="all read", usage=(10_000, 10))})
    price = {"pricing": {"input": 1e-6, "output": 1e-6}}
    overrides = {"max_tokens": 13_000} if limit == "max_tokens" else {
        "max_cost_usd": 0.013,
        "backend_kwargs": {"model_name": ROOT, "base_url": server.base_url, "max_retries": 0, **price},
        "other_backend_kwargs": [{"model_name": SUB, "base_url": server.base_url, "max_retries": 0, **price}]}
    result = make_engine(server, max_depth=2, **overrides).query("q")

    assert result.error == limit and result.answer == "draft"
    [kid] = result.children
    assert kid.error == limit and kid.usage.sub[SUB].calls == 1
    assert kid.usage.total_tokens < 13_000 < result.usage.total_tokens  # the child alone was under it
    assert len(server.calls_for(ROOT)) == 2  # nothing after the limit: no parent turn 2, no evidence call
    assert "refused:" in result.steps[0].output and limit in result.steps[0].output


def test_a_tree_limit_tripped_in_a_batch_ends_every_child_and_the_parent(llm, make_engine):
    parent = repl('answer["content"] = "draft"\n'
                  f'try:\n    rlm_query_batched(["{CHILD_MARK} a", "{CHILD_MARK} b", "{CHILD_MARK} c"])\n'
                  'except ToolError as e:\n    print("refused:", e)')
    child_never_answers = lambda r: repl(f"n = {len(r.messages)}\nprint(n)")  # noqa: E731 - new code each turn
    server = llm({ROOT: lambda r: child_never_answers(r) if is_child(r) else parent})
    result = make_engine(server, max_depth=2, max_llm_calls=5, max_iterations=10).query("q")

    assert result.error == "max_llm_calls" and result.answer == "draft"
    assert "refused:" in result.steps[0].output and "max_llm_calls" in result.steps[0].output
    assert len(result.children) == 3 and {c.error for c in result.children} == {"max_llm_calls"}
    assert len(server.calls_for(ROOT)) == 5 == result.usage.root_calls


def test_a_child_cannot_search_past_the_trees_max_search_calls(llm, make_engine):
    parent = repl('answer["content"] = "draft"\nsearch_db("Acme")\nsearch_db("Lyon")\n'
                  f'try:\n    rlm_query("{CHILD_MARK} search a lot")\nexcept ToolError as e:\n    print("refused:", e)')
    child = repl('for i in range(10):\n    search_db(f"query {i}")')
    server = llm({ROOT: two_levels(parent, child)})
    result = make_engine(server, max_depth=2, max_search_calls=3).query("q")
    assert result.error == "max_search_calls" and result.answer == "draft"
    [kid] = result.children
    assert kid.error == "max_search_calls"
    assert len(kid.steps[0].searches) == 2  # one search of the child's, then the tree's fourth was refused
    assert result.usage.search_calls == 2 + 2 + 2  # each query's first search, the parent's 2, the child's 1 + refused


def test_a_child_whose_sandbox_dies_is_a_tool_error_and_the_parent_goes_on(llm, make_engine):
    parent = by_parent_turn(
        repl('kept = "still here"\n'
             f'try:\n    rlm_query("{CHILD_MARK} crash")\nexcept ToolError as e:\n    print("child failed:", e)'),
        repl('answer["content"] = kept\nanswer["ready"] = True'))

    def root(request: ChatRequest) -> str:
        if not is_child(request):
            return parent(request)
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "not in the documents"
        return repl(f"import os\nos._exit({request.turn + 3})")  # every cell kills its worker

    result = make_engine(llm({ROOT: root}), max_depth=2).query("q")
    assert result.error is None and result.answer == "still here"  # the parent's worker and variables survived
    [child] = result.children
    assert child.error == "sandbox_failed"
    assert "child failed:" in result.steps[0].output and "sandbox_failed" in result.steps[0].output


def test_a_child_that_runs_out_of_turns_ends_alone(llm, make_engine):
    """max_iterations is each query's own: the child's two turns run out, its parent gets ToolError with the
    child's draft, and goes on to answer."""
    parent = by_parent_turn(
        repl(f'try:\n    rlm_query("{CHILD_MARK} ponder")\nexcept ToolError as e:\n    print("child failed:", e)'),
        repl('answer["content"] = "parent answered"\nanswer["ready"] = True'))
    child = lambda r: repl(f'answer["content"] = "child draft"\nn = {len(r.messages)}')  # noqa: E731

    server = llm({ROOT: lambda r: child(r) if is_child(r) else parent(r)})
    result = make_engine(server, max_depth=2, max_iterations=2).query("q")
    assert result.error is None and result.answer == "parent answered"
    assert result.children[0].error == "max_iterations" and result.children[0].usage.root_calls == 2
    assert "max_iterations" in result.steps[0].output and "its partial answer: child draft" in result.steps[0].output


def by_parent_turn(*replies: str) -> object:
    def script(request: ChatRequest) -> str:
        return replies[min(request.turn, len(replies) - 1)]
    return script


def test_a_child_searches_within_the_parents_enforced_filters(llm, make_engine):
    """Tenancy at depth 2: the child's searches carry the parent's enforced filters, and its own filters only
    narrow them (an $or naming another tenant returns that tenant's nothing)."""
    child = repl('a = search_db("Globex revenue CEO recall", top_k=10)\n'
                 'b = search_db("Globex", top_k=10, filters={"$or": [{"tenant": "globex"}, {"tenant": "acme"}]})\n'
                 'c = search_db("Globex", top_k=10, filters={"tenant": "globex"})\n'
                 'answer["content"] = ",".join(sorted({h["metadata"]["tenant"] for h in a + b + c}))\n'
                 'answer["ready"] = True')
    parent = repl(f'x = rlm_query("{CHILD_MARK} tell me about Globex")\nanswer["content"] = x\nanswer["ready"] = True')
    events: list = []
    result = make_engine(llm({ROOT: two_levels(parent, child)}), max_depth=2).query(
        "Tell me about Globex", filters={"tenant": "acme"}, on_event=events.append)

    assert result.answer == "acme"
    [kid] = result.children
    searches = [e for e in events if e.type == "search" and e.query_id == kid.query_id]
    assert len(searches) == 4  # its first search and the model's three
    assert all("acme" in str(e.filters) for e in searches)
    assert all(s.metadata["tenant"] == "acme" for s in [*kid.retrieved, *result.retrieved])
    assert searches[0].filters == {"tenant": "acme"}


def test_rlm_query_batched_runs_children_concurrently(llm, make_engine):
    """Four children whose one turn takes 0.6 s each: in sequence at least 2.4 s, concurrently about one turn."""
    parent = repl(f'xs = rlm_query_batched(["{CHILD_MARK} a", "{CHILD_MARK} b", "{CHILD_MARK} c", "{CHILD_MARK} d"])\n'
                  'answer["content"] = "|".join(xs)\nanswer["ready"] = True')

    def root(request: ChatRequest) -> Reply | str:
        if not is_child(request):
            return parent
        name = question_of(request).split(CHILD_MARK)[1].split("?")[0].split()[0]
        return Reply(text=repl(f'answer["content"] = "child {name}"\nanswer["ready"] = True'), delay=0.6)

    server = llm({ROOT: root})
    engine = make_engine(server, max_depth=2)
    engine.warm(4)
    started = time.monotonic()
    result = engine.query("q")
    seconds = time.monotonic() - started

    assert result.answer == "child a|child b|child c|child d"  # in the order of the prompts
    assert len(result.children) == 4 and len(result.steps[0].children) == 4
    child_calls = [r for r in server.calls_for(ROOT) if is_child(r)]
    assert max_in_flight(child_calls) == 4
    assert seconds < 2.0, f"four 0.6 s children took {seconds:.2f}s: not concurrent"


def test_the_parents_deadline_bounds_its_child(llm, make_engine):
    """The child's reply would take 20 s; the tree's max_seconds=2 ends the child and then the parent. (The cell
    waiting on the child is cut at the deadline, so the draft comes from the cell before it.)"""
    parent = repl('answer["content"] = "draft"') + "\n" + repl(f'x = rlm_query("{CHILD_MARK} slow")')  # two cells
    server = llm({ROOT: two_levels(parent, Reply(text="FINAL(late)", delay=20))})
    events: list = []
    started = time.monotonic()
    result = make_engine(server, max_depth=2, max_seconds=2).query("q", on_event=events.append)
    assert time.monotonic() - started < 6
    assert result.error == "max_seconds" and result.answer == "draft"
    # The parent's cell was cut at the deadline while the child's call was on the wire: the child is ended too
    # (by the deadline or by its parent's end, whichever comes first) and reports its answer event.
    wait_until(lambda: any(e.type == "answer" and e.depth == 2 for e in events), 3, "the child's answer event")
    ended = next(e for e in events if e.type == "answer" and e.depth == 2)
    assert ended.error in ("max_seconds", "cancelled") and ended.parent_query_id == result.query_id


def test_cancelling_the_parent_kills_its_childs_worker(llm, make_engine):
    parent = repl(f'x = rlm_query("{CHILD_MARK} sleep")')
    engine = make_engine(llm({ROOT: two_levels(parent, SLEEPY_CELL)}), max_depth=2)
    engine.warm(2)
    workers = [s._channel.pid for s in engine._pool._idle]  # the parent takes the first, its child the second
    assert len(workers) == 2
    stream = engine.stream("q")
    for event in stream:
        if event.type == "cell_started" and event.depth == 2:
            break
    stream.close()
    wait_until(lambda: not any(group_alive(w) for w in workers), 1.5, "the parent's and the child's workers killed")
    wait_until(lambda: not [t for t in query_threads() if t.startswith("deeprecall-query")], 3, "the query's thread ended")


def test_cancelling_after_a_child_ended_sends_that_child_no_more_events(llm, make_engine):
    parent = by_parent_turn(repl(f'x = rlm_query("{CHILD_MARK} q")\nprint(x)'), Reply(text="FINAL(late)", delay=1.5))
    engine = make_engine(llm({ROOT: lambda r: CHILD_SEARCHES if is_child(r) else parent(r)}), max_depth=2)
    events: list = []
    engine.subscribe(events.append)
    stream = engine.stream("q")
    for event in stream:
        if event.type == "cell_ended" and event.depth == 1:
            break  # the child has answered; the parent's second turn is next
    stream.close()
    # (the parent's turn 2 is waiting for its first byte: its thread ends when that call returns, within 1.5 s)
    wait_until(lambda: any(e.type == "answer" and e.depth == 1 for e in events), 5, "the parent's answer event")
    child_events = [e.type for e in events if e.depth == 2]
    assert child_events[-1] == "answer" and "limit" not in child_events
    assert events[-1].error == "cancelled"


def test_max_depth_in_a_config_file_and_its_bounds(tmp_path: Path):
    config_file = tmp_path / "deeprecall.yaml"
    config_file.write_text("backend: vllm\nbackend_kwargs: {model_name: m}\nlimits: {max_depth: 3}\n")
    assert DeepRecallConfig.from_file(config_file).max_depth == 3
    assert DeepRecallConfig(backend_kwargs={"model_name": "m"}).max_depth == 1
    with pytest.raises(ConfigError, match="max_depth"):
        DeepRecallConfig.build(backend_kwargs={"model_name": "m"}, max_depth=0)
