"""OpenTelemetry spans from query events: names, GenAI and OpenInference attributes, parentage, timing,
opt-in content, error status. Spans go through the real SDK into its in-memory exporter."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from deeprecall.events import (
    AnswerEvent,
    CellEnded,
    CellStarted,
    LimitTripped,
    ModelDelta,
    ModelTurn,
    QueryStarted,
    SearchDone,
    SubCallDone,
    WorkerRestarted,
)
from deeprecall.integrations.otel import OpenTelemetrySubscriber
from deeprecall.results import QueryResult

QUESTION = "How much did Acme's revenue grow in 2023?"
CODE = "hits = search_db('Acme revenue 2023')\nprint(llm_query('Summarise: ' + hits[0]['content']))"
SECRET_FREE_ANSWER = "Acme's revenue grew 12% in 2023."


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def subscriber(exporter: InMemorySpanExporter, **kwargs: Any) -> OpenTelemetrySubscriber:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetrySubscriber(tracer_provider=provider, **kwargs)


def multi_turn_events(qid: str = "q1", *, limit: bool = True) -> list[Any]:
    """A two-turn query as the engine reports it: the grounding search, a streamed turn whose cell searches and
    makes two sub-calls (one fails), a worker restart, a second turn, then max_iterations."""
    answer_error = "max_iterations" if limit else None
    events: list[Any] = [
        QueryStarted(query_id=qid, t=0.0, question=QUESTION, filters={"tenant": "acme"}, root_model="root-model",
                     sub_models=["sub-model"], limits={"max_iterations": 2, "max_seconds": None}, data_source="chroma:docs"),
        SearchDone(query_id=qid, t=0.020, step=0, query=QUESTION, top_k=5, filters={"tenant": "acme"},
                   hit_ids=["doc0", "doc1"], scores=[0.91, 0.42], ms=10.0),
        ModelDelta(query_id=qid, t=0.050, step=1, model="root-model", text="```repl\n"),
        ModelDelta(query_id=qid, t=0.080, step=1, model="root-model", text=CODE + "\n```"),
        ModelTurn(query_id=qid, t=0.100, step=1, model="root-model", provider="openai", text=f"```repl\n{CODE}\n```",
                  input_tokens=120, output_tokens=30, cost_usd=0.0012, finish_reason="stop", seconds=0.070,
                  prompt=[{"role": "system", "content": "You answer from the store."}, {"role": "user", "content": QUESTION}]),
        CellStarted(query_id=qid, t=0.110, step=1, cell=1, code=CODE),
        SearchDone(query_id=qid, t=0.150, step=1, query="Acme revenue 2023", top_k=5, filters={"tenant": "acme"},
                   hit_ids=["doc0"], scores=[0.95], ms=20.0),
        SubCallDone(query_id=qid, t=0.200, step=1, model="sub-model", provider="openai",
                    prompt_preview="Summarise: Acme's revenue grew 12%", response_preview="12% growth",
                    input_tokens=40, output_tokens=5, ms=30.0),
        SubCallDone(query_id=qid, t=0.210, step=1, model="sub-model", provider="openai", prompt_preview="second",
                    ms=5.0, error="ProviderError: sub-model: HTTP 500"),
        WorkerRestarted(query_id=qid, t=0.220, step=1, reason="the worker died"),
        CellEnded(query_id=qid, t=0.250, step=1, cell=1, stdout="12% growth\n", seconds=0.140),
        ModelTurn(query_id=qid, t=0.400, step=2, model="root-model", provider="openai", text="Still checking.",
                  input_tokens=200, output_tokens=10, seconds=0.100),
    ]
    if limit:
        events.append(LimitTripped(query_id=qid, t=0.410, step=2, reason="max_iterations", message="2 turns used"))
    result = QueryResult(question=QUESTION, answer=SECRET_FREE_ANSWER, error=answer_error)
    usage = {"root": {"root-model": {"calls": 2, "input_tokens": 320, "output_tokens": 40, "cost_usd": 0.002}},
             "sub": {"sub-model": {"calls": 2, "input_tokens": 40, "output_tokens": 5, "cost_usd": None}},
             "search_calls": 2, "total_tokens": 405, "total_cost_usd": 0.002}
    events.append(AnswerEvent(query_id=qid, t=0.450, step=2, answer=SECRET_FREE_ANSWER, grounded=True, usage=usage,
                              sources=[{"id": "doc0", "content": "Acme's revenue grew 12%", "metadata": {}, "score": 0.95}],
                              error=answer_error, error_message="2 turns used" if limit else None, result=result))
    return events


def run(sub: OpenTelemetrySubscriber, events: list[Any]) -> None:
    for event in events:
        sub(event)


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_one_span_per_query_model_call_cell_and_search_with_genai_names(exporter):
    run(subscriber(exporter), multi_turn_events())
    spans = by_name(exporter.get_finished_spans())
    assert sorted((name, len(group)) for name, group in spans.items()) == [
        ("chat root-model", 2), ("chat sub-model", 2), ("execute_tool repl", 1), ("invoke_agent deeprecall", 1),
        ("retrieval chroma:docs", 2)]
    operation = {name: {s.attributes["gen_ai.operation.name"] for s in group} for name, group in spans.items()}
    kinds = {name: {s.attributes["openinference.span.kind"] for s in group} for name, group in spans.items()}
    assert operation == {"invoke_agent deeprecall": {"invoke_agent"}, "chat root-model": {"chat"},
                         "chat sub-model": {"chat"}, "execute_tool repl": {"execute_tool"},
                         "retrieval chroma:docs": {"retrieval"}}
    assert kinds == {"invoke_agent deeprecall": {"AGENT"}, "chat root-model": {"LLM"}, "chat sub-model": {"LLM"},
                     "execute_tool repl": {"TOOL"}, "retrieval chroma:docs": {"RETRIEVER"}}


def test_attributes_carry_models_tokens_provider_and_store(exporter):
    run(subscriber(exporter), multi_turn_events())
    spans = by_name(exporter.get_finished_spans())
    (query,) = spans["invoke_agent deeprecall"]
    first_turn = min(spans["chat root-model"], key=lambda s: s.start_time)
    ok_sub = next(s for s in spans["chat sub-model"] if s.status.status_code != StatusCode.ERROR)
    assert query.attributes["gen_ai.agent.name"] == "deeprecall"
    assert query.attributes["gen_ai.request.model"] == "root-model"
    assert query.attributes["gen_ai.provider.name"] == "openai"
    assert query.attributes["gen_ai.data_source.id"] == "chroma:docs"
    assert (query.attributes["gen_ai.usage.input_tokens"], query.attributes["gen_ai.usage.output_tokens"]) == (360, 45)
    assert query.attributes["deeprecall.limit.max_iterations"] == 2
    assert list(query.attributes["deeprecall.sources"]) == ["doc0"]
    assert first_turn.attributes["gen_ai.request.model"] == "root-model"
    assert first_turn.attributes["gen_ai.provider.name"] == "openai"
    assert (first_turn.attributes["gen_ai.usage.input_tokens"], first_turn.attributes["gen_ai.usage.output_tokens"]) == (120, 30)
    assert list(first_turn.attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert first_turn.attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.020, abs=1e-6)
    assert first_turn.attributes["deeprecall.call"] == "root"
    assert ok_sub.attributes["deeprecall.call"] == "sub"
    assert (ok_sub.attributes["gen_ai.usage.input_tokens"], ok_sub.attributes["llm.token_count.total"]) == (40, 45)
    grounding = min(spans["retrieval chroma:docs"], key=lambda s: s.start_time)
    assert grounding.attributes["gen_ai.data_source.id"] == "chroma:docs"
    assert json.loads(grounding.attributes["gen_ai.retrieval.documents"]) == [{"id": "doc0", "score": 0.91},
                                                                              {"id": "doc1", "score": 0.42}]
    assert grounding.attributes["retrieval.documents.1.document.id"] == "doc1"
    assert grounding.attributes["deeprecall.search.hits"] == 2


def test_calls_hang_off_the_query_and_a_cells_calls_off_that_cell(exporter):
    run(subscriber(exporter), multi_turn_events())
    spans = by_name(exporter.get_finished_spans())
    (query,) = spans["invoke_agent deeprecall"]
    (cell,) = spans["execute_tool repl"]
    grounding, cell_search = sorted(spans["retrieval chroma:docs"], key=lambda s: s.start_time)
    assert query.parent is None
    assert {parent_of(s) for s in spans["chat root-model"]} == {query.context.span_id}
    assert parent_of(cell) == query.context.span_id
    assert parent_of(grounding) == query.context.span_id  # the engine's own search, before any cell
    assert parent_of(cell_search) == cell.context.span_id
    assert {parent_of(s) for s in spans["chat sub-model"]} == {cell.context.span_id}
    assert {s.context.trace_id for s in exporter.get_finished_spans()} == {query.context.trace_id}
    assert [e.name for e in cell.events] == ["deeprecall.worker_restarted"]  # it happened during the cell


def test_span_times_come_from_the_events_own_clock(exporter):
    run(subscriber(exporter), multi_turn_events())
    spans = by_name(exporter.get_finished_spans())
    (query,) = spans["invoke_agent deeprecall"]
    (cell,) = spans["execute_tool repl"]
    turn1, turn2 = sorted(spans["chat root-model"], key=lambda s: s.start_time)
    at = lambda span: ((span.start_time - query.start_time) / 1e9, (span.end_time - query.start_time) / 1e9)  # noqa: E731
    assert at(query) == pytest.approx((0.0, 0.450), abs=1e-6)
    assert at(turn1) == pytest.approx((0.030, 0.100), abs=1e-6)
    assert at(turn2) == pytest.approx((0.300, 0.400), abs=1e-6)
    assert at(cell) == pytest.approx((0.110, 0.250), abs=1e-6)
    for child in [*spans["chat sub-model"], *spans["retrieval chroma:docs"]]:
        parent = cell if parent_of(child) == cell.context.span_id else query
        assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time
    assert turn1.end_time <= cell.start_time and cell.end_time <= turn2.start_time


def test_content_stays_out_unless_the_user_opts_in(exporter):
    run(subscriber(exporter), multi_turn_events())
    values = [str(v) for s in exporter.get_finished_spans() for v in s.attributes.values()]
    for text in (QUESTION, "Acme revenue 2023", "Summarise", "12% growth", SECRET_FREE_ANSWER, "You answer from", "acme"):
        assert not any(text in v for v in values), text
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "input.", "output.", "gen_ai.tool.call.a"))
                   for s in exporter.get_finished_spans() for k in s.attributes)


def test_captured_content_follows_the_genai_message_format(exporter):
    run(subscriber(exporter, capture_content=True), multi_turn_events())
    spans = by_name(exporter.get_finished_spans())
    (query,) = spans["invoke_agent deeprecall"]
    (cell,) = spans["execute_tool repl"]
    turn1 = min(spans["chat root-model"], key=lambda s: s.start_time)
    cell_search = max(spans["retrieval chroma:docs"], key=lambda s: s.start_time)
    assert json.loads(query.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]
    assert json.loads(query.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == SECRET_FREE_ANSWER
    assert query.attributes["output.value"] == SECRET_FREE_ANSWER
    assert [m["role"] for m in json.loads(turn1.attributes["gen_ai.input.messages"])] == ["system", "user"]
    output = json.loads(turn1.attributes["gen_ai.output.messages"])
    assert output == [{"role": "assistant", "parts": [{"type": "text", "content": f"```repl\n{CODE}\n```"}],
                       "finish_reason": "stop"}]
    assert json.loads(cell.attributes["gen_ai.tool.call.arguments"]) == {"code": CODE}
    assert cell.attributes["gen_ai.tool.call.result"] == "12% growth\n"
    assert cell_search.attributes["gen_ai.retrieval.query.text"] == "Acme revenue 2023"
    assert json.loads(cell_search.attributes["deeprecall.search.filters"]) == {"tenant": "acme"}


def test_a_limit_and_failed_calls_set_error_status(exporter):
    run(subscriber(exporter), multi_turn_events())
    spans = by_name(exporter.get_finished_spans())
    (query,) = spans["invoke_agent deeprecall"]
    failed_sub = [s for s in spans["chat sub-model"] if s.status.status_code == StatusCode.ERROR]
    assert query.status.status_code == StatusCode.ERROR
    assert query.attributes["error.type"] == "max_iterations"
    assert query.status.description == "2 turns used"
    limit = next(e for e in query.events if e.name == "deeprecall.limit")
    assert limit.attributes["deeprecall.limit.reason"] == "max_iterations"
    assert (limit.timestamp - query.start_time) / 1e9 == pytest.approx(0.410, abs=1e-6)
    assert [s.attributes["error.type"] for s in failed_sub] == ["ProviderError"]
    assert spans["execute_tool repl"][0].status.status_code != StatusCode.ERROR


def test_an_answered_query_is_not_an_error(exporter):
    run(subscriber(exporter), multi_turn_events(limit=False))
    (query,) = by_name(exporter.get_finished_spans())["invoke_agent deeprecall"]
    assert query.status.status_code != StatusCode.ERROR
    assert "error.type" not in query.attributes


def test_concurrent_queries_get_separate_traces(exporter):
    sub = subscriber(exporter)
    a, b = multi_turn_events("qa"), multi_turn_events("qb", limit=False)
    for pair in zip(a, b, strict=False):  # interleaved, as two queries on one engine report them
        for event in pair:
            sub(event)
    for event in a[len(b):]:
        sub(event)
    queries = by_name(exporter.get_finished_spans())["invoke_agent deeprecall"]
    assert sorted(q.attributes["deeprecall.query_id"] for q in queries) == ["qa", "qb"]
    traces = {q.context.trace_id for q in queries}
    assert len(traces) == 2
    for trace_id in traces:
        assert sum(s.context.trace_id == trace_id for s in exporter.get_finished_spans()) == 8


def test_a_query_inside_the_users_span_is_its_child(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sub = OpenTelemetrySubscriber(tracer_provider=provider)
    with provider.get_tracer("app").start_as_current_span("handle request") as outer:
        run(sub, multi_turn_events())
    (query,) = by_name(exporter.get_finished_spans())["invoke_agent deeprecall"]
    assert parent_of(query) == outer.get_span_context().span_id


def test_an_abandoned_query_is_closed_as_an_error(exporter):
    sub = subscriber(exporter)
    run(sub, multi_turn_events()[:6])  # stopped inside the cell, before any answer
    assert exporter.get_finished_spans() and not by_name(exporter.get_finished_spans()).get("invoke_agent deeprecall")
    sub.close()
    spans = by_name(exporter.get_finished_spans())
    assert spans["invoke_agent deeprecall"][0].attributes["error.type"] == "abandoned"
    assert spans["execute_tool repl"][0].status.status_code == StatusCode.ERROR


def test_events_of_an_unknown_query_are_ignored_not_raised(exporter):
    sub = subscriber(exporter)
    run(sub, multi_turn_events()[1:])  # QueryStarted was missed (subscribed late)
    assert exporter.get_finished_spans() == ()


def test_without_opentelemetry_the_error_names_the_extra():
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from deeprecall.integrations.otel import OpenTelemetrySubscriber\n"
            "try:\n    OpenTelemetrySubscriber()\nexcept ImportError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'deeprecall[otel]'" in proc.stdout


# -- end to end: the real engine, the scripted LLM server, the sandbox and Chroma ------------------------------
def test_a_real_multi_turn_query_becomes_one_trace(llm, make_engine, exporter):
    """Turn 1 searches and runs a batch of two sub-calls, turn 2's cell kills its worker, turn 3 drafts, and
    max_iterations=3 ends the query: every step is a span in one trace, the limit an error on the query."""
    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT, SUB
    from tests.engine.test_events import CRASH, DRAFT_AGAIN, SEARCH_AND_BATCH

    server = llm({ROOT: by_turn(SEARCH_AND_BATCH, CRASH, DRAFT_AGAIN), SUB: lambda r: "note on " + r.last_user})
    engine = make_engine(server, max_iterations=3, filters={"tenant": "acme"})
    unsubscribe = engine.subscribe(subscriber(exporter))
    result = engine.query("How much did Acme's revenue grow?")
    unsubscribe()

    spans = exporter.get_finished_spans()
    named = by_name(spans)
    (query,) = named["invoke_agent deeprecall"]
    cells = sorted(named["execute_tool repl"], key=lambda s: s.start_time)
    searches = sorted(next(g for n, g in named.items() if n.startswith("retrieval chroma:docs-")), key=lambda s: s.start_time)
    assert len({s.context.trace_id for s in spans}) == 1
    assert len(named[f"chat {ROOT}"]) == 3 and len(named[f"chat {SUB}"]) == 2 and len(cells) == 3 and len(searches) == 2
    assert query.attributes["gen_ai.data_source.id"].startswith("chroma:docs-")
    assert query.attributes["gen_ai.provider.name"] == "vllm"
    assert query.attributes["deeprecall.query_id"] == result.query_id
    assert query.status.status_code == StatusCode.ERROR and query.attributes["error.type"] == "max_iterations"
    assert query.attributes["gen_ai.usage.input_tokens"] == sum(
        u.input_tokens for u in [*result.usage.root.values(), *result.usage.sub.values()])
    assert parent_of(searches[0]) == query.context.span_id  # the engine's first search, before any cell
    assert parent_of(searches[1]) == cells[0].context.span_id
    assert {parent_of(s) for s in named[f"chat {SUB}"]} == {cells[0].context.span_id}  # the batch, from cell 1
    assert {parent_of(s) for s in [*cells, *named[f"chat {ROOT}"]]} == {query.context.span_id}
    assert "deeprecall.worker_restarted" in [e.name for e in query.events]
    for span in spans:
        assert query.start_time <= span.start_time <= span.end_time <= query.end_time, span.name
    turns = sorted(named[f"chat {ROOT}"], key=lambda s: s.start_time)
    for turn, cell in zip(turns, cells, strict=True):  # each turn's reply, then its code
        assert turn.end_time <= cell.start_time
    assert json.loads(searches[1].attributes["gen_ai.retrieval.documents"])[0]["id"] == "doc0"
    assert not any("Acme" in str(v) for s in spans for v in s.attributes.values())  # no content without opt-in


def test_a_child_query_is_a_span_inside_the_parents_cell(llm, make_engine, exporter):
    """max_depth=2: the child query's invoke_agent span hangs off the parent's cell that called rlm_query, in the
    parent's trace; the child's own turns, cells and searches hang off the child's span."""
    from tests.conftest import ROOT
    from tests.engine.test_recursive import CHILD_SEARCHES, PARENT_ASKS, two_levels

    engine = make_engine(llm({ROOT: two_levels(PARENT_ASKS, CHILD_SEARCHES)}), max_depth=2)
    unsubscribe = engine.subscribe(subscriber(exporter))
    result = engine.query("Where did Acme open a factory?")
    unsubscribe()

    spans = exporter.get_finished_spans()
    queries = {s.attributes["deeprecall.query_id"]: s for s in by_name(spans)["invoke_agent deeprecall"]}
    top, child = queries[result.query_id], queries[result.children[0].query_id]
    cells = {parent_of(c): c for c in by_name(spans)["execute_tool repl"]}
    assert len({s.context.trace_id for s in spans}) == 1
    assert parent_of(top) is None and parent_of(child) == cells[top.context.span_id].context.span_id
    assert child.attributes["deeprecall.parent_query_id"] == result.query_id and child.attributes["deeprecall.depth"] == 2
    assert "deeprecall.parent_query_id" not in top.attributes
    child_calls = [s for s in spans if parent_of(s) == child.context.span_id]
    assert sorted(s.name.split()[0] for s in child_calls) == ["chat", "execute_tool", "retrieval"]


def test_subscribers_at_construction_with_content_captured(llm, store, exporter):
    from deeprecall import DeepRecall
    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT, engine_config
    from tests.engine.test_query import repl

    answer = repl('hits = search_db("Acme factory")\nanswer["content"] = "Lyon"\nanswer["ready"] = True')
    server = llm({ROOT: by_turn(answer)})
    with DeepRecall(vectorstore=store, config=engine_config(server),
                    subscribers=[subscriber(exporter, capture_content=True)]) as engine:
        result = engine.query("Where did Acme open a factory?")
    named = by_name(exporter.get_finished_spans())
    (query,) = named["invoke_agent deeprecall"]
    (turn,) = named[f"chat {ROOT}"]
    (cell,) = named["execute_tool repl"]
    assert result.answer == "Lyon" and query.status.status_code != StatusCode.ERROR
    assert query.attributes["input.value"] == "Where did Acme open a factory?"
    assert json.loads(query.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Lyon"
    sent = json.loads(turn.attributes["gen_ai.input.messages"])
    assert sent[0]["role"] == "system" and "Where did Acme open a factory?" in json.dumps(sent)
    assert 'search_db("Acme factory")' in json.loads(cell.attributes["gen_ai.tool.call.arguments"])["code"]
    model_search = max(next(g for n, g in named.items() if n.startswith("retrieval")), key=lambda s: s.start_time)
    assert model_search.attributes["gen_ai.retrieval.query.text"] == "Acme factory"


def test_spans_reach_an_otlp_http_collector(llm, make_engine):
    """The set-up docs/opentelemetry.md shows (OTLP/HTTP exporter, batch processor, shutdown at exit), sending to a
    local receiver that decodes the protobuf request as a collector would."""
    import http.server
    import threading

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT, SUB
    from tests.engine.test_events import SEARCH_AND_BATCH
    from tests.engine.test_query import repl

    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "otlp-test"}))
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        answer = repl('answer["content"] = "12%"\nanswer["ready"] = True')
        server = llm({ROOT: by_turn(SEARCH_AND_BATCH, answer), SUB: lambda r: "ok"})
        make_engine(server).query("How much did Acme's revenue grow?", on_event=OpenTelemetrySubscriber(tracer_provider=provider))
        provider.shutdown()
    finally:
        collector.shutdown()
    assert received and {path for path, _ in received} == {"/v1/traces"}
    spans = []
    for _, body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "otlp-test"
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    names = sorted(s.name for s in spans)
    assert names.count(f"chat {ROOT}") == 2 and names.count(f"chat {SUB}") == 2 and "invoke_agent deeprecall" in names
    (query,) = [s for s in spans if s.name == "invoke_agent deeprecall"]
    attrs = {a.key: a.value for a in query.attributes}
    assert attrs["gen_ai.operation.name"].string_value == "invoke_agent"
    assert attrs["openinference.span.kind"].string_value == "AGENT"
    assert attrs["gen_ai.usage.input_tokens"].int_value > 0
    cell = next(s for s in spans if s.name == "execute_tool repl")
    assert {s.parent_span_id for s in spans if s.name == f"chat {SUB}"} == {cell.span_id}



def test_a_fault_in_the_subscriber_is_logged_by_type_not_raised(exporter, caplog):
    events = multi_turn_events()
    broken = events[-1].model_copy(update={"usage": {"root": {"m": {"input_tokens": "not a number " + QUESTION}}}})
    sub = subscriber(exporter)
    with caplog.at_level("WARNING", logger="deeprecall"):
        run(sub, [*events[:-1], broken])
    assert "OpenTelemetry subscriber: ValueError on a answer event" in caplog.text
    assert QUESTION not in caplog.text
