"""The events a query emits (deeprecall/events.py): their order and content, read by a subscriber
through the real engine, the scripted LLM server, the rlms loop, the sandbox and Chroma."""

from __future__ import annotations

import logging
from typing import Any

from deeprecall import DeepRecall
from deeprecall.events import AnswerEvent, event_from_json, event_to_json
from deeprecall.testing.function_model import FunctionChatModel
from deeprecall.testing.scripted_server import Reply, by_turn
from tests.conftest import ROOT, SUB, make_store
from tests.engine.test_query import repl

SEARCH_AND_BATCH = repl('hits = search_db("Acme revenue", filters={"year": 2023})\n'
                        'print([h["id"] for h in hits])\n'
                        'notes = llm_query_batched(["first " + hits[0]["id"], "second " + hits[0]["id"]])\n'
                        'print(notes)', prose="Searching.")
CRASH = repl('answer["content"] = "partial: Acme grew 12%"\nimport os\nos._exit(3)')
DRAFT_AGAIN = repl('answer["content"] = "partial: Acme grew 12%"\nprint("drafted")')


def kinds(events: list[Any]) -> list[str]:
    return [e.type for e in events if e.type != "model_delta"]


def test_a_multi_turn_query_emits_every_step_in_order(llm, make_engine):
    """Turn 1 searches and runs a batch of two sub-calls; turn 2's cell kills its worker (a restart);
    turn 3 drafts; max_iterations=3 ends the query. The tenant's filter is enforced on every search."""
    server = llm({ROOT: by_turn(SEARCH_AND_BATCH, CRASH, DRAFT_AGAIN), SUB: lambda r: "note on " + r.last_user})
    engine = make_engine(server, max_iterations=3, filters={"tenant": "acme"})
    events: list[Any] = []
    result = engine.query("How much did Acme's revenue grow?", on_event=events.append)

    assert kinds(events) == [
        "query_started", "search",                                   # the engine's own first search, step 0
        "model_turn", "cell_started", "search", "sub_call", "sub_call", "cell_ended",
        "model_turn", "cell_started", "cell_ended", "worker_restarted",
        "model_turn", "cell_started", "cell_ended",
        "limit", "answer",
    ]
    started, first_search = events[0], events[1]
    assert started.question == "How much did Acme's revenue grow?" and started.root_model == ROOT
    assert started.sub_models == [SUB] and started.limits["max_iterations"] == 3
    assert started.filters == {"tenant": "acme"} and started.backend == "vllm" and started.environment == "local"
    assert started.data_source.startswith("chroma:docs-")
    assert first_search.step == 0 and first_search.filters == {"tenant": "acme"}
    assert set(first_search.hit_ids) == {"doc0", "doc1", "doc4"}  # acme's documents only

    by_type: dict[str, list[Any]] = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e)
    model_search = by_type["search"][1]
    assert model_search.step == 1 and model_search.query == "Acme revenue" and model_search.hit_ids == ["doc0"]
    assert model_search.filters == {"$and": [{"tenant": "acme"}, {"year": 2023}]}  # effective: tenant's AND model's
    assert len(model_search.scores) == 1 and model_search.ms > 0 and model_search.error is None
    assert sorted(s.prompt_preview for s in by_type["sub_call"]) == ["first doc0", "second doc0"]
    assert {s.response_preview for s in by_type["sub_call"]} == {"note on first doc0", "note on second doc0"}
    assert all(s.model == SUB and s.input_tokens > 0 and s.step == 1 for s in by_type["sub_call"])

    turns = by_type["model_turn"]
    assert [t.step for t in turns] == [1, 2, 3] and turns[0].text == SEARCH_AND_BATCH
    assert turns[0].prompt == server.calls_for(ROOT)[0].messages  # what the model was sent, as sent
    assert turns[0].input_tokens > 0 and turns[0].finish_reason == "stop" and turns[0].purpose == "turn"
    deltas = [e for e in events if e.type == "model_delta" and e.step == 1]
    assert "".join(d.text for d in deltas) == SEARCH_AND_BATCH  # streamed, or one delta per turn: the whole reply
    assert events.index(deltas[-1]) < events.index(turns[0])

    cells = by_type["cell_started"]
    assert [c.cell for c in cells] == [1, 2, 3] and "llm_query_batched" in cells[0].code
    ended = by_type["cell_ended"]
    assert "['doc0']" in ended[0].stdout and ended[0].error is None and ended[0].seconds > 0
    assert ended[1].error is not None and "sandbox worker failed" in ended[1].error
    assert "drafted" in ended[2].stdout
    assert by_type["worker_restarted"][0].step == 2

    limit, answer = events[-2], events[-1]
    assert limit.reason == "max_iterations" and "max_iterations=3" in limit.message
    assert isinstance(answer, AnswerEvent) and answer.result is result
    assert answer.answer == result.answer == "partial: Acme grew 12%" and answer.error == "max_iterations"
    assert answer.usage["total_tokens"] == result.usage.total_tokens and answer.usage["search_calls"] == 2
    assert [s["id"] for s in answer.sources] == [s.id for s in result.sources]

    assert {e.query_id for e in events} == {result.query_id} and len(result.query_id) == 32
    times = [e.t for e in events]
    assert times == sorted(times) and times[-2] <= result.seconds <= times[-1]


def test_events_round_trip_through_json_lines(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH_AND_BATCH, repl('answer["content"] = "12%"\nanswer["ready"] = True')),
                  SUB: lambda r: "ok"})
    events: list[Any] = []
    make_engine(server).query("How much did Acme's revenue grow?", on_event=events.append)
    for event in events:
        back = event_from_json(event_to_json(event))
        assert back.type == event.type and back.query_id == event.query_id and back.t == event.t
    assert event_from_json(event_to_json(events[-1])).answer == "12%"


def test_a_failed_search_is_reported_and_recorded(llm, make_engine):
    """A store that fails: the model sees the error, the event and ``SearchCall.error`` say what failed."""
    store = make_store()
    server = llm({ROOT: by_turn(repl('try:\n    search_db("boom")\nexcept Exception as e:\n    print("failed:", e)'),
                                repl('answer["content"] = "no luck"\nanswer["ready"] = True'))})
    engine = make_engine(server, vectorstore=store)
    original = store.search

    def search(query: str, top_k: int, filters: Any = None) -> Any:
        if query == "boom":
            raise RuntimeError("the store is down (password=hunter2secret)")
        return original(query, top_k, filters)

    store.search = search  # type: ignore[method-assign]
    events: list[Any] = []
    result = engine.query("q", on_event=events.append)
    failed = [e for e in events if e.type == "search" and e.query == "boom"]
    assert len(failed) == 1 and failed[0].hit_ids == [] and "RuntimeError: the store is down" in failed[0].error
    assert "hunter2secret" not in failed[0].error  # secrets never reach events
    recorded = [s for step in result.steps for s in step.searches if s.query == "boom"]
    assert len(recorded) == 1 and recorded[0].error == failed[0].error
    assert "failed:" in server.calls_for(ROOT)[1].text


def test_a_subscriber_that_raises_is_dropped_and_the_query_goes_on(llm, make_engine, caplog):
    server = llm({ROOT: by_turn(SEARCH_AND_BATCH, repl('answer["content"] = "12%"\nanswer["ready"] = True')),
                  SUB: lambda r: "ok"})
    seen: list[str] = []
    good: list[Any] = []

    def broken(event: Any) -> None:
        seen.append(event.type)
        if event.type == "search":
            raise ValueError("secret prompt text sk-abcdefgh12345678")

    engine = make_engine(server)
    engine.subscribe(broken)
    with caplog.at_level(logging.WARNING, logger="deeprecall"):
        result = engine.query("q", on_event=good.append)
    assert result.answer == "12%" and result.error is None
    assert seen == ["query_started", "search"]  # dropped after it raised
    assert good[-1].type == "answer" and len([e for e in good if e.type == "search"]) == 2
    assert "ValueError" in caplog.text and "sk-abcdefgh" not in caplog.text


def test_engine_subscribers_see_every_query_and_can_unsubscribe(llm, make_engine):
    server = llm({ROOT: by_turn(repl('answer["content"] = "done"\nanswer["ready"] = True'))})
    seen: list[Any] = []
    engine = make_engine(server)
    unsubscribe = engine.subscribe(seen.append)
    first, second = engine.query("one"), engine.query("two")
    unsubscribe()
    engine.query("three")
    answers = [e for e in seen if e.type == "answer"]
    assert [a.query_id for a in answers] == [first.query_id, second.query_id]


def test_without_subscribers_no_delta_is_requested(llm, make_engine):
    """A plain query() sends non-streaming requests: the hot path stays as it was."""
    server = llm({ROOT: by_turn(repl('answer["content"] = "done"\nanswer["ready"] = True'))})
    make_engine(server).query("q")
    assert not server.calls_for(ROOT)[0].body.get("stream")


def test_subscribers_that_need_no_deltas_keep_the_plain_call(llm, make_engine, tmp_path):
    """Trace files and spans record whole turns: attached alone they do not make the model stream.
    A subscriber that wants deltas does, and then every subscriber sees them."""
    class WholeTurns(list):
        wants_deltas = False

        def __call__(self, event: Any) -> None:
            self.append(event)

    server = llm({ROOT: by_turn(repl('answer["content"] = "done"\nanswer["ready"] = True'))})
    whole, everything = WholeTurns(), []
    engine = make_engine(server, trace_dir=str(tmp_path))
    engine.query("q", on_event=whole)
    assert not server.calls_for(ROOT)[0].body.get("stream")
    assert "model_delta" not in {e.type for e in whole} and "model_turn" in {e.type for e in whole}
    engine.query("q", on_event=everything.append)
    assert server.calls_for(ROOT)[1].body.get("stream") is True
    assert "model_delta" in {e.type for e in everything}


def test_a_model_object_streams_deltas_and_answers_from_the_evidence():
    """``chat_model=`` takes a ``ChatModel`` object. A query whose loop ends without an answer gets one
    more root call, reported as a ``ModelTurn`` with ``purpose="evidence"``."""
    def reply(messages: list[dict[str, str]]) -> str:
        if messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "Lyon"
        return repl(f"x = {len(messages)}")

    model = FunctionChatModel(reply, model_name="fn-root", chunk=5)
    events: list[Any] = []
    with DeepRecall(make_store(), chat_model=model, max_iterations=2, subscribers=[events.append],
                    environment_kwargs={"pool_size": 1}) as engine:
        result = engine.query("Where is the new factory?")
    assert result.answer == "Lyon" and result.error == "max_iterations" and model.closed
    turns = [e for e in events if e.type == "model_turn"]
    assert [(t.step, t.purpose) for t in turns] == [(1, "turn"), (2, "turn"), (2, "evidence")]
    deltas = [e.text for e in events if e.type == "model_delta" and e.step == 1]
    assert len(deltas) > 1 and all(len(d) <= 5 for d in deltas) and "".join(deltas) == turns[0].text
    assert kinds(events)[-3:] == ["limit", "model_turn", "answer"]  # the limit, then the evidence call


def test_a_query_that_raises_still_ends_with_an_answer_event(llm, make_engine):
    """The engine's own first search failing raises from query(), as before; subscribers still get
    the closing AnswerEvent (trace files and spans are closed), with error="exception"."""
    store = make_store()
    server = llm({ROOT: by_turn(repl("print(1)"))})
    engine = make_engine(server, vectorstore=store)

    def search(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store down")

    store.search = search  # type: ignore[method-assign]
    events: list[Any] = []
    try:
        engine.query("q", on_event=events.append)
    except RuntimeError as e:
        assert str(e) == "store down"
    else:
        raise AssertionError("the query should have raised")
    assert kinds(events) == ["query_started", "search", "answer"]
    assert events[-1].error == "exception" and "RuntimeError: store down" in events[-1].error_message
    assert server.requests == []


def test_sub_call_failures_are_events_with_their_error(llm, make_engine):
    server = llm({ROOT: by_turn(repl('r = llm_query_batched(["a", "b"])\nprint(r)'),
                                repl('answer["content"] = "done"\nanswer["ready"] = True')),
                  SUB: lambda r: Reply(status=400, text="bad prompt") if r.last_user == "b" else "fine"})
    events: list[Any] = []
    make_engine(server).query("q", on_event=events.append)
    subs = {e.prompt_preview: e for e in events if e.type == "sub_call"}
    assert subs["a"].error is None and subs["a"].response_preview == "fine"
    assert subs["b"].error is not None and "400" in subs["b"].error and subs["b"].response_preview == ""


def test_a_hung_cell_is_a_sandbox_hung_error_and_ends_the_query_as_cell_timeout(llm, make_engine):
    """The worker ignores its 1 s cell timeout: the host kills it (SandboxHung), the cell ends with that
    error, no worker is restarted, and the query ends as cell_timeout."""
    from deeprecall.errors import SandboxError, SandboxHung

    assert issubclass(SandboxHung, SandboxError)
    hang = repl('while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass')
    events: list[Any] = []
    result = make_engine(llm({ROOT: by_turn(hang)}), environment_kwargs={"pool_size": 1, "cell_timeout": 1}).query(
        "q", on_event=events.append)
    assert result.error == "cell_timeout"
    # no draft: after the limit, one evidence call answers from the retrieved documents
    assert kinds(events)[-5:] == ["cell_started", "cell_ended", "limit", "model_turn", "answer"]
    ended, limit, evidence = [e for e in events if e.type in ("cell_ended", "limit", "model_turn")][-3:]
    assert "did not answer within" in ended.error and limit.reason == "cell_timeout" and evidence.purpose == "evidence"
    assert "worker_restarted" not in kinds(events)
