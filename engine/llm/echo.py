"""`echo`: the deterministic, offline chat provider every server has (docs/dsl.md §5.8).

Its text is exactly the rendered prompt — the system prompt is not part of it — streamed
word by word: each chunk is a run of non-blank characters with the blanks that follow it
(a text that starts with blanks starts with a chunk of only blanks), so the chunks join back
into the prompt exactly, whitespace included.

Usage counts words (maximal runs of non-blank characters): `completion_tokens` those of the
text, `prompt_tokens` those of the system prompt plus those of the prompt.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from engine.ports import ChatRequest, Usage

# A word with the blanks after it, or blanks alone (only at the very start of a text).
_PIECES = re.compile(r"\S+\s*|\s+")


def word_count(text: str | None) -> int:
    """Words of `text`: maximal runs of non-blank characters."""
    return len(text.split()) if text else 0


def word_pieces(text: str) -> list[str]:
    """`text` cut into word-sized pieces that concatenate back into it exactly."""
    return _PIECES.findall(text)


class EchoProvider:
    """Streams the prompt back word by word, optionally `word_delay_s` seconds apart (demos).

    The delay is an `asyncio.sleep` between chunks, so cancelling the consuming task (the
    node's timeout, the run's cancel) stops it at once.
    """

    def __init__(self, word_delay_s: float = 0):
        if word_delay_s < 0:
            raise ValueError("word_delay_s must be >= 0")
        self.word_delay_s = word_delay_s

    def __repr__(self) -> str:
        return f"EchoProvider(word_delay_s={self.word_delay_s!r})"

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        prompt = request.prompt
        for number, piece in enumerate(word_pieces(prompt)):
            if number and self.word_delay_s:
                await asyncio.sleep(self.word_delay_s)
            yield piece
        yield Usage(prompt_tokens=word_count(request.system) + word_count(prompt),
                    completion_tokens=word_count(prompt))

    async def aclose(self) -> None:
        """Nothing to release; here so every provider can be closed alike."""
