"""Chat providers for the `llm` node (docs/dsl.md §5.8, docs/llm.md).

`echo` is the deterministic offline provider every server has; `OpenAICompatibleProvider`
speaks the OpenAI chat completions protocol with streaming; `providers_from_config` builds
the server's providers from `LLM_PROVIDERS`.
"""

from engine.llm.echo import EchoProvider
from engine.llm.openai import OpenAICompatibleProvider
from engine.llm.registry import ProviderConfigError, close_providers, providers_from_config

__all__ = [
    "EchoProvider",
    "OpenAICompatibleProvider",
    "ProviderConfigError",
    "close_providers",
    "providers_from_config",
]
