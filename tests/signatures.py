"""Compare a stand-in with the real SDK it plays: signatures, return types, pydantic models, yielded values.

Stand-ins (tests/sandboxes/standins.py, tests/vectorstores/pinecone_standin.py) are only worth what they
share with the real SDK. An adapter that passes against a stand-in must also be calling the real SDK right,
so these checks find every way a stand-in can be more lenient than, or shaped unlike, the SDK:

- it accepts a parameter the SDK does not know, or lacks (or does not require) one the SDK requires;
- its positional parameters are not the SDK's, in the SDK's order (adapters call positionally);
- a parameter the SDK takes only by keyword it takes positionally; ``*args`` on one side only;
- a scalar default differs (e.g. E2B's 60 s command timeout, which the adapter must override);
- it is sync where the SDK is async, or the other way round;
- its return annotation names other types than the SDK's (where the SDK annotates);
- a pydantic model has a field the SDK's lacks, lacks a required one, or types a field more widely;
- a value it yields or passes to a callback does not conform to the SDK's declared type (bytes vs str,
  E2B's ``(stdout, stderr, pty)`` tuples).

Types are compared by name (``modal._App`` and a stand-in ``App`` are both ``App``; ``Optional[Dict[str, Any]]``
and ``dict[str, Any] | None`` are both {dict, str, Any, None}), because the stand-ins cannot import the SDK's
private classes.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import types
import typing
from typing import Any

_P = inspect.Parameter
_VAR = (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
_POSITIONAL = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)
_ALIASES = {"Dict": "dict", "List": "list", "Tuple": "tuple", "Set": "set", "FrozenSet": "frozenset", "Type": "type",
            "NoneType": "None", "Mapping": "Mapping", "Sequence": "Sequence"}
_IGNORED = {"Optional", "Union", "typing", "Annotated", "collections", "abc", "typing_extensions", ""}
_SCALARS = (type(None), bool, int, float, str)


def _name(token: str, owner: str) -> set[str]:
    base = token.rsplit(".", 1)[-1].lstrip("_")
    if base == "Self":
        return {owner}
    if base in _IGNORED:
        return {"None"} if base == "Optional" else set()
    return {_ALIASES.get(base, base)}


def type_names(annotation: Any, owner: str = "") -> set[str]:
    """The type names an annotation mentions, normalised (see the module docstring). Empty: none given."""
    if annotation is inspect.Signature.empty:
        return set()
    if annotation is None or annotation is type(None):
        return {"None"}
    if isinstance(annotation, str):
        names: set[str] = set()
        text = re.sub(r"Annotated\[([^,\]]+),[^\]]*\]", r"\1", annotation)
        for token in re.findall(r"[A-Za-z_][\w.]*", text):
            names |= _name(token, owner)
        return names
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_names(typing.get_args(annotation)[0], owner)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(type_names(a, owner) for a in typing.get_args(annotation)))
    if origin is typing.Literal:
        return {"Literal"}
    if origin is not None:
        return type_names(origin, owner).union(*(type_names(a, owner) for a in typing.get_args(annotation)))
    if isinstance(annotation, type):
        return _name(annotation.__name__, owner)
    if isinstance(annotation, typing.TypeVar):
        return {"~" + annotation.__name__}
    return type_names(repr(annotation), owner)


def signature_problems(real: Any, stand: Any, owner: str = "") -> list[str]:
    """Every way ``stand`` (a stand-in callable) is more lenient than, or shaped unlike, ``real``."""
    rsig, ssig = inspect.signature(real), inspect.signature(stand)
    rparams = [p for p in rsig.parameters.values() if p.name not in ("self", "cls")]
    sparams = [p for p in ssig.parameters.values() if p.name not in ("self", "cls")]
    rnamed = {p.name: p for p in rparams if p.kind not in _VAR}
    snamed = {p.name: p for p in sparams if p.kind not in _VAR}
    problems = []
    for name in snamed.keys() - rnamed.keys():
        problems.append(f"the stand-in accepts {name!r}, which the SDK does not")
    for name, param in rnamed.items():
        if param.default is _P.empty:
            if name not in snamed:
                problems.append(f"the SDK requires {name!r}, which the stand-in lacks")
            elif snamed[name].default is not _P.empty:
                problems.append(f"the SDK requires {name!r}; the stand-in gives it a default")
    rpos = [p.name for p in rparams if p.kind in _POSITIONAL]
    spos = [p.name for p in sparams if p.kind in _POSITIONAL]
    if spos != rpos[:len(spos)]:
        problems.append(f"positional parameters {spos} are not the SDK's {rpos} in its order")
    if any(p.kind == _P.VAR_POSITIONAL for p in sparams) != any(p.kind == _P.VAR_POSITIONAL for p in rparams):
        problems.append("*args on one side only")
    for name, param in snamed.items():
        rparam = rnamed.get(name)
        if rparam is None:
            continue
        if rparam.kind == _P.KEYWORD_ONLY and param.kind != _P.KEYWORD_ONLY:
            problems.append(f"{name!r} is keyword-only in the SDK, not in the stand-in")
        if (isinstance(rparam.default, _SCALARS) and param.default is not _P.empty
                and (type(param.default), param.default) != (type(rparam.default), rparam.default)):
            problems.append(f"{name!r} defaults to {param.default!r}; the SDK's default is {rparam.default!r}")
    if inspect.iscoroutinefunction(real) != inspect.iscoroutinefunction(stand):
        problems.append(f"the SDK's is {'async' if inspect.iscoroutinefunction(real) else 'sync'}; the stand-in's is not")
    rret = type_names(rsig.return_annotation, owner)
    if rret and rret != type_names(ssig.return_annotation, owner):
        problems.append(f"returns {sorted(type_names(ssig.return_annotation, owner))}; the SDK returns {sorted(rret)}")
    return problems


def model_problems(real: Any, stand: Any) -> list[str]:
    """A stand-in pydantic model against the SDK's: same field names available, same requirements, same types."""
    rfields, sfields = real.model_fields, stand.model_fields
    problems = [f"the stand-in has field {name!r}, which the SDK's model lacks" for name in sfields.keys() - rfields.keys()]
    for name, field in rfields.items():
        if field.is_required() and name not in sfields:
            problems.append(f"the SDK's model requires {name!r}, which the stand-in lacks")
        elif name in sfields:
            if field.is_required() != sfields[name].is_required():
                problems.append(f"{name!r} is {'' if field.is_required() else 'not '}required in the SDK")
            rtype, stype = type_names(field.annotation), type_names(sfields[name].annotation)
            if not stype or not stype <= rtype:  # narrower is fine: the adapter would fail here first
                problems.append(f"{name!r} is typed {sorted(stype)}; the SDK types it {sorted(rtype)}")
    return problems


def conforms(value: Any, annotation: Any) -> bool:
    """Whether a runtime value fits an annotation (Union, Optional, fixed tuples, classes, Annotated)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin is typing.Annotated:
        return conforms(value, args[0])
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(conforms, value, args))
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, annotation)


def yielded_type(annotation: Any) -> Any:
    """T of Generator[T, ...] / Iterator[T] / AsyncIterator[T]."""
    origin = typing.get_origin(annotation)
    assert origin in (collections.abc.Generator, collections.abc.Iterator, collections.abc.AsyncIterator,
                      collections.abc.AsyncGenerator, collections.abc.Iterable), annotation
    return typing.get_args(annotation)[0]
