"""The server's chat providers, built from its `LLM_PROVIDERS` configuration (docs/llm.md).

`LLM_PROVIDERS` is a JSON object: provider name → `{"base_url", "api_key_env",
"default_model"}`. Keys are read from the environment variable each provider names (or from
the file named by `<variable>_FILE`), never from the configuration itself. `echo` is always
there and cannot be redefined. Every problem is raised at configuration time as a
`ProviderConfigError` whose message names the provider and the variable at fault — never the
value of a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.llm.echo import EchoProvider
from engine.llm.openai import OpenAICompatibleProvider
from engine.ports import ChatProvider

SETTING = "LLM_PROVIDERS"
ECHO = "echo"
_FIELDS = ("base_url", "api_key_env", "default_model")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # fits the node's `provider` param
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProviderConfigError(ValueError):
    """`LLM_PROVIDERS` or a variable it names is malformed; the message says which."""


def providers_from_config(config: Mapping[str, Any] | str | None, environ: Mapping[str, str], *,
                          echo_word_delay_s: float = 0) -> dict[str, ChatProvider]:
    """Provider name → provider: `echo` first, then one OpenAI-compatible provider per entry.

    `config` is the parsed `LLM_PROVIDERS` object (its JSON text, or None/empty for none).
    `environ` is where keys are read (usually `os.environ`).
    """
    config = _parse(config)
    providers: dict[str, ChatProvider] = {ECHO: EchoProvider(echo_word_delay_s)}
    for name, entry in config.items():
        where = f'{SETTING}: provider "{name}"'
        if name == ECHO:
            raise ProviderConfigError(f"{SETTING}: {ECHO!r} is built in and cannot be redefined")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProviderConfigError(
                f"{SETTING}: provider names are 1 to 100 letters, digits, '_', '.' or '-', "
                f"starting with a letter or digit, not {name!r}")
        if not isinstance(entry, Mapping):
            raise ProviderConfigError(f"{where} must be an object with {', '.join(_FIELDS)}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ProviderConfigError(f"{where} has unknown field(s) {', '.join(unknown)} "
                                      f"(known: {', '.join(_FIELDS)})")
        base_url = _base_url(where, entry.get("base_url"))
        default_model = entry.get("default_model")
        if default_model is not None and (not isinstance(default_model, str)
                                          or not default_model.strip()):
            raise ProviderConfigError(f"{where}: default_model must be a non-empty string")
        api_key = _api_key(where, entry.get("api_key_env"), environ)
        try:
            providers[name] = OpenAICompatibleProvider(base_url, api_key, default_model,
                                                       name=name)
        except ValueError as error:  # the key's characters; the message never holds the key
            raise ProviderConfigError(f"{where}: {error}") from None
    return providers


async def close_providers(providers: Mapping[str, Any]) -> None:
    """Close every provider that holds resources (pooled connections)."""
    for provider in providers.values():
        close = getattr(provider, "aclose", None)
        if close is not None:
            await close()


def _parse(config: Mapping[str, Any] | str | None) -> Mapping[str, Any]:
    if config is None:
        return {}
    if isinstance(config, str):
        if not config.strip():
            return {}
        try:
            config = json.loads(config)
        except ValueError as error:
            raise ProviderConfigError(f"{SETTING} is not valid JSON: {error}") from None
    if not isinstance(config, Mapping):
        raise ProviderConfigError(
            f"{SETTING} must be a JSON object: provider name → "
            '{"base_url", "api_key_env", "default_model"}')
    return config


def _base_url(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProviderConfigError(f"{where}: base_url is required, e.g. "
                                  '"https://api.openai.com/v1"')
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ProviderConfigError(f"{where}: base_url is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ProviderConfigError(f"{where}: base_url must be an http:// or https:// URL "
                                  f"with a host, not {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ProviderConfigError(f"{where}: base_url must not carry credentials, a query or "
                                  "a fragment (the key comes from api_key_env)")
    return value


def _api_key(where: str, variable: Any, environ: Mapping[str, str]) -> str | None:
    """The key from `environ[variable]` or the file `environ[variable + "_FILE"]` names.

    A provider without `api_key_env` sends no Authorization header (local model servers).
    """
    if variable is None:
        return None
    if not isinstance(variable, str) or not _VARIABLE.match(variable):
        raise ProviderConfigError(f"{where}: api_key_env must name an environment variable "
                                  f"(letters, digits and '_'), not {variable!r}")
    value = environ.get(variable, "")
    file_name = environ.get(f"{variable}_FILE", "")
    if value and file_name:
        raise ProviderConfigError(f"{where}: set {variable} or {variable}_FILE, not both")
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ProviderConfigError(f"{where}: {variable}_FILE: cannot read {file_name!r}: "
                                      f"{error.strerror}") from None
        if not value:
            raise ProviderConfigError(f"{where}: the file {variable}_FILE names is empty")
        return value
    value = value.strip()
    if not value:
        raise ProviderConfigError(f"{where} reads its API key from the environment variable "
                                  f"{variable}, which is not set (or empty)")
    return value
