"""DeepRecall's filter language, shared by every store adapter.

A filter is a dict:

    {"tenant": "acme"}                          equality
    {"year": {"$gte": 2020, "$lt": 2024}}       $gt $gte $lt $lte $ne $in $nin $eq
    {"$and": [f1, f2]}, {"$or": [f1, f2]}        boolean combination

Several keys in one dict mean AND. ``validate`` rejects anything else with a
``FilterError`` that names the problem, so a typo never silently matches all.

Tenancy: the host's enforced filter and the model's filter are combined with
``combine`` (an AND), so the model can only narrow what the host allows.

Semantics (``matches`` is the reference; every adapter agrees with it, which
the contract suite checks): a missing field fails every condition except
``$ne``/``$nin``, which it passes. Adapters translate conjunct by conjunct
(``partition``); what a store cannot express natively comes back as a residual
filter that the adapter applies in Python after over-fetching.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from deeprecall.errors import FilterError

Filter = dict[str, Any]
COMPARISON_OPS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"})
LOGICAL_OPS = frozenset({"$and", "$or"})
Scalar = (str, int, float, bool)
T = TypeVar("T")


def validate(filters: Any) -> Filter | None:
    """Return ``filters`` unchanged if it is valid; raise ``FilterError`` otherwise."""
    if filters is None or filters == {}:
        return None
    _check_node(filters, path="filters")
    return dict(filters)


def _check_node(node: Any, path: str) -> None:
    if not isinstance(node, dict) or not node:
        raise FilterError(f"{path} must be a non-empty dict such as {{'tenant': 'acme'}}; got {node!r}")
    for key, value in node.items():
        if not isinstance(key, str):
            raise FilterError(f"{path}: keys must be strings; got {key!r}")
        if key in LOGICAL_OPS:
            if not isinstance(value, list) or not value:
                raise FilterError(f"{path}.{key} must be a non-empty list of filters")
            for i, child in enumerate(value):
                _check_node(child, f"{path}.{key}[{i}]")
        elif key.startswith("$"):
            raise FilterError(
                f"{path}: unknown operator {key!r} at the top level; use $and/$or, or put "
                f"comparison operators under a field, e.g. {{'year': {{'$gte': 2020}}}}"
            )
        else:
            _check_condition(value, f"{path}.{key}")


def _check_condition(value: Any, path: str) -> None:
    if isinstance(value, Scalar):
        return
    if not isinstance(value, dict) or not value:
        raise FilterError(f"{path}: a field condition is a scalar or a dict of operators; got {value!r}")
    for op, operand in value.items():
        if op not in COMPARISON_OPS:
            raise FilterError(f"{path}: unknown operator {op!r}; allowed: {sorted(COMPARISON_OPS)}")
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand or not all(isinstance(v, Scalar) for v in operand):
                raise FilterError(f"{path}.{op} needs a non-empty list of scalars; got {operand!r}")
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            if isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
                raise FilterError(f"{path}.{op} needs a number or string; got {operand!r}")
        elif not isinstance(operand, Scalar):
            raise FilterError(f"{path}.{op} needs a scalar; got {operand!r}")


def combine(*filters: Filter | None) -> Filter | None:
    """AND the given filters together, dropping empty ones."""
    parts = [f for f in filters if f]
    if not parts:
        return None
    if len(parts) == 1:
        return dict(parts[0])
    return {"$and": [dict(p) for p in parts]}


def conjuncts(filters: Filter) -> list[Filter]:
    """Split a filter into single-condition dicts that must all hold.

    ``{"a": 1, "b": 2}`` becomes ``[{"a": 1}, {"b": 2}]``. Many native filter
    forms (Chroma's included) want one key per dict.
    """
    out: list[Filter] = []
    for key, value in filters.items():
        if key == "$and":
            for child in value:
                out.extend(conjuncts(child))
        else:
            out.append({key: value})
    return out


def matches(filters: Filter | None, metadata: dict[str, Any]) -> bool:
    """Evaluate a filter against one metadata dict, in Python.

    Used by stores without native filtering (and as the reference semantics
    in the contract tests). A missing field fails every condition but $ne/$nin.
    """
    if not filters:
        return True
    for key, value in filters.items():
        if key == "$and":
            if not all(matches(child, metadata) for child in value):
                return False
        elif key == "$or":
            if not any(matches(child, metadata) for child in value):
                return False
        elif not _condition_holds(metadata, key, value):
            return False
    return True


def _condition_holds(metadata: dict[str, Any], key: str, cond: Any) -> bool:
    ops = cond if isinstance(cond, dict) else {"$eq": cond}
    present = key in metadata
    actual = metadata.get(key)
    for op, operand in ops.items():
        if op == "$ne":
            ok = not present or actual != operand
        elif op == "$nin":
            ok = not present or actual not in operand
        elif not present:
            ok = False
        elif op == "$eq":
            ok = actual == operand
        elif op == "$in":
            ok = actual in operand
        else:
            ok = _compare(actual, op, operand)
        if not ok:
            return False
    return True


def _compare(actual: Any, op: str, operand: Any) -> bool:
    try:
        if op == "$gt":
            return bool(actual > operand)
        if op == "$gte":
            return bool(actual >= operand)
        if op == "$lt":
            return bool(actual < operand)
        return bool(actual <= operand)
    except TypeError:
        return False


class Untranslatable(Exception):
    """Raised by an adapter's translator for a condition its store cannot express natively."""


def partition(filters: Filter | None, translate: Callable[[Filter], T]) -> tuple[list[T], Filter | None]:
    """Split a filter into the conjuncts a store can express and the rest.

    ``translate`` turns one single-key conjunct into the store's native form or
    raises ``Untranslatable``. What it cannot take comes back as a residual
    filter, which the adapter applies with ``matches`` after over-fetching. The
    split is by conjunct, so the store still narrows everything it can.
    """
    if not filters:
        return [], None
    native: list[T] = []
    rest: list[Filter] = []
    for part in conjuncts(filters):
        try:
            native.append(translate(part))
        except Untranslatable:
            rest.append(part)
    if not rest:
        return native, None
    return native, rest[0] if len(rest) == 1 else {"$and": rest}


def operators(cond: Any) -> dict[str, Any]:
    """A field condition as a dict of operators: ``"acme"`` becomes ``{"$eq": "acme"}``."""
    return dict(cond) if isinstance(cond, dict) else {"$eq": cond}


def is_number(value: Any) -> bool:
    """True for int and float, false for bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
