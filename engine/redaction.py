"""Redaction: secrets never reach what a run records.

A `Redactor` knows the secret texts of a run's world (the API keys of the LLM providers; the
owner's secrets once flows can name them) and replaces each occurrence with `[redacted]` in
any JSON value. The run's context applies it to every event it emits, so events, node runs
and outputs — all projections of events — never hold a secret, whatever echoed it (a model
repeating its key, a server answering with it). A node that streams text redacts the stream
as it goes with a `StreamRedactor`, which holds back a tail that could be the start of a
secret split across pieces.

With no secrets, nothing is walked: `Redactor` is false and the context skips it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MARK = "[redacted]"
SHORTEST = 6  # shorter texts would redact ordinary words; keys are far longer


class Redactor:
    __slots__ = ("secrets",)

    def __init__(self, secrets: Iterable[str] = ()):
        # The longest first: a secret containing another is replaced whole.
        self.secrets = tuple(sorted({s for s in secrets if isinstance(s, str)
                                     and len(s) >= SHORTEST}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __repr__(self) -> str:  # never the secrets themselves
        return f"Redactor({len(self.secrets)} secret(s))"

    def __add__(self, other: Redactor) -> Redactor:
        return Redactor(self.secrets + other.secrets)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MARK)
        return text

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
