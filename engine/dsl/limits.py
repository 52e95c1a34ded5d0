"""Size and depth limits, checked before anything else so a hostile document is refused fast."""

from __future__ import annotations

import json
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 10_000


def size_problem(document: Any) -> tuple[str, str] | None:
    """(code, message) when the document is too deep or too large.

    Depth is checked first, walking only the containers without recursion (so a 100,000-deep
    document costs 64 steps); the size is then that of the compact JSON, as UTF-8 bytes,
    which the C encoder measures faster than any walk in Python.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "too_deep", f"the document is nested deeper than {MAX_DEPTH} levels"
        if not isinstance(value, (dict, list)):
            continue
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    if not isinstance(document, (dict, list)):
        return None
    try:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None  # not JSON at all: the shape checks that follow say what is wrong
    size = len(text) if text.isascii() else len(text.encode())
    if size > MAX_BYTES:
        return "too_large", f"the document is larger than {MAX_BYTES // 1024} KiB"
    return None
