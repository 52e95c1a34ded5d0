"""The `llm` node (docs/dsl.md §5.8): params and checks in specs_io, execution here.

The node renders its `system` and `prompt` templates, asks the provider the flow names
(one of the server's `Services.llm_providers`; `echo` is always there) for a streamed chat
completion, passes each piece on as a `node.chunk` event and returns the whole text with the
provider's token usage. Providers raise `provider_error` themselves; see docs/llm.md.
"""

from __future__ import annotations

from typing import Any

from engine.errors import NodeError
from engine.llm.echo import EchoProvider
from engine.nodes.base import NodeCall
from engine.nodes.specs_io import LlmSpec
from engine.ports import ChatProvider, ChatRequest, Usage

_ECHO = EchoProvider()


def provider_names(providers: dict[str, ChatProvider]) -> list[str]:
    """The names a flow may give `provider` on this server: the configured ones and `echo`."""
    return sorted({"echo", *providers})


def provider_named(providers: dict[str, ChatProvider], name: str) -> ChatProvider:
    """The provider called `name`; `invalid_param` naming the configured ones if none is.

    Validation cannot check the name when a flow is saved (it does not know the server's
    providers), so this is where an unknown name is reported.
    """
    provider = providers.get(name)
    if provider is None and name == "echo":
        provider = _ECHO
    if provider is None:
        known = provider_names(providers)
        raise NodeError("invalid_param",
                        f'unknown LLM provider "{name}"; this server has: {", ".join(known)}',
                        details={"param": "provider", "configured": known})
    return provider


class LlmNode(LlmSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        params = call.params
        provider = provider_named(call.services.llm_providers, params["provider"])
        system = call.resolve(params["system"]) if params.get("system") is not None else None
        api_key = call.resolve(params["api_key"]) if params.get("api_key") is not None else None
        request = ChatRequest(model=params.get("model"), prompt=call.resolve(params["prompt"]),
                              system=system or None, temperature=params.get("temperature"),
                              max_tokens=params.get("max_tokens"), api_key=api_key or None)
        text: list[str] = []
        usage = Usage(0, 0)
        stream = provider.stream(request)
        # A model may echo a secret (its own key): the stream is redacted as it goes, a
        # secret split across pieces included, and so is the text the node returns.
        redactor = call.services.redactor
        pieces = redactor.stream() if redactor else None
        try:
            async for piece in stream:
                if isinstance(piece, Usage):
                    usage = piece
                elif piece:
                    text.append(piece)
                    call.chunk(pieces.feed(piece) if pieces is not None else piece)
            if pieces is not None:
                call.chunk(pieces.flush())
        finally:
            # Close the provider's stream whatever happened (error, timeout, cancel), so its
            # connection is released now rather than when the generator is collected.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return {"text": redactor.text("".join(text)) if redactor else "".join(text),
                "usage": {"prompt_tokens": usage.prompt_tokens,
                          "completion_tokens": usage.completion_tokens}}
