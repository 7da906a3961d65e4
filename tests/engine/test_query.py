"""End-to-end queries: real openai client, rlms loop, worker process, search
bridge and Chroma. Only the LLM is scripted (tests/conftest.py)."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor

import pytest

from deeprecall.testing.scripted_server import ChatRequest, Reply, by_turn
from tests.conftest import ROOT, SUB, make_store, max_in_flight


def repl(code: str, prose: str = "Next step.") -> str:
    return f"{prose}\n```repl\n{code}\n```"


SEARCH_AND_SUMMARISE = repl(
    'hits = search_db("Acme revenue growth 2023")\n'
    'print([h["id"] for h in hits])\n'
    'summary = llm_query("Summarise: " + hits[0]["content"])\n'
    "print(summary)"
)
SUBMIT = repl('answer["content"] = "Acme revenue grew 12% in 2023."\nanswer["sources"] = [hits[0]["id"]]\nanswer["ready"] = True')


def test_two_turn_answer_with_sources(llm, make_engine):
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    result = make_engine(server).query("How much did Acme's revenue grow in 2023?")

    assert result.error is None
    assert result.answer == "Acme revenue grew 12% in 2023."
    assert [s.id for s in result.sources] == ["doc0"]
    assert "12%" in result.sources[0].content and result.sources[0].metadata["tenant"] == "acme"
    assert len(result.steps) == 2
    assert result.steps[0].searches[0].result_ids[0] == "doc0"
    assert "Revenue up 12%." in result.steps[0].output
    assert result.steps[0].sub_calls[0].model == SUB
    assert result.usage.root[ROOT].calls == 2 and result.usage.sub[SUB].calls == 1
    assert result.usage.root[ROOT].input_tokens > 0
    assert result.usage.search_calls == 2  # the engine searched the question before turn 1, the model once
    # The model saw the REPL output of turn 1 in turn 2.
    assert "Revenue up 12%." in server.calls_for(ROOT)[1].text


def test_uncited_sources_are_the_retrieved_documents_that_contain_the_answer(llm, make_engine):
    submit = repl('answer["content"] = "It grew 12% in 2023."\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, submit), SUB: lambda r: "ok"})
    result = make_engine(server).query("Acme revenue?")
    assert [s.id for s in result.sources] == ["doc0"] and result.grounded
    assert len(result.retrieved) >= 5 and "doc0" in {s.id for s in result.retrieved}


def test_an_answer_no_retrieved_document_contains_is_not_passed_off_as_sourced(llm, make_engine):
    submit = repl('answer["content"] = "Revenue tripled thanks to Mars colonies."\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, submit), SUB: lambda r: "ok"})
    result = make_engine(server).query("Acme revenue?")
    assert result.answer == "Revenue tripled thanks to Mars colonies." and result.error is None
    assert result.sources == [] and not result.grounded
    assert len(result.retrieved) >= 5


def test_final_in_reply_text_ends_the_query(llm, make_engine):
    final = "I have what I need.\nFINAL(Acme's revenue grew 12% (in 2023).)"
    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, final), SUB: lambda r: "ok"})
    result = make_engine(server, max_iterations=10).query("Acme revenue?")
    assert result.error is None
    assert result.answer == "Acme's revenue grew 12% (in 2023)."
    assert result.usage.root_calls == 2  # not driven on to max_iterations


def test_final_var_reads_the_variable_from_the_repl(llm, make_engine):
    build = repl('result_text = "Globex hired Hank Scorpio in 2021."')
    server = llm({ROOT: by_turn(build, "Done: FINAL_VAR(result_text)")})
    result = make_engine(server).query("Who did Globex hire?")
    assert result.answer == "Globex hired Hank Scorpio in 2021."
    assert result.usage.root_calls == 2


def test_drafted_answer_without_ready_flag_is_not_driven_to_max_iterations(llm, make_engine):
    draft = repl('answer["content"] = "Lyon"')
    server = llm({ROOT: by_turn(draft, "The factory is in Lyon; that is my answer.")})
    result = make_engine(server, max_iterations=12).query("Where is the new Acme factory?")
    assert result.answer == "Lyon" and result.error is None
    assert result.usage.root_calls == 2


def test_python_fenced_blocks_run_when_no_repl_block_is_given(llm, make_engine):
    code = '```python\nanswer["content"] = str(len(search_db("widget")))\nanswer["ready"] = True\n```'
    server = llm({ROOT: by_turn(code)})
    assert make_engine(server).query("How many widget hits?").answer == "5"


def test_llm_query_batched_runs_concurrently(llm, make_engine):
    batch = repl('outs = llm_query_batched([f"item {i}" for i in range(6)])\n'
                 'answer["content"] = "|".join(outs)\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(batch), SUB: lambda r: Reply(text="seen " + r.last_user, delay=0.4)})
    result = make_engine(server).query("batch please")
    assert result.answer == "|".join(f"seen item {i}" for i in range(6))
    assert result.usage.sub[SUB].calls == 6
    assert max_in_flight(server.calls_for(SUB)) == 6  # all six were in flight together (the adaptive sub-call limit starts at 32)


def test_llm_query_picks_a_sub_model_by_name(llm, make_engine):
    code = repl('a = llm_query("hi")\nb = llm_query("hi", model="other-model")\n'
                'try:\n    llm_query("hi", model="nope")\nexcept ToolError as e:\n    c = str(e)\n'
                'answer["content"] = a + "/" + b + "/" + c\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(code), SUB: lambda r: "from-sub", "other-model": lambda r: "from-other"})
    result = make_engine(server, subs=(SUB, "other-model")).query("which model?")
    first, second, error = result.answer.split("/", 2)
    assert (first, second) == ("from-sub", "from-other")
    assert "unknown model 'nope'" in error and "other-model" in error


def test_root_model_answers_sub_calls_when_no_other_backend_is_configured(llm, make_engine):
    code = repl('answer["content"] = llm_query("sub question")\nanswer["ready"] = True')
    server = llm({ROOT: lambda r: "root says hi" if r.last_user == "sub question" else code})
    result = make_engine(server, subs=()).query("q")
    assert result.answer == "root says hi"
    assert result.usage.sub[ROOT].calls == 1 and result.usage.root[ROOT].calls == 1


@pytest.mark.security
@pytest.mark.parametrize(("model_filter", "expected"), [
    ({"tenant": "globex"}, "none"),                                     # ANDed with tenant=acme: nothing
    ({"$or": [{"tenant": "globex"}, {"tenant": "acme"}]}, "doc0,doc1,doc4"),  # narrowed to acme's documents
    ({"tenant": {"$in": ["globex", "acme"]}}, "doc0,doc1,doc4"),
    ({"tenant": {"$ne": "acme"}}, "none"),
    ({"topic": "finance"}, "doc0"),                                      # a filter that narrows works
], ids=["other-tenant", "or", "in", "ne", "narrower"])
def test_model_filters_cannot_widen_enforced_filters(llm, make_engine, model_filter, expected):
    code = repl(f'hits = search_db("revenue CEO factory", top_k=10, filters={model_filter!r})\n'
                'answer["content"] = ",".join(sorted(h["id"] for h in hits)) or "none"\n'
                'answer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    result = make_engine(server).query("Tell me everything", filters={"tenant": "acme"})
    assert result.error is None and result.answer == expected
    assert all(s.metadata["tenant"] == "acme" for s in result.sources)


def test_config_filters_and_query_filters_both_hold(llm, make_engine):
    code = repl('hits = search_db("revenue", top_k=10)\nanswer["content"] = ",".join(h["id"] for h in hits)\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    result = make_engine(server, filters={"tenant": "acme"}).query("q", filters={"topic": "finance"})
    assert result.answer == "doc0"


def test_model_filter_in_bad_form_is_refused_to_the_model(llm, make_engine):
    code = repl('try:\n    search_db("x", filters={"$where": "1"})\nexcept ToolError as e:\n    answer["content"] = str(e)\n'
                'answer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    assert "unknown operator '$where'" in make_engine(server).query("q").answer


def test_empty_store_still_answers(llm, make_engine):
    code = repl('hits = search_db("anything")\n'
                'answer["content"] = "no documents" if not hits else "found"\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    engine = make_engine(server, vectorstore=make_store("empty", docs=[]))
    result = engine.query("Is there anything?")
    assert result.answer == "no documents" and result.sources == [] and result.error is None


def test_context_describes_the_question_and_store(llm, make_engine):
    code = repl('answer["content"] = f\'{context["question"]}|{context["store"]["documents"]}|{context["store"]["metadata_keys"]}\'\n'
                'answer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    assert make_engine(server).query("What is here?").answer == "What is here?|5|['tenant', 'topic', 'year']"


def test_concurrent_queries_do_not_mix(llm, make_engine):
    def turn_1(request: ChatRequest) -> str:
        secret = request.text.split("marker-", 1)[1][:4]
        return repl(f'mine = "{secret}"\nhits = search_db("Acme")\nprint(len(hits))')

    turn_2 = repl('answer["content"] = mine + ":" + llm_query("echo " + mine)\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(turn_1, turn_2), SUB: lambda r: r.last_user.split()[-1]}, latency=0.05)
    engine = make_engine(server, environment_kwargs={"pool_size": 4})
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: engine.query(f"question marker-{i:04d}"), range(16)))
    for i, result in enumerate(results):
        assert result.answer == f"{i:04d}:{i:04d}", result.answer
        assert result.usage.root[ROOT].calls == 2 and result.usage.sub[SUB].calls == 1
        assert len(result.steps) == 2


@pytest.mark.security
def test_secrets_stay_out_of_the_worker_and_the_model(llm, make_engine, monkeypatch):
    monkeypatch.setenv("DEEPRECALL_TEST_SECRET", "s3cr3t-value")
    code = repl('import os\nprint(sorted(os.environ))\nanswer["content"] = repr(dict(os.environ))\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    engine = make_engine(server, backend_kwargs={"model_name": ROOT, "base_url": server.base_url,
                                                 "api_key": "sk-hostkey123456789", "max_retries": 0})
    result = engine.query("q")
    assert result.error is None
    worker_env = ast.literal_eval(result.answer)  # the worker's whole environment really came back
    assert worker_env["PATH"] and "DEEPRECALL_TEST_SECRET" not in worker_env
    assert "s3cr3t-value" not in result.answer and "sk-hostkey" not in result.answer
    assert "'PATH'" in result.steps[0].output
    assert "sk-hostkey" not in repr(engine.config) and "sk-hostkey" not in str(engine.config)
    assert all("sk-hostkey" not in r.text for r in server.requests)


@pytest.mark.security
def test_worker_does_not_run_in_the_host_process(llm, make_engine):
    import os

    code = repl('import os\nanswer["content"] = str(os.getpid()) + " " + os.getcwd()\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(code)})
    pid, cwd = make_engine(server).query("q").answer.split(" ", 1)
    assert int(pid) != os.getpid() and cwd != os.getcwd()


def test_model_code_errors_go_back_to_the_model_and_the_query_goes_on(llm, make_engine):
    server = llm({ROOT: by_turn(repl("1/0"), repl('answer["content"] = "recovered"\nanswer["ready"] = True'))})
    result = make_engine(server).query("q")
    assert result.answer == "recovered"
    assert "ZeroDivisionError" in server.calls_for(ROOT)[1].text
    assert "deeprecall-worker" not in server.calls_for(ROOT)[1].text


def test_worker_that_exits_is_replaced_and_the_query_goes_on(llm, make_engine):
    server = llm({ROOT: by_turn(repl("import os\nos._exit(3)"), repl('answer["content"] = "still here"\nanswer["ready"] = True'))})
    result = make_engine(server).query("q")
    assert result.answer == "still here" and result.error is None
    assert "REPL process died" in server.calls_for(ROOT)[1].text



def test_a_query_can_switch_the_root_backend(llm, make_engine):
    first = llm({ROOT: by_turn(repl('answer["content"] = "from first"\nanswer["ready"] = True'))})
    second = llm({"other-root": by_turn(repl('answer["content"] = "from second"\nanswer["ready"] = True'))})
    engine = make_engine(first)
    switched = {"model_name": "other-root", "base_url": second.base_url, "max_retries": 0}
    assert engine.query("q", backend="vllm", backend_kwargs=switched).answer == "from second"
    assert engine.query("q").answer == "from first"
    assert len(second.requests) == 1 and len(first.requests) == 1


def test_hybrid_backend_reasons_with_one_model_and_executes_sub_calls_with_another(llm, make_engine):
    code = repl('answer["content"] = llm_query("do the work")\nanswer["ready"] = True')
    server = llm({"reasoner": by_turn(code), "executor": lambda r: "done by executor"})
    hybrid = {"reasoner": {"backend": "vllm", "model_name": "reasoner", "base_url": server.base_url},
              "executor": {"backend": "vllm", "model_name": "executor", "base_url": server.base_url}}
    engine = make_engine(server, backend="hybrid", backend_kwargs=hybrid, subs=())
    result = engine.query("q")
    assert result.answer == "done by executor"
    assert list(result.usage.root) == ["reasoner"] and list(result.usage.sub) == ["executor"]


def test_a_pooled_worker_that_stopped_answering_is_replaced(llm, make_engine):
    import os
    import signal

    server = llm({ROOT: by_turn(repl('answer["content"] = "fresh worker"\nanswer["ready"] = True'))})
    # start_timeout bounds the stuck worker's init and the replacement's start: 5 s, not 1, so a worker starting on
    # a loaded machine is not taken for a stuck one.
    engine = make_engine(server, environment_kwargs={"pool_size": 1, "isolation": "process", "start_timeout": 5})
    engine.warm()
    stuck = engine._pool._idle[0]
    os.kill(stuck._channel.pid, signal.SIGSTOP)  # alive, but it will never answer init
    result = engine.query("q")
    assert result.answer == "fresh worker" and result.error is None
    assert not stuck.alive


def test_finished_queries_leave_no_per_query_objects_behind(llm, make_engine):
    """A long-running host answers query after query: once a query returns (plain, streamed or awaited, answered
    or ended by a limit), nothing of it stays reachable: its run, emitter, rlms loop and client, REPL, worker
    session. Only the pools' idle workers remain."""
    import asyncio
    import gc

    from deeprecall.engine.emitter import Emitter
    from deeprecall.engine.rlm_adapter import DeepRecallRLM, RootClient, WorkerREPL
    from deeprecall.engine.run import QueryRun
    from deeprecall.sandboxes.protocol import WorkerSession

    server = llm({ROOT: by_turn(SEARCH_AND_SUMMARISE, SUBMIT), SUB: lambda r: "Revenue up 12%."})
    engine = make_engine(server, environment_kwargs={"pool_size": 2})
    per_query = (QueryRun, Emitter, DeepRecallRLM, RootClient, WorkerREPL)
    for i in range(3):
        assert engine.query(f"Acme revenue {i}?").answer == "Acme revenue grew 12% in 2023."
        assert list(engine.stream(f"Acme revenue streamed {i}?"))[-1].answer == "Acme revenue grew 12% in 2023."
        assert asyncio.run(engine.aquery(f"Acme revenue awaited {i}?")).error is None
    limited = make_engine(server, max_iterations=1, environment_kwargs={"pool_size": 1})
    assert limited.query("Acme revenue, one turn?").error == "max_iterations"  # ended by a limit
    gc.collect()
    live = [o for o in gc.get_objects() if isinstance(o, per_query)]
    assert not live, f"left behind: {sorted({type(o).__name__ for o in live})}"
    sessions = [o for o in gc.get_objects() if isinstance(o, WorkerSession)]
    assert len(sessions) <= 3 and all(s in engine._pool._idle or s in limited._pool._idle for s in sessions)


def test_a_search_repeated_in_one_query_is_answered_from_its_memo_not_the_store(llm, make_engine, store):
    """The question is searched before turn 1; the model searching it again (as models often do) costs no
    second store call, while a different top_k or filter does reach the store. All are counted and recorded."""
    reached: list[tuple[str, int, object]] = []
    real_search = store.search

    def counting_search(query, top_k=5, filters=None):  # the real store, observed
        reached.append((query, top_k, filters))
        return real_search(query, top_k, filters)

    store.search = counting_search
    code = repl('a = search_db(context["question"])\n'
                'b = search_db(context["question"])\n'
                'c = search_db(context["question"], top_k=2)\n'
                'd = search_db(context["question"], filters={"tenant": "acme"})\n'
                'hits = a\n'
                'print(a == b, [h["id"] for h in a][:2] == [h["id"] for h in c], len(d))')
    server = llm({ROOT: by_turn(code, SUBMIT), SUB: lambda r: "ok"})
    question = "How much did Acme's revenue grow in 2023?"
    result = make_engine(server).query(question)

    assert result.error is None
    assert [(q, k) for q, k, _ in reached] == [(question, 5), (question, 2), (question, 5)]
    assert reached[2][2] is not None  # the filtered search went to the store with its filter
    assert result.usage.search_calls == 5
    searches = result.steps[0].searches
    assert len(searches) == 5  # the engine's search of the question, then the model's four
    assert searches[0].result_ids == searches[1].result_ids == searches[2].result_ids
    assert "True True" in result.steps[0].output
