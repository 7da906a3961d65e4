"""The Modal, E2B, Daytona and Prime adapters, end to end through the real engine.

These services cannot be reached from here, so every test runs the adapter
against a faithful local stand-in of its SDK (tests/sandboxes/standins.py):
the same class, method and argument names as the installed SDK, with the
worker in a local subprocess. ``test_standins_match_the_installed_sdks``
keeps the stand-ins honest against the real SDK source.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest

from deeprecall.errors import MissingDependencyError
from deeprecall.sandboxes import build_sandbox
from deeprecall.testing.scripted_server import by_turn
from tests.sandboxes import standins

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
]
MODELS = [  # pydantic request models: every stand-in field must exist in the real model
    ("daytona", "DaytonaConfig"), ("daytona", "CreateSandboxFromSnapshotParams"),
    ("daytona", "CreateSandboxFromImageParams"), ("daytona", "SessionExecuteRequest"),
    ("prime_sandboxes", "CreateSandboxRequest"),
]


def _resolve(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def _params(fn: Any) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(fn).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize(("real_module", "real_path", "stand_module", "stand_path"), SURFACES,
                         ids=[f"{m}:{p}" for m, p, _, _ in SURFACES])
def test_standins_match_the_installed_sdks(real_module: str, real_path: str, stand_module: str, stand_path: str) -> None:
    """Every argument a stand-in accepts, the real SDK accepts too, and async-ness matches."""
    real = _resolve(pytest.importorskip(real_module), real_path)
    stand_root = standins.BUILDERS[stand_module]()
    owner = stand_root.Sandbox() if stand_path == "Sandbox.commands.run" else stand_root  # commands live on an instance
    stand = _resolve(owner, stand_path.removeprefix("Sandbox.") if owner is not stand_root else stand_path)
    real_params, stand_params = _params(real), _params(stand)
    extra = set(stand_params) - set(real_params) - {"self", "cls"}
    assert not extra, f"the stand-in accepts {sorted(extra)}, which {real_module}.{real_path} does not"
    for name, param in stand_params.items():
        if name in real_params and name not in ("self", "cls"):
            assert param.kind == real_params[name].kind or real_params[name].kind == param.POSITIONAL_OR_KEYWORD, name
    if real_module == "prime_sandboxes" or real_path.endswith("_async"):
        assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(stand)


@pytest.mark.parametrize(("module", "name"), MODELS)
def test_standin_request_models_match(module: str, name: str) -> None:
    real = getattr(pytest.importorskip(module), name)
    stand = getattr(standins.BUILDERS[module](), name)
    assert set(stand.model_fields) <= set(real.model_fields)


def test_adapters_import_no_sdk_until_used() -> None:
    code = ("import sys, deeprecall.sandboxes.modal, deeprecall.sandboxes.e2b, deeprecall.sandboxes.daytona, "
            "deeprecall.sandboxes.prime, deeprecall.sandboxes.local\n"
            "print([m for m in ('modal', 'e2b', 'e2b_code_interpreter', 'daytona', 'prime_sandboxes', 'docker') "
            "if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
