"""The Modal, E2B, Daytona and Prime adapters, end to end through the real engine.

These services cannot be reached from here, so every test runs the adapter
against a faithful local stand-in of its SDK (tests/sandboxes/standins.py):
the same class, method and argument names as the installed SDK, with the
worker in a local subprocess. The tests at the end keep the stand-ins honest
against the installed SDKs (pinned in the test extra): full signatures, the
models the adapters build and read, and the types of what the streams yield.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import typing
from typing import Any

import pytest

from deeprecall.errors import MissingDependencyError
from deeprecall.sandboxes import build_sandbox
from deeprecall.testing.scripted_server import by_turn
from tests.sandboxes import standins
from tests.signatures import conforms, model_problems, signature_problems, yielded_type

CLOUDS = ["modal", "e2b", "daytona", "prime"]
T1 = "```repl\nhits = search_db('Acme revenue 2023')\nprint([h['id'] for h in hits][:2])\nnote = llm_query('summarise ' + hits[0]['content'])\nprint(note)\n```"
T2 = "```repl\nanswer['content'] = 'Acme revenue grew 12% (' + note + ')'\nanswer['sources'] = [hits[0]['id']]\nanswer['ready'] = True\n```"


@pytest.mark.parametrize("environment", CLOUDS)
def test_a_query_runs_search_db_and_llm_query_in_the_stand_in(environment: str, llm: Any, make_engine: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in SDK (not the real service): the engine answers through the adapter's stream bridge."""
    sdk = standins.install(monkeypatch, environment)
    server = llm({"root-model": by_turn(T1, T2), "sub-model": lambda r: "sub says twelve"})
    engine = make_engine(server, environment=environment, environment_kwargs={"python": sys.executable, "pool_size": 1})
    result = engine.query("How did Acme's revenue change in 2023?")
    assert result.error is None, result.error_message
    assert result.answer == "Acme revenue grew 12% (sub says twelve)"
    assert [s.id for s in result.sources] == ["doc0"]
    engine.close()
    assert sdk.recorder.live == set(), "every sandbox is deleted after its query and at engine close"
    _assert_network_blocked(environment, sdk.recorder)


def _assert_network_blocked(environment: str, recorder: standins.Recorder) -> None:
    if environment == "modal":
        assert all(k["block_network"] is True for k in recorder.kwargs("Sandbox.create"))
        assert all(k["text"] is False for k in recorder.kwargs("Sandbox.exec"))
    elif environment == "e2b":
        assert all(k["allow_internet_access"] is False for k in recorder.kwargs("Sandbox.create"))
        assert all(k["timeout"] == 0 and k["stdin"] is True for k in recorder.kwargs("commands.run"))
    elif environment == "daytona":
        assert all(k["network_block_all"] is True for k in recorder.kwargs("Daytona.create"))
        assert all(k["suppress_input_echo"] is True for k in recorder.kwargs("execute_session_command"))
    else:
        assert recorder.kwargs("set_network") and all(k["deny"] == ["*"] for k in recorder.kwargs("set_network"))


@pytest.mark.parametrize("environment", CLOUDS)
def test_a_dying_worker_is_replaced_and_no_sandbox_is_left(environment: str, llm: Any, make_engine: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in SDK (not the real service): os._exit in the worker, a fresh sandbox takes over."""
    sdk = standins.install(monkeypatch, environment)
    server = llm({"root-model": by_turn("```repl\nimport os\nos._exit(3)\n```", "```repl\nFINAL('recovered')\n```")})
    engine = make_engine(server, environment=environment, environment_kwargs={"python": sys.executable, "pool_size": 0})
    result = engine.query("Anything?")
    assert result.answer == "recovered"
    engine.close()
    assert sdk.recorder.live == set()


@pytest.mark.parametrize("environment", CLOUDS)
def test_missing_sdk_names_the_extra(environment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, standins.MODULE_FOR[environment], None)
    with pytest.raises(MissingDependencyError, match=rf"deeprecall\[{environment}\]"):
        build_sandbox(environment, {})


# -- the stand-ins themselves ----------------------------------------------------
SURFACES = [
    # (real module, dotted path in the real SDK, stand-in module key, dotted path in the stand-in)
    ("modal", "App.lookup", "modal", "App.lookup"),
    ("modal", "Image.debian_slim", "modal", "Image.debian_slim"),
    ("modal", "Image.from_registry", "modal", "Image.from_registry"),
    ("modal", "Client.from_credentials", "modal", "Client.from_credentials"),
    ("modal", "Sandbox.create", "modal", "Sandbox.create"),
    ("modal", "Sandbox.exec", "modal", "Sandbox.exec"),
    ("modal", "Sandbox.terminate", "modal", "Sandbox.terminate"),
    ("modal", "io_streams.StreamWriter.write", "modal", "io_streams.StreamWriter.write"),
    ("modal", "io_streams.StreamWriter.drain", "modal", "io_streams.StreamWriter.drain"),
    ("modal", "io_streams.StreamWriter.write_eof", "modal", "io_streams.StreamWriter.write_eof"),
    ("e2b_code_interpreter", "Sandbox.create", "e2b_code_interpreter", "Sandbox.create"),
    ("e2b_code_interpreter", "Sandbox.kill", "e2b_code_interpreter", "Sandbox.kill"),
    ("e2b.sandbox_sync.commands.command", "Commands.run", "e2b_code_interpreter", "Sandbox.commands.run"),
    ("e2b", "CommandHandle.send_stdin", "e2b_code_interpreter", "CommandHandle.send_stdin"),
    ("e2b", "CommandHandle.close_stdin", "e2b_code_interpreter", "CommandHandle.close_stdin"),
    ("e2b", "CommandHandle.kill", "e2b_code_interpreter", "CommandHandle.kill"),
    ("daytona", "Daytona.__init__", "daytona", "Daytona.__init__"),
    ("daytona", "Daytona.create", "daytona", "Daytona.create"),
    ("daytona._sync.process", "Process.create_session", "daytona", "Process.create_session"),
    ("daytona._sync.process", "Process.execute_session_command", "daytona", "Process.execute_session_command"),
    ("daytona._sync.process", "Process.send_session_command_input", "daytona", "Process.send_session_command_input"),
    ("daytona._sync.process", "Process.get_session_command_logs_async", "daytona", "Process.get_session_command_logs_async"),
    ("daytona._sync.process", "Process.delete_session", "daytona", "Process.delete_session"),
    ("daytona._sync.sandbox", "Sandbox.delete", "daytona", "Sandbox.delete"),
    ("prime_sandboxes", "AsyncSandboxClient.__init__", "prime_sandboxes", "AsyncSandboxClient.__init__"),
    ("prime_sandboxes", "AsyncSandboxClient.create", "prime_sandboxes", "AsyncSandboxClient.create"),
    ("prime_sandboxes", "AsyncSandboxClient.wait_for_creation", "prime_sandboxes", "AsyncSandboxClient.wait_for_creation"),
    ("prime_sandboxes", "AsyncSandboxClient.set_network", "prime_sandboxes", "AsyncSandboxClient.set_network"),
    ("prime_sandboxes", "AsyncSandboxClient.open_process", "prime_sandboxes", "AsyncSandboxClient.open_process"),
    ("prime_sandboxes", "AsyncSandboxClient.delete", "prime_sandboxes", "AsyncSandboxClient.delete"),
    ("prime_sandboxes", "AsyncSandboxProcess.write_stdin", "prime_sandboxes", "AsyncSandboxProcess.write_stdin"),
    ("prime_sandboxes", "AsyncSandboxProcess.kill", "prime_sandboxes", "AsyncSandboxProcess.kill"),
    ("prime_sandboxes", "AsyncSandboxProcess.aclose", "prime_sandboxes", "AsyncSandboxProcess.aclose"),
    ("prime_sandboxes", "AsyncSandboxClient.aclose", "prime_sandboxes", "AsyncSandboxClient.aclose"),
]
MODELS = [  # (real module, name, stand-in module): request models the adapters build, response models they read
    ("daytona", "DaytonaConfig", "daytona"), ("daytona", "CreateSandboxFromSnapshotParams", "daytona"),
    ("daytona", "CreateSandboxFromImageParams", "daytona"), ("daytona", "SessionExecuteRequest", "daytona"),
    ("daytona", "SessionExecuteResponse", "daytona"),
    ("prime_sandboxes", "CreateSandboxRequest", "prime_sandboxes"), ("prime_sandboxes", "Sandbox", "prime_sandboxes"),
    ("prime_sandboxes.models", "EgressPolicyStatus", "prime_sandboxes"),
    ("prime_sandboxes.models", "SandboxEgressPolicy", "prime_sandboxes"),
]


def _resolve(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


@pytest.mark.parametrize(("real_module", "real_path", "stand_module", "stand_path"), SURFACES,
                         ids=[f"{m}:{p}" for m, p, _, _ in SURFACES])
def test_standins_match_the_installed_sdks(real_module: str, real_path: str, stand_module: str, stand_path: str) -> None:
    """The full signature: names, required parameters, positional order, scalar defaults, async-ness, return type.

    The SDKs are in the test extra (pinned there), so they are imported plainly: an SDK that moved a module
    fails this test instead of skipping it."""
    real = _resolve(importlib.import_module(real_module), real_path)
    stand_root = standins.BUILDERS[stand_module]()
    owner = stand_root.Sandbox() if stand_path == "Sandbox.commands.run" else stand_root  # commands live on an instance
    stand = _resolve(owner, stand_path.removeprefix("Sandbox.") if owner is not stand_root else stand_path)
    assert signature_problems(real, stand, owner=real_path.split(".")[-2]) == []


@pytest.mark.parametrize(("module", "name", "stand_module"), MODELS, ids=[f"{m}:{n}" for m, n, _ in MODELS])
def test_standin_models_match(module: str, name: str, stand_module: str) -> None:
    real = getattr(importlib.import_module(module), name)
    stand = getattr(standins.BUILDERS[stand_module](), name)
    assert model_problems(real, stand) == []


def test_e2b_stream_events_are_the_sdks_tuples() -> None:
    """E2B yields (stdout, None, None) / (None, stderr, None) / (None, None, pty) tuples of decoded text."""
    import e2b

    event_type = yielded_type(typing.get_type_hints(e2b.CommandHandle._handle_events)["return"])
    sandbox = standins.BUILDERS["e2b_code_interpreter"]().Sandbox.create()
    handle = sandbox.commands.run("printf out; printf err >&2", background=True, stdin=False, timeout=0)
    events = list(handle)
    sandbox.kill()
    assert all(conforms(event, event_type) for event in events), events
    assert "".join(e[0] for e in events if e[0]) == "out" and "".join(e[1] for e in events if e[1]) == "err"


@pytest.mark.parametrize("text", [True, False])
def test_modal_streams_are_bytes_or_str_as_the_sdk_declares(text: bool) -> None:
    """Modal's exec overloads: text=True gives ContainerProcess[str], text=False ContainerProcess[bytes]."""
    from modal.sandbox._sandbox import _Sandbox

    declared = {typing.get_type_hints(o)["text"]: typing.get_type_hints(o)["return"] for o in typing.get_overloads(_Sandbox.exec)}
    chunk_type = typing.get_args(declared[typing.Literal[text]])[0]
    modal = standins.BUILDERS["modal"]()
    sandbox = modal.Sandbox.create(app=modal.App.lookup("t"))
    process = sandbox.exec("/bin/sh", "-c", "printf out; printf err >&2", text=text)
    out, err = list(process.stdout), list(process.stderr)
    sandbox.terminate()
    assert out and err and all(isinstance(c, chunk_type) for c in out + err), (chunk_type, out, err)


def test_prime_streams_are_async_byte_iterators_as_the_sdk_declares() -> None:
    from prime_sandboxes.process import _AsyncProcessStream

    chunk_type = typing.get_type_hints(_AsyncProcessStream.__anext__)["return"]
    prime = standins.BUILDERS["prime_sandboxes"]()

    async def run() -> tuple[list[Any], list[Any]]:
        client = prime.AsyncSandboxClient()
        sandbox = await client.create(prime.CreateSandboxRequest(name="t"))
        await client.wait_for_creation(sandbox.id)
        process = await client.open_process(sandbox.id, "printf out; printf err >&2")
        out = [c async for c in process.stdout]
        err = [c async for c in process.stderr]
        await client.delete(sandbox.id)
        await client.aclose()
        return out, err

    out, err = asyncio.run(run())
    assert out and err and all(conforms(c, chunk_type) for c in out + err), (chunk_type, out, err)


def test_daytona_log_callbacks_get_the_sdks_type() -> None:
    import daytona._sync.process as real_process

    hint = typing.get_type_hints(real_process.Process.get_session_command_logs_async)["on_stdout"]
    arg_types = {typing.get_args(callback)[0][0] for callback in typing.get_args(hint)}  # Callable[[T], ...] | ...
    daytona = standins.BUILDERS["daytona"]()
    sandbox = daytona.Daytona().create()
    sandbox.process.create_session("s")
    command = daytona.SessionExecuteRequest(command="printf out; printf err >&2", run_async=True)
    cmd_id = sandbox.process.execute_session_command("s", command).cmd_id
    seen: list[Any] = []
    asyncio.run(sandbox.process.get_session_command_logs_async("s", cmd_id, seen.append, seen.append))
    sandbox.delete()
    assert sorted(seen) == ["err", "out"] and all(any(conforms(v, t) for t in arg_types) for v in seen), (arg_types, seen)


def test_adapters_import_no_sdk_until_used() -> None:
    code = ("import sys, deeprecall.sandboxes.modal, deeprecall.sandboxes.e2b, deeprecall.sandboxes.daytona, "
            "deeprecall.sandboxes.prime, deeprecall.sandboxes.local\n"
            "print([m for m in ('modal', 'e2b', 'e2b_code_interpreter', 'daytona', 'prime_sandboxes', 'docker') "
            "if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
