"""Trace files: rlms's log format (its own Python types rebuild our lines; its viewer's reads hold), DeepRecall's
additions where docs/traces.md says, crash-safe lines, no secrets, several queries through one subscriber."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from deeprecall.errors import ConfigError
from deeprecall.observability import trace_file
from deeprecall.observability.trace_file import KEY, TraceDir, read_trace
from tests.observability.rlms_viewer import parse_like_rlms_viewer
from tests.observability.sample import ANSWER, QID, sample_events


def write(directory: Path, events: list[Any]) -> Path:
    sink = TraceDir(directory)
    for event in events:
        sink(event)
    (path,) = directory.iterdir()
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_file_per_query_named_by_time_and_query_id_private_to_the_user(tmp_path: Path) -> None:
    path = write(tmp_path, sample_events())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{6}Z_" + QID + r"\.jsonl", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [line["type"] for line in lines(path)] == ["metadata", "iteration", "iteration", "metadata"]


def test_names_sort_by_start_time() -> None:
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 9, 23, 59, 59, 999999, tzinfo=timezone.utc)
    names = [trace_file.trace_file_name(t0 + timedelta(microseconds=n), f"q{9 - n}") for n in range(3)]
    assert sorted(names) == names
    assert trace_file.trace_file_name(t0, "../../etc/passwd").endswith("_.._.._etc_passwd.jsonl")


def test_rlms_own_types_rebuild_every_line(tmp_path: Path) -> None:
    assert_rlms_rebuilds(write(tmp_path, sample_events()))


def assert_rlms_rebuilds(path: Path) -> None:
    """Our lines minus DeepRecall's keys are exactly what rlms's logger writes for the same run."""
    types = rlms_types()
    opening, *iterations, closing = lines(path)
    for meta in (opening, closing):
        fields = {k: v for k, v in meta.items() if k not in ("type", "timestamp", KEY)}
        assert types.RLMMetadata(**fields).to_dict() == fields
    for line in iterations:
        blocks = [types.CodeBlock(code=b["code"], result=types.REPLResult(
            stdout=b["result"]["stdout"], stderr=b["result"]["stderr"], locals=b["result"]["locals"],
            execution_time=b["result"]["execution_time"], final_answer=b["result"]["final_answer"],
            rlm_calls=[types.RLMChatCompletion.from_dict(c) for c in b["result"]["rlm_calls"]]))
            for b in line["code_blocks"]]
        rebuilt = types.RLMIteration(prompt=line["prompt"], response=line["response"], code_blocks=blocks,
                                     final_answer=line["final_answer"], iteration_time=line["iteration_time"]).to_dict()
        assert rebuilt == _without_ours(line)


def rlms_types() -> Any:
    """``rlm.core.types``, imported with rlms's ``load_dotenv()`` silenced as the engine does (not through the engine)."""
    import dotenv

    original = dotenv.load_dotenv
    dotenv.load_dotenv = lambda *args, **kwargs: False
    try:
        from rlm.core import types
    finally:
        dotenv.load_dotenv = original
    return types


def _without_ours(line: dict[str, Any]) -> dict[str, Any]:
    """Drop what DeepRecall adds: its key everywhere, and the viewer's token fields on sub-calls."""
    line = {k: v for k, v in line.items() if k not in ("type", "iteration", "timestamp", KEY)}
    line["code_blocks"] = [{"code": b["code"], "result": {**b["result"], "rlm_calls": [
        {k: v for k, v in c.items() if k not in (KEY, "prompt_tokens", "completion_tokens")}
        for c in b["result"]["rlm_calls"]]}} for b in line["code_blocks"]]
    return line


def test_rlms_viewer_reads_every_key_it_needs(tmp_path: Path) -> None:
    config, iterations = parse_like_rlms_viewer(write(tmp_path, sample_events()).read_text())
    assert config["root_model"] == "root-model" and config["backend"] == "vllm" and config["environment_type"] == "local"
    assert [it["iteration"] for it in iterations] == [1, 2]
    assert iterations[0]["prompt"][0] == {"role": "system", "content": "You are in a REPL."}
    assert iterations[-1]["final_answer"] == ANSWER  # the viewer's "final answer" card
    calls = iterations[0]["code_blocks"][1]["result"]["rlm_calls"]
    assert [(c["prompt_tokens"], c["completion_tokens"], c["execution_time"]) for c in calls] == [(300, 12, 0.055), (200, 5, 0.061)]


def test_searches_sub_calls_and_notes_sit_where_they_happened(tmp_path: Path) -> None:
    opening, first, second, closing = lines(write(tmp_path, sample_events()))
    assert opening[KEY]["question"] == "How did Acme's revenue change in 2023?"
    assert opening[KEY]["query_id"] == QID and opening[KEY]["schema"] == 1
    # the engine's own search before turn 1 is shown with turn 1, its step kept
    assert [(s["step"], s["hit_ids"]) for s in first[KEY]["searches"]] == [(0, ["doc0", "doc1"])]
    cell1, cell2 = first["code_blocks"]
    assert [(s["query"], s["hit_ids"], s["scores"]) for s in cell1[KEY]["searches"]] == [("revenue 2023", ["doc0", "doc2"], [0.88, 0.40])]
    assert cell1["result"]["stdout"].startswith("doc0\n") and cell1[KEY]["ended"]
    assert cell2["result"]["stderr"].startswith("ZeroDivisionError") and len(cell2["result"]["rlm_calls"]) == 2
    assert [n["type"] for n in first[KEY]["notes"]] == ["worker_restarted"]
    assert (first[KEY]["input_tokens"], first[KEY]["output_tokens"], first[KEY]["cost_usd"]) == (1200, 40, 0.0012)
    assert first["iteration_time"] == pytest.approx(1.2 - 0.48 - (0.5 - 0.45))  # turn 1's call started to turn 2's
    assert first["final_answer"] is None and second["final_answer"] == ANSWER
    result = closing[KEY]["result"]
    assert result["answer"] == ANSWER and result["error"] is None and result["grounded"]
    assert [s["id"] for s in result["sources"]] == ["doc0"]
    assert set(result["documents"]) == {"doc0", "doc1", "doc2"}  # every hit id resolves to its text
    assert result["usage"]["search_calls"] == 2 and "total_tokens" in result["usage"]


def test_a_limit_is_a_note_and_a_partial_answer_is_not_marked_final(tmp_path: Path) -> None:
    *_, last, closing = lines(write(tmp_path, sample_events(limit=True)))
    assert [(n["type"], n["reason"]) for n in last[KEY]["notes"]] == [("limit", "max_search_calls")]
    assert last["final_answer"] is None
    assert closing[KEY]["result"]["error"] == "max_search_calls" and closing[KEY]["result"]["answer"] == ANSWER


def test_a_query_that_dies_leaves_valid_lines_for_every_finished_turn(tmp_path: Path) -> None:
    path = write(tmp_path, sample_events(answered=False))
    assert [line["type"] for line in lines(path)] == ["metadata", "iteration"]  # turn 2 was still open
    with path.open("ab") as f:
        f.write(b'{"type": "iteration", "iteration": 2, "resp')  # a write torn by the crash
    trace = read_trace(path)
    assert (len(trace.iterations), trace.skipped_lines, trace.result) == (1, 1, None)
    assert trace.ours["query_id"] == QID


def test_no_secret_reaches_the_file(tmp_path: Path) -> None:
    text = write(tmp_path, sample_events()).read_text()
    assert "sk-SECRET" not in text
    assert lines(tmp_path / os.listdir(tmp_path)[0])[-1][KEY]["result"]["documents"]["doc0"]["metadata"]["api_key"] == "***"


def test_one_subscriber_writes_concurrent_queries_to_their_own_files(tmp_path: Path) -> None:
    sink = TraceDir(tmp_path)
    runs = [sample_events(f"q{n}") for n in range(8)]
    threads = [threading.Thread(target=lambda evs=evs: [sink(e) for e in evs]) for evs in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    traces = sorted((read_trace(p) for p in tmp_path.iterdir()), key=lambda t: t.ours["query_id"])
    assert [t.ours["query_id"] for t in traces] == [f"q{n}" for n in range(8)]
    assert all(len(t.iterations) == 2 and t.result and t.result["answer"] == ANSWER for t in traces)
    assert sink.path_of("q0") is None  # ended queries are forgotten


def test_an_abandoned_query_is_closed_when_too_many_are_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_file, "MAX_OPEN", 1)
    sink = TraceDir(tmp_path)
    for event in sample_events("old", answered=False):
        sink(event)
    old = sink.path_of("old")
    assert old is not None and len(read_trace(old).iterations) == 1
    sink(sample_events("new")[0])
    assert sink.path_of("old") is None and len(read_trace(old).iterations) == 2  # its open turn was written


def test_a_trace_dir_that_cannot_exist_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="trace_dir"):
        TraceDir(blocker / "traces")


def test_a_failing_disk_stops_the_trace_not_the_query(tmp_path: Path) -> None:
    sink = TraceDir(tmp_path)
    events = sample_events()
    sink(events[0])
    path = sink.path_of(QID)
    assert path is not None
    path.unlink()
    path.mkdir()  # the next open() of the file fails with EISDIR
    for event in events[1:]:
        sink(event)  # no exception reaches the emitter
    assert sink.path_of(QID) is None


def test_the_evidence_call_belongs_to_the_last_step_not_a_new_iteration(tmp_path: Path) -> None:
    from deeprecall.events import ModelTurn

    events = sample_events()
    evidence = ModelTurn(query_id=QID, t=1.22, step=2, model="root-model", text="From the documents: 12%.",
                         input_tokens=900, output_tokens=9, purpose="evidence")
    events.insert(-1, evidence)
    *_, last, _ = lines(write(tmp_path, events))
    assert [c["text"] for c in last[KEY]["evidence_calls"]] == ["From the documents: 12%."]
    assert last[KEY]["input_tokens"] == 1500  # the turn's own call, untouched


def test_a_query_with_no_turn_keeps_its_search_on_the_closing_line(tmp_path: Path) -> None:
    from tests.observability.sample import answer_event

    started, search = sample_events()[:2]
    _, closing = lines(write(tmp_path, [started, search, answer_event(error="llm_error")]))
    assert [s["hit_ids"] for s in closing[KEY]["searches"]] == [["doc0", "doc1"]]
    assert closing[KEY]["result"]["error"] == "llm_error"


# -- end to end: the real engine (scripted LLM server, rlms loop, sandbox worker, Chroma) with trace_dir= -------------
def test_trace_dir_writes_a_scripted_multi_turn_query_that_rlms_reads(tmp_path: Path, llm: Any, make_engine: Any) -> None:
    """Turn 1 searches and runs a batch of two sub-calls; turn 2's cell kills its worker; turn 3 drafts;
    max_iterations=3 ends it. The file holds all of it, rlms's types rebuild it, and the key never appears."""
    from deeprecall.testing.scripted_server import by_turn
    from tests.conftest import ROOT, SUB
    from tests.engine.test_events import CRASH, DRAFT_AGAIN, SEARCH_AND_BATCH

    server = llm({ROOT: by_turn(SEARCH_AND_BATCH, CRASH, DRAFT_AGAIN), SUB: lambda r: "note on " + r.last_user})
    engine = make_engine(server, max_iterations=3, filters={"tenant": "acme"}, trace_dir=tmp_path / "traces",
                         backend_kwargs={"model_name": ROOT, "base_url": server.base_url, "max_retries": 0,
                                         "api_key": "sk-e2e-SECRET"})
    result = engine.query("How much did Acme's revenue grow?")

    (path,) = (tmp_path / "traces").iterdir()
    assert path.name.endswith(f"_{result.query_id}.jsonl")
    text = path.read_text()
    assert "sk-e2e-SECRET" not in text
    config, iterations = parse_like_rlms_viewer(text)
    assert (config["root_model"], config["backend"], config["environment_type"]) == (ROOT, "vllm", "local")
    assert len(iterations) == 3
    assert [it["prompt"] for it in iterations] == [c.messages for c in server.calls_for(ROOT)]
    first, second, third = iterations
    assert [s["step"] for s in first[KEY]["searches"]] == [0]  # the engine's own search, before turn 1
    (cell,) = first["code_blocks"]
    assert [s["hit_ids"] for s in cell[KEY]["searches"]] == [["doc0"]]
    assert sorted(c["response"] for c in cell["result"]["rlm_calls"]) == ["note on first doc0", "note on second doc0"]
    assert [n["type"] for n in second[KEY]["notes"]] == ["worker_restarted"]
    assert [n["reason"] for n in third[KEY]["notes"]] == ["max_iterations"]
    closing = read_trace(path).result
    assert closing is not None and closing["answer"] == result.answer and closing["error"] == "max_iterations"
    assert closing["usage"]["total_tokens"] == result.usage.total_tokens
    assert set(closing["documents"]) == {s.id for s in result.retrieved}
    assert_rlms_rebuilds(path)


def test_a_child_query_gets_its_own_file_naming_its_parent(tmp_path: Path, llm: Any, make_engine: Any) -> None:
    from tests.conftest import ROOT
    from tests.engine.test_recursive import CHILD_SEARCHES, PARENT_ASKS, two_levels

    engine = make_engine(llm({ROOT: two_levels(PARENT_ASKS, CHILD_SEARCHES)}), max_depth=2, trace_dir=tmp_path / "t")
    result = engine.query("Where did Acme open a factory?")
    child_id = result.children[0].query_id

    traces = {read_trace(p).ours["query_id"]: read_trace(p) for p in (tmp_path / "t").iterdir()}
    assert set(traces) == {result.query_id, child_id}
    top, child = traces[result.query_id], traces[child_id]
    assert (top.ours["parent_query_id"], top.ours["depth"], top.metadata["max_depth"]) == (None, 1, 2)
    assert (child.ours["parent_query_id"], child.ours["depth"]) == (result.query_id, 2)
    assert top.result is not None and top.result["children"] == [child_id]
    assert child.result is not None and child.result["answer"] == "Lyon" and child.result["children"] == []


def test_trace_dir_can_be_set_in_deeprecall_yaml(tmp_path: Path) -> None:
    from deeprecall.config import DeepRecallConfig

    config_file = tmp_path / "deeprecall.yaml"
    config_file.write_text(f"backend: vllm\nbackend_kwargs: {{model_name: m}}\ntrace_dir: {tmp_path / 'traces'}\n")
    assert DeepRecallConfig.from_file(config_file).trace_dir == tmp_path / "traces"
