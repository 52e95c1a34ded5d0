"""Size and depth limits, checked before anything else so a hostile document is refused fast."""

from __future__ import annotations

from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 10_000


def size_problem(document: Any) -> tuple[str, str] | None:
    """(code, message) when the document is too deep or too large, walking it without recursion.

    The size is that of the document as compact JSON, estimated while walking so that the walk
    stops as soon as either limit is passed (a 100 MiB document costs no more than a 1 MiB one).
    """
    size = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                return "too_deep", f"the document is nested deeper than {MAX_DEPTH} levels"
            size += 2 + len(value)  # braces, commas and colons
            for key, item in value.items():
                size += len(key) + 2
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                return "too_deep", f"the document is nested deeper than {MAX_DEPTH} levels"
            size += 2 + len(value)
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            size += (len(value) if value.isascii() else len(value.encode())) + 2
        else:
            size += len(str(value))
        if size > MAX_BYTES:
            return "too_large", f"the document is larger than {MAX_BYTES // 1024} KiB"
    return None
