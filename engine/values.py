"""JSON values: the seven output types, text rendering and JSON equality (docs/dsl.md §2, §3, §5.4)."""

from __future__ import annotations

import json
import math
from typing import Any

from engine.errors import NodeError

TYPE_NAMES = ("string", "integer", "number", "boolean", "object", "array", "any")


DEFAULT_VALUE_MAX_BYTES = 4 * 1024 * 1024  # docs/dsl.md §3: a value a node makes, as JSON
DEFAULT_STORED_MAX_BYTES = 256 * 1024 * 1024  # docs/dsl.md §3: the values a run records
MAX_ITEMS = 100_000  # the most items an iteration takes
MAX_VALUE_DEPTH = 64  # as deep as a document may nest (docs/dsl.md §1)


def too_large(limit: int, what: str = "the value") -> NodeError:
    return NodeError("too_large", f"{what} would be larger than {limit:,} bytes as JSON "
                                  "(RUN_VALUE_MAX_BYTES)")


def json_size_over(value: Any, limit: int) -> bool:
    """Whether `value` as compact JSON is longer than `limit`: see oversize()."""
    return oversize(value, limit) is not None


def oversize(value: Any, limit: int, max_depth: int = MAX_VALUE_DEPTH) -> str | None:
    """Why `value` is too large to keep (longer than `limit` as compact JSON, or nested
    deeper than `max_depth`), or None. Walks only as far as needed: a 4 MiB limit is decided
    without building the text. Text counts by characters (a lower bound of its UTF-8
    bytes), so a value within the limit is never refused."""
    return measure(value, limit, max_depth)[1]


def measure(value: Any, limit: int, max_depth: int = MAX_VALUE_DEPTH) -> tuple[int, str | None]:
    """`value`'s size as compact JSON (counted as oversize() does), and why it is too large
    to keep, or None. Past the limit the walk stops: the size is then only `limit` + 1."""
    if type(value) is dict:  # most outputs: an object of a few texts, measured in one pass
        size = 1 + max(len(value), 1)
        for key, inner in value.items():
            if type(inner) is not str:
                break
            size += len(key) + len(inner) + 5  # two pairs of quotes and a colon
        else:
            if size <= limit:
                return size, None
    budget = limit
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            budget -= len(item) + 2
        elif isinstance(item, dict | list | tuple):
            if depth > max_depth:
                return limit - budget, f"nested deeper than {max_depth} levels"
            budget -= 1 + max(len(item), 1)  # brackets and commas
            if isinstance(item, dict):
                for key, inner in item.items():
                    budget -= len(key) + 3  # quotes and colon
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
        elif item is None or item is True:
            budget -= 4
        else:
            budget -= 5 if item is False else len(repr(item))
        if budget < 0:
            return limit - budget, f"larger than {limit:,} bytes as JSON (RUN_VALUE_MAX_BYTES)"
    return limit - budget, None


def render_text(value: Any) -> str:
    """Render a value into text: strings as they are, null as "", the rest as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return canonical_json(value)


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys and non-ASCII kept: the one text form of a value."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def is_integer(value: Any) -> bool:
    # bool is a subclass of int in Python but never an integer in JSON.
    return type(value) is int


def is_number(value: Any) -> bool:
    if type(value) is int:
        return True
    return type(value) is float and math.isfinite(value)


def type_name_of(value: Any) -> str:
    """The JSON type of a value, as a word for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_problem(value: Any, spec: dict[str, Any], where: str = "value") -> str | None:
    """Why `value` does not match the type spec `{"type": T, "items": …}`, or None if it does.

    null is a valid value of every type.
    """
    if value is None:
        return None
    expected = spec.get("type", "any")
    ok = {
        "any": lambda v: True,
        "string": lambda v: isinstance(v, str),
        "integer": is_integer,
        "number": is_number,
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }[expected](value)
    if not ok:
        return f"{where} must be {_article(expected)} {expected}, not {type_name_of(value)}"
    items = spec.get("items")
    if expected == "array" and items:
        for index, item in enumerate(value):
            problem = type_problem(item, items, f"{where}[{index}]")
            if problem:
                return problem
    return None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: 1 equals 1.0, true never equals 1, containers compared deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if type(left) is not type(right):
        return False
    return left == right
