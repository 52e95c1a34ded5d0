"""The one JSON reader for what clients send: API request bodies (flows/api/parsers.py),
websocket frames (flows/consumers.py), the pages' JSON inputs and the admin's imports alike,
as strict JSON that every backend can store."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Far above what a flow document may nest (64 levels, docs/dsl.md §1, reported as `too_deep`),
# low enough that encoding the body again never meets Python's recursion limit.
MAX_DEPTH = 200

# NUL (PostgreSQL cannot store it) and surrogates: JSON's `\ud83d\ude00` escapes decode to one
# character (😀), so a surrogate left in a decoded string came from a lone escape, which UTF-8
# cannot encode (no database stores it and no response can carry it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidJSON(ValueError):
    """What a client sent is not JSON, or not JSON that can be stored; the text says why, as
    the end of a sentence ("not valid JSON: …")."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:50]} is out of range")
    return number


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict_json_loads(text: str) -> Any:
    """JSON without NaN or infinities, at most MAX_DEPTH deep, and without NUL characters or
    lone surrogates in strings and keys (refused here for every backend alike). Raises
    InvalidJSON."""
    try:
        data = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except (ValueError, RecursionError) as error:
        raise InvalidJSON(f"not valid JSON: {_reason(error)}") from None
    problem = _unstorable(data)
    if problem:
        raise InvalidJSON(f"not acceptable JSON: {problem}")
    return data


def _reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return f"it nests deeper than {MAX_DEPTH} levels"
    return str(error)


def _character_problem(where: str, text: str) -> str:
    if "\x00" in text:
        return f"{where} may not contain NUL (\\u0000) characters"
    return f"{where} may not contain lone surrogates (\\ud800 to \\udfff without their pair)"


def _unstorable(data: Any) -> str | None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"it nests deeper than {MAX_DEPTH} levels"
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return _character_problem("strings", value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    return _character_problem("keys", key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None
