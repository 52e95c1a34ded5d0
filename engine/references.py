"""Parsing of `{{ … }}` references inside strings (docs/dsl.md §3).

Parsing is purely syntactic: it says where references are and what they name. What a name
means (a node, an input, `sys`, `item`) is decided by validation, which knows the graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_REFERENCE = re.compile(
    r"\s*(?P<head>[A-Za-z_][A-Za-z0-9_]*)(?P<path>(?:\.[^.\[\]{}\s]+|\[\d+\])*)\s*$"
)
_STEP = re.compile(r"\.([^.\[\]{}\s]+)|\[(\d+)\]")
_LITERAL_BRACES = re.compile(r"\s*'\{\{'\s*$")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ParsedReference:
    head: str
    path: Path
    source: str  # the text between the braces, for messages

    def __str__(self) -> str:
        return "{{" + self.source.strip() + "}}"


class ReferenceSyntaxError(ValueError):
    """A `{{` that does not open a valid reference."""


def parse_template(text: str) -> list[str | ParsedReference]:
    """Split text into literal pieces and references; raise ReferenceSyntaxError on bad braces."""
    if "{{" not in text:
        return [text]
    parts: list[str | ParsedReference] = []
    literal: list[str] = []
    position = 0
    while True:
        opening = text.find("{{", position)
        if opening < 0:
            literal.append(text[position:])
            break
        literal.append(text[position:opening])
        match = _BRACES.match(text, opening)
        if match is None:
            raise ReferenceSyntaxError(f"'{{{{' at character {opening} is never closed")
        inner = match.group(1)
        if _LITERAL_BRACES.match(inner):
            literal.append("{{")
        else:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(parse_reference(inner))
        position = match.end()
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    return [part for part in parts if part != ""]


def parse_reference(inner: str) -> ParsedReference:
    """Parse the text between braces: `node.output.key[0]`."""
    match = _REFERENCE.match(inner)
    if match is None:
        raise ReferenceSyntaxError(f"'{{{{{inner}}}}}' is not a reference")
    path: list[str | int] = []
    for key, index in _STEP.findall(match.group("path")):
        path.append(int(index) if index else key)
    return ParsedReference(match.group("head"), tuple(path), inner)

