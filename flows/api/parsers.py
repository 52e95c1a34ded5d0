"""The one request parser: strict JSON that every backend can store."""

from __future__ import annotations

import json
import math
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Far above what a flow document may nest (64 levels, dsl.md §1, reported as `too_deep`),
# low enough that encoding the body again never meets Python's recursion limit.
MAX_DEPTH = 200


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class StrictJSONParser(JSONParser):
    """JSON without NaN or infinities, at most MAX_DEPTH deep, and without NUL characters
    (PostgreSQL cannot store them, so they are refused here for every backend alike)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            data = json.loads(stream.read().decode(encoding), parse_float=_finite,
                              parse_constant=_constant)
        except (ValueError, RecursionError) as error:
            raise ParseError(f"the body is not valid JSON: {_reason(error)}") from None
        problem = _unstorable(data)
        if problem:
            raise ParseError(f"the body is not acceptable JSON: {problem}")
        return data


def _reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return f"it nests deeper than {MAX_DEPTH} levels"
    return str(error)


def _unstorable(data: Any) -> str | None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"it nests deeper than {MAX_DEPTH} levels"
        if isinstance(value, str):
            if "\x00" in value:
                return "strings may not contain NUL (\\u0000) characters"
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return "keys may not contain NUL (\\u0000) characters"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None
