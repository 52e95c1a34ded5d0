"""The condition operators of `if_else` (docs/dsl.md §5.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import NodeError
from engine.values import is_number, json_equal, type_name_of


def _mismatch(op: str, left: Any, right: Any) -> NodeError:
    return NodeError("type_mismatch",
                     f"'{op}' cannot compare {type_name_of(left)} with {type_name_of(right)}",
                     details={"op": op})


def _ordered(op: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def holds(left: Any, right: Any) -> bool:
        both_numbers = is_number(left) and is_number(right)
        both_strings = isinstance(left, str) and isinstance(right, str)
        if not (both_numbers or both_strings):
            raise _mismatch(op, left, right)
        return compare(left, right)
    return holds


def _contains(left: Any, right: Any) -> bool:
    if left is None:
        return False
    if isinstance(left, str):
        if not isinstance(right, str):
            raise _mismatch("contains", left, right)
        return right in left
    if isinstance(left, list):
        return any(json_equal(item, right) for item in left)
    raise _mismatch("contains", left, right)


def _affix(op: str, test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def holds(left: Any, right: Any) -> bool:
        if left is None:
            return False
        if not (isinstance(left, str) and isinstance(right, str)):
            raise _mismatch(op, left, right)
        return test(left, right)
    return holds


def _is_empty(left: Any, right: Any) -> bool:
    return left is None or (isinstance(left, (str, list, dict)) and len(left) == 0)


def _member(op: str) -> Callable[[Any, Any], bool]:
    def holds(left: Any, right: Any) -> bool:
        if not isinstance(right, list):
            raise _mismatch(op, left, right)
        return any(json_equal(left, item) for item in right)
    return holds


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": json_equal,
    "ne": lambda left, right: not json_equal(left, right),
    "gt": _ordered("gt", lambda a, b: a > b),
    "ge": _ordered("ge", lambda a, b: a >= b),
    "lt": _ordered("lt", lambda a, b: a < b),
    "le": _ordered("le", lambda a, b: a <= b),
    "contains": _contains,
    "not_contains": lambda left, right: not _contains(left, right),
    "starts_with": _affix("starts_with", str.startswith),
    "ends_with": _affix("ends_with", str.endswith),
    "is_empty": _is_empty,
    "not_empty": lambda left, right: not _is_empty(left, right),
    "in": _member("in"),
    "not_in": lambda left, right: not _member("not_in")(left, right),
}

# Operators that look at `left` alone: a `right` with them is a mistake.
UNARY = frozenset({"is_empty", "not_empty"})
