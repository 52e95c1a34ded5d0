"""Redaction: secrets never reach what a run records.

A `Redactor` knows the secret texts of a run's world — the API keys of the LLM providers
(replaced by `[redacted]`) and the owner's secrets the run references (replaced by
`[secret:NAME]`, docs/secrets.md) — and replaces each occurrence in any JSON value. The
run's context applies it to every event it emits, so events, node runs and outputs — all
projections of events — never hold a secret, whatever echoed it (a model repeating its key, a
server answering with it). A node that streams text redacts the stream as it goes with a
`StreamRedactor`, which holds back a tail that could be the start of a secret split across
pieces.

A named secret is also found in the forms a request or a response commonly gives it back in:
escaped inside a JSON text and percent-encoded in a URL.

With no secrets, nothing is walked: `Redactor` is false and the context skips it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MARK = "[redacted]"
SHORTEST = 6  # shorter provider keys would redact ordinary words; keys are far longer


def secret_mark(name: str) -> str:
    return f"[secret:{name}]"


def _forms(value: str) -> set[str]:
    """The texts a secret may be recorded as: itself, JSON-escaped, percent-encoded."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            quote(value, safe=""), quote_plus(value, safe="")}


class Redactor:
    __slots__ = ("_marks", "_pattern", "secrets")

    def __init__(self, secrets: Iterable[str] = (), named: Mapping[str, str] | None = None):
        marks: dict[str, str] = {}
        for text in secrets:
            if isinstance(text, str) and len(text) >= SHORTEST:
                marks[text] = MARK
        for name, value in (named or {}).items():
            if isinstance(value, str) and value:
                for form in _forms(value):
                    marks.setdefault(form, secret_mark(name))
        self._set(marks)

    def _set(self, marks: dict[str, str]) -> None:
        self._marks = marks
        # The longest first: a secret containing another is replaced whole.
        self.secrets = tuple(sorted(marks, key=len, reverse=True))
        # One pass over the text, the marks themselves tried first and kept as they are: a
        # text redacted twice (a node's output, then its event) is redacted once, and a short
        # secret ("secret") never breaks a mark.
        kept = sorted(set(marks.values()), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, [*kept, *self.secrets]))) \
            if marks else None

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __repr__(self) -> str:  # never the secrets themselves
        return f"Redactor({len(self.secrets)} secret form(s))"

    def __add__(self, other: Redactor) -> Redactor:
        return Redactor.joined((self, other))

    @staticmethod
    def joined(redactors: Iterable[Redactor]) -> Redactor:
        """One redactor for the secrets of all of them (the first one's mark wins)."""
        marks: dict[str, str] = {}
        for redactor in redactors:
            for text, mark in redactor._marks.items():
                marks.setdefault(text, mark)
        combined = Redactor()
        combined._set(marks)
        return combined

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        marks = self._marks
        return self._pattern.sub(lambda match: marks.get(match.group(0), match.group(0)), text)

    def value(self, value: Any) -> Any:
        """`value` with every secret replaced, in strings and object keys; never mutated."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a text arriving in pieces: `feed` returns what is safe to pass on now,
    `flush` the rest once the stream ends."""

    __slots__ = ("_held", "_redactor")

    def __init__(self, redactor: Redactor):
        self._redactor = redactor
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._redactor.text(self._held + piece)
        hold = self._tail_that_may_begin_a_secret(text)
        self._held = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold]

    def flush(self) -> str:
        text, self._held = self._redactor.text(self._held), ""
        return text

    def _tail_that_may_begin_a_secret(self, text: str) -> int:
        longest = 0
        for secret in self._redactor.secrets:
            for size in range(min(len(secret) - 1, len(text)), longest, -1):
                if text.endswith(secret[:size]):
                    longest = size
                    break
        return longest


NO_SECRETS = Redactor()
