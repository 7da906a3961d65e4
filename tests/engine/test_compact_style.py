"""The compact style for small models: turn 1 is one-shot RAG with a way out (SEARCH), and
only then the REPL loop. ``prompt_style="auto"`` picks it for models that say they are small."""

from __future__ import annotations

from deeprecall.engine.prompts import COMPACT_SYSTEM_PROMPT
from tests.conftest import ROOT, make_store
from tests.engine.test_query import repl


def test_turn_one_is_the_question_and_its_hits_alone_and_an_answer_there_ends_the_query(llm, make_engine):
    server = llm({ROOT: lambda r: "FINAL(Lyon)"})
    result = make_engine(server, prompt_style="compact").query("Where did Acme open a new factory?")
    assert result.answer == "Lyon" and result.error is None and result.usage.root_calls == 1
    (first,) = server.calls_for(ROOT)
    assert [m["role"] for m in first.messages] == ["user"]  # no REPL prompt: it reads like one-shot RAG
    assert "Acme opened a new factory in Lyon in 2022." in first.messages[0]["content"]
    assert result.grounded and [s.id for s in result.sources] == ["doc1"]


def test_search_on_turn_one_is_run_for_the_model_and_its_hits_come_back(llm, make_engine):
    def root(request):
        turn = sum(1 for m in request.messages if m["role"] == "assistant")
        return "Search(Globex CEO)" if turn == 0 else "FINAL(Hank Scorpio)"  # the real model's casing varies

    server = llm({ROOT: root})
    result = make_engine(server, prompt_style="compact").query("Who runs Globex?")
    assert result.answer == "Hank Scorpio" and result.error is None and result.usage.root_calls == 2
    assert [c.query for c in result.steps[0].searches] == ["Who runs Globex?", "Globex CEO"]
    assert result.steps[0].code == ["hits = search_db('Globex CEO')\nfor h in hits:\n    print(h[\"id\"], h[\"content\"])"]
    second = server.calls_for(ROOT)[1].messages
    assert second[0] == {"role": "system", "content": COMPACT_SYSTEM_PROMPT}
    assert any("doc3 Globex hired a new CEO, Hank Scorpio" in m["content"] for m in second if m["role"] == "user")
    assert "doc3" in [s.id for s in result.sources]


def test_search_without_a_phrase_asks_for_code_and_the_loop_goes_on(llm, make_engine):
    def root(request):
        turn = sum(1 for m in request.messages if m["role"] == "assistant")
        if turn == 0:
            return "SEARCH(what is still missing)"  # the template's words, copied: nothing to search
        if turn == 1:
            return repl('hits = search_db("Globex CEO")\nprint(hits[0]["content"])')
        return "FINAL(Hank Scorpio)"

    server = llm({ROOT: root})
    result = make_engine(server, prompt_style="compact").query("Who runs Globex?")
    assert result.answer == "Hank Scorpio" and result.usage.root_calls == 3
    assert result.steps[0].code == [] and [c.query for c in result.steps[1].searches] == ["Globex CEO"]
    assert "searches for what is missing" in server.calls_for(ROOT)[1].messages[-1]["content"]


def test_a_plain_reply_on_turn_one_is_the_answer(llm, make_engine):
    server = llm({ROOT: lambda r: "Hank Scorpio"})
    result = make_engine(server, prompt_style="compact").query("Who is Globex's CEO?")
    assert result.answer == "Hank Scorpio" and result.usage.root_calls == 1 and result.grounded


def test_auto_picks_compact_only_for_a_model_that_says_it_is_small(llm, make_engine):
    server = llm({ROOT: lambda r: "FINAL(Lyon)"})
    engine = make_engine(server)
    assert engine.config.prompt_style == "auto"
    engine.query("Where did Acme open a new factory?")
    assert server.calls_for(ROOT)[0].messages[0]["role"] == "system"  # the scripted model is not small: rlms style
    engine._root.small_model = True  # what LlamaCppLocalModel declares
    engine.query("Where did Acme open a new factory?")
    assert [m["role"] for m in server.calls_for(ROOT)[1].messages] == ["user"]


def test_an_answer_from_another_chain_is_refused_once_and_the_model_searches_for_the_link(llm, make_engine):
    docs = [("Trizous Holdings is an insurance company headquartered in Houcelt.", {}),
            ("Kuzet is a city in Stikeand on the river Zialt.", {}),
            ("Houcelt is a city in Stikeand on the river Draciand.", {}),
            ("Triafan Works is a printing company headquartered in Kuzet.", {})]

    def root(request):
        turn = sum(1 for m in request.messages if m["role"] == "assistant")
        return ["FINAL(Zialt)", repl('hits = search_db("Houcelt river")\nprint(hits[0]["content"])'),
                "FINAL(Draciand)"][min(turn, 2)]

    server = llm({ROOT: root})
    engine = make_engine(server, vectorstore=make_store("chain", docs), prompt_style="compact", top_k=4)
    result = engine.query("Which river flows through the city where Trizous Holdings is headquartered?")
    assert "none of the documents retrieved so far links it to Trizous, Holdings" in result.steps[0].output
    assert result.answer == "Draciand" and result.error is None and result.usage.root_calls == 3
    assert [s.id for s in result.sources] == ["doc2"]


def test_an_unbacked_answer_given_again_after_the_refusal_is_replaced_by_the_answer_from_the_evidence(llm, make_engine):
    """Seen from the real model (single_hop-148 in docs/quality.md): refused for a distractor's year, it
    searched another name and gave the same year again. The engine then answers as one-shot RAG
    would, from everything retrieved, instead of passing the unbacked answer on."""
    docs = [("Trizous Holdings is an insurance company headquartered in Houcelt.", {}),
            ("Kuzet is a city in Stikeand on the river Zialt.", {}),
            ("Houcelt is a city in Stikeand on the river Draciand.", {}),
            ("Triafan Works is a printing company headquartered in Kuzet.", {})]

    def root(request):
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "Draciand"
        turn = sum(1 for m in request.messages if m["role"] == "assistant")
        return ["FINAL(Zialt)", "SEARCH(Triafan Works)", "FINAL(Zialt)"][min(turn, 2)]

    server = llm({ROOT: root})
    engine = make_engine(server, vectorstore=make_store("chain", docs), prompt_style="compact", top_k=4)
    result = engine.query("Which river flows through the city where Trizous Holdings is headquartered?")
    assert "links it to Trizous, Holdings" in result.steps[0].output
    assert "answered from the retrieved documents instead of the unbacked 'Zialt'" in result.steps[-1].output
    assert result.answer == "Draciand" and result.error is None and result.usage.root_calls == 4
    assert [s.id for s in result.sources] == ["doc2"]


def test_an_answer_given_again_after_the_refusal_stands_when_the_documents_back_it(llm, make_engine):
    """The check replaces only an unbacked answer: a second answer the search connected stands."""
    docs = [("Trizous Holdings is an insurance company headquartered in Houcelt.", {}),
            ("Houcelt is a city in Stikeand on the river Draciand.", {}),
            ("Kuzet is a city in Stikeand on the river Zialt.", {})]

    def root(request):
        if request.messages[-1]["content"].startswith("Answer the question from these documents only"):
            return "the evidence call must not happen"
        turn = sum(1 for m in request.messages if m["role"] == "assistant")
        return ["FINAL(Zialt)", "SEARCH(Houcelt river)", "FINAL(Draciand)"][min(turn, 2)]

    server = llm({ROOT: root})
    engine = make_engine(server, vectorstore=make_store("chain2", docs), prompt_style="compact", top_k=3)
    result = engine.query("Which river flows through the city where Trizous Holdings is headquartered?")
    assert result.answer == "Draciand" and result.usage.root_calls == 3


def test_a_bare_final_keyword_is_not_taken_as_the_answer(llm, make_engine):
    """The real model replied just 'FINAL' (and 'SEARCH') to a prompt that listed the choices as bullets."""
    server = llm({ROOT: lambda r: ["FINAL", "FINAL()", "FINAL(Lyon)"][
        min(sum(1 for m in r.messages if m["role"] == "assistant"), 2)]})
    result = make_engine(server, prompt_style="compact").query("Where did Acme open a new factory?")
    assert result.answer == "Lyon" and result.usage.root_calls == 3


def test_the_prompts_placeholder_copied_into_final_is_not_an_answer(llm, make_engine):
    """The real model replied FINAL(the short answer), copying the template (quality run, single_hop-418)."""
    server = llm({ROOT: lambda r: ["FINAL(the short answer)", "FINAL(Lyon)"][
        min(sum(1 for m in r.messages if m["role"] == "assistant"), 1)]})
    result = make_engine(server, prompt_style="compact").query("Where did Acme open a new factory?")
    assert result.answer == "Lyon" and result.usage.root_calls == 2
    assert "none of them contains it" not in result.steps[0].output  # not refused: never taken as an answer


def test_final_in_any_case_is_the_answer(llm, make_engine):
    """The real model wrote 'Final(not in the documents)' (quality run, two_hop-453)."""
    server = llm({ROOT: lambda r: "Final(not in the documents)"})
    result = make_engine(server, prompt_style="compact").query("Who is the mayor of Lyon?")
    assert result.answer == "not in the documents" and result.usage.root_calls == 1 and not result.grounded
