"""Histories longer than the model's window, and replies cut at the output limit.

The scripted server plays a model with a small window: a request whose messages
exceed WINDOW characters gets the HTTP 400 that vLLM / llama.cpp's server send.
"""

from __future__ import annotations

from deeprecall.engine.compaction import DROPPED, compact
from deeprecall.testing.scripted_server import Reply
from tests.conftest import ROOT
from tests.engine.test_query import repl

WINDOW = 9_000
BIG_OUTPUT = repl('print("x" * 6000)\nanswer["content"] = "draft " + str(len(SHOW_VARS() or ""))')


def small_window(reply):
    """A model with a WINDOW-character context: too long -> 400 with the usual wording."""
    def script(request):
        size = sum(len(m["content"]) for m in request.messages)
        if size > WINDOW:
            return Reply(status=400, text=f"This model's maximum context length is 4096 tokens; your prompt has {size}")
        return reply(request)
    return script


def turn(request) -> int:
    return sum(1 for m in request.messages if m["role"] == "assistant") + 1


def test_a_history_over_the_window_is_compacted_and_the_query_goes_on(llm, make_engine):
    seen: list[int] = []

    def reply(request):
        seen.append(sum(len(m["content"]) for m in request.messages))
        if turn(request) < 4:
            return repl(f'print("x" * 6000)\nstep = {turn(request)}')
        return "FINAL(Lyon)"

    server = llm({ROOT: small_window(reply)})
    result = make_engine(server, max_iterations=6, prompt_style="compact").query("Where did Acme open a factory?")
    assert result.error is None and result.answer == "Lyon"
    rejected = [r for r in server.calls_for(ROOT) if sum(len(m["content"]) for m in r.messages) > WINDOW]
    assert rejected, "the history never outgrew the window: the test proves nothing"
    accepted_after_compaction = [r for r in server.calls_for(ROOT) if any(
        "characters cut" in m["content"] or "earlier messages were dropped" in m["content"] for m in r.messages)]
    assert accepted_after_compaction
    # the question and the first hits are kept in every compacted prompt
    assert all("Where did Acme open a factory?" in r.messages[1]["content"] for r in accepted_after_compaction)


def test_a_history_that_cannot_be_compacted_enough_ends_as_context_window(llm, make_engine):
    """The question fills half the window: the history holds it twice by turn 2, and compaction
    keeps both, so the retry fails too. The query ends named, and answers once from its
    evidence (a prompt that does fit). Rejected calls are not metered."""
    def reply(request):
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "from the evidence"
        return repl("x = 1")

    server = llm({ROOT: small_window(reply)})
    result = make_engine(server, max_iterations=6, prompt_style="compact").query("Acme? " * 700)
    assert result.error == "context_window" and "compacted" in result.error_message
    assert result.answer == "from the evidence"  # not a crash, not a provider-error loop
    # turn 1 (sent alone, it fits), turn 2 (the history does not), its compacted retry, the evidence answer
    assert len(server.calls_for(ROOT)) == 4 and result.usage.root_calls == 2


def test_a_reply_cut_at_the_output_limit_does_not_run_its_half_block_and_the_model_is_told(llm, make_engine):
    def reply(request):
        if turn(request) == 1:
            return Reply(text='Searching.\n```repl\nhits = search_db("Acme")\nanswer["content"] = "HALF', finish_reason="length")
        return "FINAL(done)"

    server = llm({ROOT: reply})
    result = make_engine(server, max_iterations=4).query("q")
    assert result.answer == "done" and result.error is None
    assert result.steps[0].code == []  # the unfinished block never ran
    second = server.calls_for(ROOT)[1].messages
    assert any("cut off at the output-token limit" in m["content"] for m in second if m["role"] == "assistant")


def test_compact_keeps_the_head_and_the_latest_turns_and_cuts_long_outputs():
    head = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "user", "content": "T1"}]
    middle = [m for i in range(10) for m in ({"role": "assistant", "content": f"reply {i}"},
                                             {"role": "user", "content": f"output {i} " + "z" * 5000})]
    out = compact(head + middle, target_chars=4_000)
    assert out[:3] == head
    assert out[-1]["content"].startswith("output 9 ") and "characters cut" in out[-1]["content"]
    dropped = int(out[3]["content"].split()[0].strip("["))
    assert out[3]["role"] == "user" and out[3]["content"].startswith(DROPPED.format(n=dropped))
    assert dropped + sum(1 for m in out[3:] if not m["content"].startswith("[")) == len(middle)
    assert sum(len(m["content"]) for m in out) <= 4_000 + len(DROPPED) + 100
