"""Checking what a flow asks to send: the URL and the header names and values.

Each check raises ValueError with a message for the flow's author; the `http` node and the
guarded client turn it into `invalid_param`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx

from engine.net.policy import literal_ip

SCHEMES = ("http", "https")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
# Framing and connection headers belong to the client: a flow setting them could break the
# request's framing or the connection's reuse. Host is always the URL's host.
CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                            "keep-alive", "upgrade", "proxy-connection", "te", "trailer"})


def parse_url(text: str, what: str = "url") -> httpx.URL:
    """An absolute http(s) URL with a host; the fragment is dropped (it is never sent)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"the {what} is empty")
    if text != text.strip() or any(ch in text for ch in "\r\n\t\x00"):
        raise ValueError(f"the {what} has spaces or control characters around or inside it")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, UnicodeError) as error:
        raise ValueError(f"the {what} is not a valid URL: {error}") from None
    if url.scheme not in SCHEMES:
        shown = f'"{url.scheme}"' if url.scheme else "none"
        raise ValueError(f"the {what} must start with http:// or https:// (scheme: {shown})")
    host = url.raw_host.decode("ascii", "replace")
    if not host:
        raise ValueError(f"the {what} has no host")
    if literal_ip(host) is None and not _HOST_NAME.match(host.lower()):
        raise ValueError(f"the {what} has an invalid host: {url.host!r}")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"the {what} has an invalid port: {url.port}")
    if url.fragment:
        url = url.copy_with(fragment=None)
    return url


def header_pairs(headers: Mapping[str, str], *, allow_client_headers: bool = False,
                 ) -> list[tuple[bytes, bytes]]:
    """Header names and values as bytes (values UTF-8), after checking them."""
    pairs = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if not allow_client_headers and name.lower() in CLIENT_HEADERS:
            raise ValueError(f'the header "{name}" is set by the client and cannot be given')
        if not isinstance(value, str):
            raise ValueError(f'the header "{name}" must be a string')
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError(f'the header "{name}" contains a line break or NUL character')
        pairs.append((name.encode("ascii"), value.strip(" \t").encode("utf-8")))
    return pairs
