"""Which addresses the `http` node may connect to (docs/dsl.md §5.7; docs/http.md).

An address is refused when it is not one the public internet can reach: private, loopback,
link-local, unspecified, shared (CGNAT), multicast, reserved or documentation ranges, IPv6
unique-local and site-local, and every IPv6 form that embeds an IPv4 address (IPv4-mapped,
IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo) when the embedded address is refused.
The operator may allow host names (HTTP_ALLOW_HOSTS); an allowed host skips the check.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import httpx

IPAddress = IPv4Address | IPv6Address

# Each range with why it is refused, first match wins. The IPv4 list is the IANA
# special-purpose registry's "not globally reachable" entries plus multicast and broadcast;
# `ipaddress`'s own flags back it up below, but the table decides the message.
_IPV4_BLOCKED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), reason) for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.88.99.0/24", "reserved (6to4 relay)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes the broadcast address 255.255.255.255
    ))

_IPV6_BLOCKED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), reason) for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "reserved (local-use NAT64)"),
        ("100::/64", "reserved (discard-only)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("2001:10::/28", "reserved (ORCHID)"),
        ("2001:20::/28", "reserved (ORCHIDv2)"),
        ("3fff::/20", "reserved (documentation)"),
        ("5f00::/16", "reserved (segment routing)"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ))

# IPv6 ranges whose low bits carry an IPv4 address: the IPv6 address is as reachable as that.
_IPV4_COMPATIBLE = IPv6Network("::/96")  # deprecated "IPv4-compatible" (::a.b.c.d)
_IPV4_TRANSLATED = IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_NAT64 = IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix, RFC 6052


def _embedded_ipv4(address: IPv6Address) -> list[tuple[IPv4Address, str]]:
    """IPv4 addresses an IPv6 address stands for, with the name of the form."""
    if address.ipv4_mapped is not None:
        return [(address.ipv4_mapped, "IPv4-mapped")]
    low32 = IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_TRANSLATED:
        return [(low32, "IPv4-translated")]
    if address in _NAT64:
        return [(low32, "NAT64")]
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are their own cases
        return [(low32, "IPv4-compatible")]
    if address.sixtofour is not None:
        return [(address.sixtofour, "6to4")]
    if address.teredo is not None:
        server, client = address.teredo
        return [(server, "Teredo server"), (client, "Teredo client")]
    return []


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why connecting to this address is refused ("a loopback address"), or None when it is
    publicly routable. Raises ValueError for something that is not an IP address."""
    return _describe(_blocked_category(address), show_embedded=True)


def _describe(category: str | tuple[str, IPv4Address, str] | None,
              show_embedded: bool) -> str | None:
    if category is None:
        return None
    if isinstance(category, tuple):
        form, inner, inner_category = category
        shown = f" ({inner})" if show_embedded else ""
        return f"the {form} form of {_article(inner_category)} address{shown}"
    return f"{_article(category)} address"


def _article(word: str) -> str:
    vowel = word[0] in "aeio" or (word.startswith("un") and not word.startswith("uni"))
    return f"{'an' if vowel else 'a'} {word}"


def _blocked_category(address: str | IPAddress) -> str | tuple[str, IPv4Address, str] | None:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, IPv6Address):
        if ip.scope_id:
            ip = IPv6Address(ip.compressed.split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded:
            for inner, form in embedded:
                category = _blocked_category(inner)
                if isinstance(category, str):
                    return form, inner, category
            return None
        table: Iterable[tuple[IPv4Network | IPv6Network, str]] = _IPV6_BLOCKED
    else:
        table = _IPV4_BLOCKED
    for network, reason in table:
        if ip in network:
            return reason
    # A safety net for ranges the tables miss (the standard library follows the IANA
    # registries): refuse anything it does not consider globally reachable.
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if not ip.is_global:
        return "not globally reachable"
    return None


def normalize_host(host: str) -> str:
    """The form host names are compared in: lower-case, IDNA (ASCII), no brackets or final
    dot; an IP address in its canonical (compressed) form.

    Uses httpx's own URL parsing, so an allow-list entry and a request URL that name the same
    host compare equal. Raises ValueError for something that is not a host name or address.
    """
    text = host.strip()
    if not text:
        raise ValueError("empty host name")
    if ":" in text and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address
    try:
        url = httpx.URL(f"http://{text}/")
    except httpx.InvalidURL as error:
        raise ValueError(f"not a host name: {host!r} ({error})") from None
    raw = url.raw_host.decode("ascii").lower().rstrip(".")
    if not raw or url.port is not None or url.raw_path != b"/" or url.userinfo:
        raise ValueError(f"not a host name: {host!r}")
    literal = _as_ip(raw)
    return literal.compressed if literal is not None else raw  # one spelling per address


def parse_allow_hosts(value: str | Iterable[str] | None) -> frozenset[str]:
    """HTTP_ALLOW_HOSTS (comma-separated, or already a list) as normalized host names."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        if not value.strip():
            return frozenset()
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise ValueError(f"HTTP_ALLOW_HOSTS has an empty item: {value!r}")
    else:
        items = list(value)
    hosts = {normalize_host(item) for item in items}
    return frozenset(hosts)


class BlockedAddress(Exception):
    """A connection the address policy refused; raised before any socket is opened."""

    def __init__(self, host: str, reason: str):
        self.host = host
        self.reason = reason
        super().__init__(f"refused to connect to {host}: {reason}")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The address rules plus the operator's allowed host names (exact, case-insensitive)."""

    allow_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_hosts(cls, hosts: str | Iterable[str] | None) -> AddressPolicy:
        return cls(parse_allow_hosts(hosts))

    def host_allowed(self, host: str) -> bool:
        if not self.allow_hosts:
            return False
        try:
            return normalize_host(host) in self.allow_hosts
        except ValueError:
            return False

    def check(self, host: str, addresses: Iterable[str | IPAddress]) -> None:
        """Raise BlockedAddress unless the host is allowed or every address is public."""
        if self.host_allowed(host):
            return
        literal = _as_ip(host)
        for address in addresses:
            category = _blocked_category(address)
            if category is not None:
                if literal is not None:
                    raise BlockedAddress(host, f"it is {_describe(category, True)}")
                # The resolved address is not named: flows should not learn internal DNS.
                raise BlockedAddress(host, f"the name resolves to {_describe(category, False)}")


# The legacy IPv4 spellings inet_aton (and so getaddrinfo) reads as an address: 127.1,
# 0x7f.0.0.1, 017700000001, 2130706433. No DNS name looks like this (a top-level label is
# never all digits or hex), so such a host is an address in disguise, checked as one.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}")


def _as_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names when it is an IP literal (brackets allowed), else None."""
    return _as_ip(host)
