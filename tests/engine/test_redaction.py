"""Secrets never reach what a run records: a model that echoes its provider's key, whole or
split across streamed pieces, leaves `[redacted]` in chunks, outputs and every event."""

import json

import pytest

from engine.ports import Services, Usage
from engine.redaction import Redactor

from .runflows import chain, end, flow, node, run, start

KEY = "sk-live-0123456789abcdef"


class LeakyProvider:
    """Answers with its own key, cut into the given pieces."""

    def __init__(self, pieces):
        self.pieces = pieces

    def secrets(self):
        return (KEY,)

    async def stream(self, request):
        for piece in self.pieces:
            yield piece
        yield Usage(1, 1)


def leaky_flow():
    return flow([start(), node("ask", "llm", params={"provider": "leaky", "prompt": "key?"}),
                 node("say", "template", params={"template": "model said: {{ask.text}}"}),
                 end({"text": "{{say.text}}"})], chain("start", "ask", "say", "end"))


@pytest.mark.parametrize("pieces", [
    [f"my key is {KEY}, enjoy"],
    ["my key is sk-li", "ve-0123", "456789abcdef, enjoy"],
    ["my key is ", *KEY, ", enjoy"],  # one character at a time
])
async def test_a_key_echoed_by_the_model_is_recorded_nowhere(pieces):
    provider = LeakyProvider(pieces)
    services = Services(llm_providers={"leaky": provider},
                        redactor=Redactor(provider.secrets()))

    result, events = await run(leaky_flow(), services=services)

    assert result.status == "succeeded"
    assert KEY not in json.dumps(events)
    assert result.outputs == {"text": "model said: my key is [redacted], enjoy"}
    streamed = "".join(e["data"]["text"] for e in events if e["type"] == "node.chunk")
    assert streamed == "my key is [redacted], enjoy"


async def test_without_secrets_the_text_passes_unchanged():
    provider = LeakyProvider([f"my key is {KEY}"])

    result, _ = await run(leaky_flow(), services=Services(llm_providers={"leaky": provider}))

    assert result.outputs == {"text": f"model said: my key is {KEY}"}


def test_a_stream_holds_back_only_what_may_begin_a_secret():
    pieces = Redactor(["abcdefgh"]).stream()

    assert pieces.feed("xx abc") == "xx "  # "abc" may begin the secret
    assert pieces.feed("dzz") == "abcdzz"  # it did not
    assert pieces.feed("abcdefg") == ""
    assert pieces.feed("h!") == "[redacted]!"
    assert pieces.feed("ab") == ""
    assert pieces.flush() == "ab"


def test_values_are_redacted_in_strings_and_keys_without_being_changed():
    redactor = Redactor(["topsecret"])
    value = {"topsecret": ["a topsecret b", 3, None], "n": {"m": "topsecrettopsecret"}}

    assert redactor.value(value) == {"[redacted]": ["a [redacted] b", 3, None],
                                     "n": {"m": "[redacted][redacted]"}}
    assert value["n"]["m"] == "topsecrettopsecret"
    assert "topsecret" not in repr(redactor)


def test_short_texts_are_not_secrets():
    assert not Redactor(["", "abc"])
