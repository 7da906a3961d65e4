"""Every limit ends the query with the best partial answer and names itself in result.error."""

from __future__ import annotations

import time

from deeprecall.testing.scripted_server import Reply, by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_query import repl

DRAFT = repl('answer["content"] = "partial: Acme grew"\nhits = search_db("Acme")\nprint(len(hits))')


def test_max_iterations_returns_the_draft(llm, make_engine):
    server = llm({ROOT: by_turn(DRAFT, repl("print('still thinking')"), repl("print('almost')"))})
    result = make_engine(server, max_iterations=3).query("q")
    assert result.error == "max_iterations"
    assert result.answer == "partial: Acme grew"
    assert result.usage.root_calls == 3  # no extra call after the limit
    assert "max_iterations=3" in result.error_message


def test_max_iterations_without_a_draft_answers_from_the_retrieved_documents(llm, make_engine):
    def root(request):
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "Hank Scorpio" if "Hank Scorpio" in request.messages[-1]["content"] else "not in the documents"
        return repl(f"x = {len(request.messages)}", prose="Probably Lyon, checking.")

    result = make_engine(llm({ROOT: root}), max_iterations=2).query("Who founded Globex?")
    assert result.error == "max_iterations" and result.answer == "Hank Scorpio"
    assert result.usage.root_calls == 3  # two turns, then one answer from the evidence
    assert result.grounded and "Hank Scorpio" in result.sources[0].content


def test_when_even_the_evidence_answer_fails_the_last_prose_is_returned(llm, make_engine):
    def root(request):
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return Reply(status=400, text="bad request")
        return repl(f"x = {len(request.messages)}", prose="Probably Lyon, checking.")

    result = make_engine(llm({ROOT: root}), max_iterations=2).query("q")
    assert result.error == "max_iterations" and result.answer == "Probably Lyon, checking."


def test_code_run_again_is_refused_once_then_the_query_ends_as_stalled(llm, make_engine):
    server = llm({ROOT: by_turn(DRAFT, repl("print('still thinking')"))})
    result = make_engine(server, max_iterations=8).query("q")
    assert result.error == "stalled" and "repeated itself" in result.error_message
    assert result.answer == "partial: Acme grew"
    assert result.usage.root_calls == 4  # turn 3 repeated turn 2's code and was told; turn 4 repeated it again
    assert result.steps[1].output.count("still thinking") == 1 and result.steps[2].output.startswith("You already ran")
    assert "You already ran exactly this code" in server.calls_for(ROOT)[3].messages[-2]["content"]


def test_the_same_prose_twice_ends_the_query_as_stalled(llm, make_engine):
    def root(request):
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "Lyon"
        return by_turn(repl("x = 1"), "Let me think about it.")(request)

    result = make_engine(llm({ROOT: root}), max_iterations=8, prompt_style="rlms").query("Where is the new factory?")
    assert result.error == "stalled" and result.answer == "Lyon"
    assert result.usage.root_calls == 4  # three turns, the third the same prose as the second; then the evidence


def test_a_stalled_model_without_a_draft_gets_an_answer_from_the_retrieved_documents(llm, make_engine):
    evidence_calls = []

    def root(request):
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Answer the question from these documents only"):
            evidence_calls.append(prompt)
            return "12%" if "grew 12% in 2023" in prompt else "not in the documents"
        return repl("x = 1")

    result = make_engine(llm({ROOT: root}), max_iterations=8).query("How much did Acme's revenue grow in 2023?")
    assert result.error == "stalled" and result.answer == "12%"
    assert len(evidence_calls) == 1 and result.usage.root_calls == 4  # run, refused repeat, repeat again, evidence
    assert [s.id for s in result.sources] == ["doc0"] and result.grounded


def test_max_search_calls(llm, make_engine):
    loop = repl('answer["content"] = "draft"\nfor i in range(10):\n    search_db(f"query {i}")')
    server = llm({ROOT: by_turn(loop)})
    result = make_engine(server, max_search_calls=3).query("q")
    assert result.error == "max_search_calls"
    assert result.usage.search_calls == 5  # the engine's search of the question, 3 of the model's, the 4th refused
    assert sum(len(s.searches) for s in result.steps) == 4
    assert result.answer == "draft"


def test_refused_search_tells_the_model_to_submit(llm, make_engine):
    code = repl('answer["content"] = "draft"\ntry:\n    search_db("a"); search_db("b")\nexcept ToolError as e:\n    print("refused:", e)')
    server = llm({ROOT: by_turn(code)})
    result = make_engine(server, max_search_calls=1).query("q")
    assert result.error == "max_search_calls"
    assert "refused: " in result.steps[0].output and "answer['ready'] = True" in result.steps[0].output


def test_max_tokens_counts_root_and_sub_calls(llm, make_engine):
    code = repl('answer["content"] = "draft"\nx = llm_query("a")\ny = llm_query("b")')
    server = llm({ROOT: by_turn(code, repl("print(1)")), SUB: lambda r: Reply(text="ok", usage=(5000, 10))})
    result = make_engine(server, max_tokens=4000).query("q")
    assert result.error == "max_tokens"
    assert result.usage.sub[SUB].calls == 1  # the second sub-call never happened
    assert result.answer == "draft"


def test_max_seconds_cuts_a_slow_model(llm, make_engine):
    """The second turn's reply would take 20 s; the query ends at its 3 s deadline without it.

    Checked by order, not by a tight wall-clock bound: the query did not end before its deadline, and it had
    ended while the server was still sitting on the slow reply (sent only after 20 s; a query that let the LLM
    call run on its own timeout would have waited for it)."""
    server = llm({ROOT: by_turn(DRAFT, Reply(text=repl("print(2)"), delay=20))})
    started = time.monotonic()
    result = make_engine(server, max_seconds=3).query("q")
    ended = time.monotonic()
    first, slow = server.calls_for(ROOT)
    assert first.replied_at and slow.received_at and slow.replied_at == 0.0, "the query waited for the slow reply"
    assert ended - started >= 3
    assert result.error == "max_seconds"  # the deadline-capped LLM call is the limit, not a provider fault
    assert result.answer == "partial: Acme grew"


def test_max_seconds_cuts_a_long_cell(llm, make_engine):
    code = repl('answer["content"] = "draft"\nimport time\ntime.sleep(30)')
    server = llm({ROOT: by_turn(code)})
    started = time.monotonic()
    result = make_engine(server, max_seconds=2, environment_kwargs={"pool_size": 1, "cell_timeout": 20}).query("q")
    assert 2 <= time.monotonic() - started < 20  # the deadline ended it, not the 20 s cell timeout or the 30 s sleep
    assert result.error == "max_seconds", (result.error, result.error_message)


def test_cell_timeout_interrupts_and_the_query_goes_on(llm, make_engine):
    code = repl('x = "kept"\nimport time\ntime.sleep(60)')
    server = llm({ROOT: by_turn(code, repl('answer["content"] = x\nanswer["ready"] = True'))})
    started = time.monotonic()
    result = make_engine(server, environment_kwargs={"pool_size": 1, "cell_timeout": 1}).query("q")
    assert time.monotonic() - started < 10
    assert result.answer == "kept" and result.error is None
    assert "TimeoutError" in server.calls_for(ROOT)[1].text


def test_a_slow_sub_call_does_not_count_against_the_cell_timeout(llm, make_engine):
    """A local model can take a minute to read a sub-call's prompt; the worker is waiting on the host,
    not hung. Here the sub-call takes 4 s against a 1 s cell timeout (idle kill after 3 s)."""
    code = repl('summary = llm_query("summarise")\nanswer["content"] = summary\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(code), SUB: lambda r: Reply(text="slow but fine", delay=4)})
    result = make_engine(server, environment_kwargs={"pool_size": 1, "cell_timeout": 1}).query("q")
    assert result.error is None and result.answer == "slow but fine"
    assert result.steps[0].sub_calls[0].seconds >= 4


def test_a_cell_that_swallows_its_timeout_is_killed(llm, make_engine):
    hang = repl('while True:\n    try:\n        while True:\n            pass\n'
                '    except BaseException:\n        pass')
    server = llm({ROOT: by_turn(DRAFT, hang)})
    started = time.monotonic()
    result = make_engine(server, environment_kwargs={"pool_size": 1, "cell_timeout": 1}).query("q")
    assert time.monotonic() - started < 10
    assert result.error == "cell_timeout"
    assert result.answer == "partial: Acme grew"  # the draft from the turn before the hang


def test_provider_failure_is_reported_not_raised(llm, make_engine):
    server = llm({ROOT: lambda r: Reply(status=401, text="bad key sk-leakedkey12345678")})
    result = make_engine(server).query("q")
    assert result.error == "llm_error"
    assert "401" in result.error_message and "sk-leakedkey" not in result.error_message
