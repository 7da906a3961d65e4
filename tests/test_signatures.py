"""tests/signatures.py finds each kind of drift between a stand-in and its SDK."""
# ruff: noqa: UP007, UP037, UP045  (the "SDK" here is spelled as the real SDKs spell their types)

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel

from tests.signatures import conforms, model_problems, signature_problems, type_names


class _Client:  # the "SDK"
    def create(self, sandbox_id: str, command: str, cwd: Optional[str] = None, *, timeout: float = 60,
               **opts: Any) -> "_Sandbox":
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _Sandbox:
    pass


def test_a_faithful_stand_in_has_no_problems() -> None:
    def create(sandbox_id: str, command: str, cwd: str | None = None, *, timeout: float = 60) -> Sandbox:
        raise NotImplementedError

    assert signature_problems(_Client.create, create) == []


def test_every_kind_of_drift_is_named() -> None:
    def extra(sandbox_id: str, command: str, *, colour: str = "red") -> Sandbox:
        raise NotImplementedError

    def lacks(sandbox_id: str) -> Sandbox:
        raise NotImplementedError

    def optional(sandbox_id: str, command: str = "") -> Sandbox:
        raise NotImplementedError

    def swapped(command: str, sandbox_id: str) -> Sandbox:
        raise NotImplementedError

    def positional_timeout(sandbox_id: str, command: str, cwd: str | None = None, timeout: float = 60) -> Sandbox:
        raise NotImplementedError

    def default(sandbox_id: str, command: str, *, timeout: float = 0) -> Sandbox:
        raise NotImplementedError

    def returns(sandbox_id: str, command: str) -> dict[str, Any]:
        raise NotImplementedError

    def close() -> None:
        raise NotImplementedError

    assert signature_problems(_Client.create, extra) == ["the stand-in accepts 'colour', which the SDK does not"]
    assert signature_problems(_Client.create, lacks) == ["the SDK requires 'command', which the stand-in lacks"]
    assert signature_problems(_Client.create, optional) == ["the SDK requires 'command'; the stand-in gives it a default"]
    assert signature_problems(_Client.create, swapped) == [
        "positional parameters ['command', 'sandbox_id'] are not the SDK's ['sandbox_id', 'command', 'cwd'] in its order"]
    assert signature_problems(_Client.create, positional_timeout) == [
        "positional parameters ['sandbox_id', 'command', 'cwd', 'timeout'] are not the SDK's "
        "['sandbox_id', 'command', 'cwd'] in its order", "'timeout' is keyword-only in the SDK, not in the stand-in"]
    assert signature_problems(_Client.create, default) == ["'timeout' defaults to 0; the SDK's default is 60"]
    assert signature_problems(_Client.create, returns) == ["returns ['Any', 'dict', 'str']; the SDK returns ['Sandbox']"]
    assert signature_problems(_Client.close, close) == ["the SDK's is async; the stand-in's is not"]


class Sandbox:
    pass


def test_type_names_see_through_spelling() -> None:
    assert type_names(Optional[dict[str, Any]]) == type_names("dict[str, Any] | None") == {"dict", "str", "Any", "None"}
    assert type_names("modal._App") == {"App"} and type_names(_Sandbox) == {"Sandbox"}
    assert type_names("Self", owner="Sandbox") == {"Sandbox"}


def test_models_and_values() -> None:
    class Real(BaseModel):
        cmd_id: str
        output: Optional[str] = None

    class Lenient(BaseModel):
        cmd_id: Optional[str] = None
        extra: int = 0

    assert model_problems(Real, Lenient) == ["the stand-in has field 'extra', which the SDK's model lacks",
                                             "'cmd_id' is required in the SDK",
                                             "'cmd_id' is typed ['None', 'str']; the SDK types it ['str']"]
    event = Union[tuple[str, None, None], tuple[None, str, None]]
    assert conforms(("out", None, None), event) and not conforms(("out", None), event)
    assert not conforms((b"out", None, None), event)
