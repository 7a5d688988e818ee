"""Where a webhook may be sent: the URL rules checked when an endpoint is saved, and the address
rules checked on every resolved address when a delivery is sent.

Both sides parse a URL with ``parse_target``, the parser of the HTTP client that sends, so the
host that was checked is the host that is reached.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves ``(host, port)`` to IP address strings; raises ``OSError`` when it cannot."""

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
CLOUD_METADATA = "a cloud metadata service"

# Special-use names that never lead outside the machine or its network.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
_LOCAL_NAMES = frozenset({"localhost", "home.arpa"})
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_HEX_DIGITS = frozenset("0123456789abcdef")
_DECIMAL_DIGITS = frozenset("0123456789")
_OCTAL_DIGITS = frozenset("01234567")
_FORBIDDEN_CHARS = frozenset("\\") | {chr(code) for code in range(0x21)} | {"\x7f"}


class InvalidWebhookUrlError(ValueError):
    """A URL no endpoint may have; the message says why, for the user who typed it."""


class TargetRefusedError(Exception):
    """A resolved address a delivery may not reach."""

    def __init__(self, address: IPAddress, reason: str) -> None:
        super().__init__(f"the address {address} is {reason}")
        self.address = address
        self.reason = reason


class NameNotResolvedError(Exception):
    """A host name that resolved to no address."""

    def __init__(self, host: str) -> None:
        super().__init__(f"the name {host} did not resolve to an address")
        self.host = host


@dataclass(frozen=True)
class Target:
    """A URL taken apart the way the HTTP client reads it."""

    url: str
    """Normalized: lowercase scheme and host, IDNA host, default port left out."""
    scheme: str
    host: str
    """ASCII (IDNA) host; an IPv6 address without brackets."""
    port: int
    """Explicit or the scheme's default."""
    address: IPAddress | None
    """The host when it is an IP address literal."""
    netloc: str
    """``host[:port]`` for the ``Host`` header: IPv6 in brackets, a default port left out."""
    path: str
    """Path and query."""


def parse_target(url: str) -> Target:
    """The URL's parts, or ``InvalidWebhookUrlError`` if it is not an absolute http(s) URL a
    webhook can go to: no user info, no fragment, no odd characters or IP address spellings."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrlError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(char in _FORBIDDEN_CHARS for char in url):
        raise InvalidWebhookUrlError("the URL contains spaces, control characters or backslashes")
    if "#" in url:
        raise InvalidWebhookUrlError("the URL has a fragment (#...)")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidWebhookUrlError(f"the URL is not valid: {exc}") from exc
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidWebhookUrlError("the URL must start with https:// (or http://)")
    if not parsed.is_absolute_url or not parsed.raw_host:
        raise InvalidWebhookUrlError("the URL has no host")
    if parsed.userinfo:
        raise InvalidWebhookUrlError("the URL may not contain a user name or password")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InvalidWebhookUrlError("the URL's port must be between 1 and 65535")
    if parsed.port == DEFAULT_PORTS[parsed.scheme]:
        parsed = parsed.copy_with(port=None)
    host = parsed.raw_host.decode("ascii")
    address = _literal_address(host)
    normalized = str(parsed)
    if len(normalized) > MAX_URL_LENGTH:
        raise InvalidWebhookUrlError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    return Target(
        url=normalized,
        scheme=parsed.scheme,
        host=host,
        port=parsed.port or DEFAULT_PORTS[parsed.scheme],
        address=address,
        netloc=parsed.netloc.decode("ascii"),
        path=parsed.raw_path.decode("ascii"),
    )


def check_url(url: str, *, allow_private: bool) -> str:
    """The normalized URL if an endpoint may have it, else ``InvalidWebhookUrlError``.

    Only https, to a public-looking host, unless ``allow_private`` (local testing). Names are not
    resolved here: the addresses are checked again on every delivery.
    """
    target = parse_target(url)
    if allow_private:
        return target.url
    if target.scheme != "https":
        raise InvalidWebhookUrlError("the URL must start with https://")
    if target.address is not None:
        reason = refusal(target.address)
        if reason is not None:
            raise InvalidWebhookUrlError(str(TargetRefusedError(target.address, reason)))
        return target.url
    if target.host in _LOCAL_NAMES or target.host.endswith(_LOCAL_SUFFIXES):
        raise InvalidWebhookUrlError(f"the host {target.host} is a local name")
    if "." not in target.host:
        # Resolved through the search domains of wherever the worker runs.
        raise InvalidWebhookUrlError(f"the host {target.host} is not a fully qualified name")
    return target.url


def refusal(address: IPAddress) -> str | None:
    """Why a delivery may not go to ``address``, or None if it may."""
    if isinstance(address, IPv4Address):
        return _ipv4_refusal(address)
    return _ipv6_refusal(address)


async def resolve(target: Target, *, allow_private: bool, resolver: Resolver) -> list[IPAddress]:
    """The addresses to deliver to, in the resolver's order; ``TargetRefusedError`` if any of
    them is refused (unless ``allow_private``), ``NameNotResolvedError`` if there are none."""
    if target.address is not None:
        addresses: list[IPAddress] = [target.address]
    else:
        try:
            found = await resolver(target.host, target.port)
            addresses = list(dict.fromkeys(_resolved_address(item) for item in found))
        except (OSError, ValueError) as exc:
            raise NameNotResolvedError(target.host) from exc
        if not addresses:
            raise NameNotResolvedError(target.host)
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise TargetRefusedError(address, reason)
    return addresses


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host``, without repeats, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = (str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
    return list(dict.fromkeys(addresses))


def _resolved_address(text: str) -> IPAddress:
    address = ip_address(text)
    # A link-local IPv6 answer carries its interface ("fe80::1%eth0"); the address is the same.
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return IPv6Address(text.partition("%")[0])
    return address


def _literal_address(host: str) -> IPAddress | None:
    if ":" in host:
        if "%" in host:
            raise InvalidWebhookUrlError("the URL's IPv6 address may not name an interface")
        try:
            return IPv6Address(host)
        except ValueError as exc:
            raise InvalidWebhookUrlError(f"the host {host} is not a valid IPv6 address") from exc
    labels = host.split(".")
    if any(not label or not set(label) <= _LABEL_CHARS for label in labels):
        raise InvalidWebhookUrlError(f"the host {host} is not a valid host name")
    if len(host) > 253 or any(len(label) > 63 for label in labels):
        raise InvalidWebhookUrlError(f"the host {host} is too long")
    if not _is_number(labels[-1]):
        return None
    try:
        return IPv4Address(host)
    except ValueError:
        pass
    # Resolvers read "2130706433", "0x7f.1" or "127.1" as 127.0.0.1: refuse such spellings
    # rather than agree with every resolver on what they mean.
    legacy = _legacy_ipv4(labels)
    if legacy is not None:
        raise InvalidWebhookUrlError(
            f"the host {host} is an IP address ({legacy}); write it as four decimal numbers"
        )
    raise InvalidWebhookUrlError(f"the host {host} ends in a number and is not an IP address")


def _is_number(label: str) -> bool:
    if label[:2] == "0x":
        return set(label[2:]) <= _HEX_DIGITS
    return set(label) <= _DECIMAL_DIGITS


def _legacy_ipv4(labels: list[str]) -> IPv4Address | None:
    """The address of a host in the forms inet_aton accepts (1 to 4 numbers, each decimal,
    octal with a leading 0, or hex with 0x), or None."""
    if len(labels) > 4:
        return None
    numbers: list[int] = []
    for label in labels:
        if label[:2] == "0x":
            digits, base, allowed = label[2:] or "0", 16, _HEX_DIGITS
        elif len(label) > 1 and label[0] == "0":
            digits, base, allowed = label[1:], 8, _OCTAL_DIGITS
        else:
            digits, base, allowed = label, 10, _DECIMAL_DIGITS
        if not set(digits) <= allowed:
            return None
        numbers.append(int(digits, base))
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for position, number in enumerate(head):
        value += number << (8 * (3 - position))
    return IPv4Address(value)


def _networks(*cidrs: str) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(cidr) for cidr in cidrs)


# First match wins, so the specific ranges come before the ranges holding them.
_IPV4_RULES = (
    (_networks("169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32"), CLOUD_METADATA),
    (_networks("0.0.0.0/32"), "unspecified"),
    (_networks("0.0.0.0/8"), "in 0.0.0.0/8 (this network)"),
    (_networks("127.0.0.0/8"), "loopback"),
    (_networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "private"),
    (_networks("100.64.0.0/10"), "carrier-grade NAT (shared address space)"),
    (_networks("169.254.0.0/16"), "link-local"),
    (_networks("192.0.0.0/24"), "reserved for protocol assignments"),
    (_networks("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"), "for documentation"),
    (_networks("198.18.0.0/15"), "for benchmarking"),
    (_networks("192.88.99.0/24"), "reserved (6to4 relay anycast)"),
    (_networks("224.0.0.0/4"), "multicast"),
    (_networks("255.255.255.255/32"), "broadcast"),
    (_networks("240.0.0.0/4"), "reserved"),
)

_IPV6_RULES = (
    (_networks("fd00:ec2::254/128"), CLOUD_METADATA),
    (_networks("::/128"), "unspecified"),
    (_networks("::1/128"), "loopback"),
    (_networks("::ffff:0:0:0/96"), "reserved (IPv4-translated)"),
    (_networks("64:ff9b:1::/48"), "reserved (local-use NAT64)"),
    (_networks("2001::/32"), "reserved (Teredo)"),
    (_networks("2001:2::/48"), "for benchmarking"),
    (_networks("2001:db8::/32", "3fff::/20"), "for documentation"),
    (_networks("100::/64"), "reserved (discard-only)"),
    (_networks("fe80::/10"), "link-local"),
    (_networks("fec0::/10"), "private (site-local)"),
    (_networks("fc00::/7"), "private (unique local)"),
    (_networks("ff00::/8"), "multicast"),
)

_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")


def _ipv4_refusal(address: IPv4Address) -> str | None:
    for networks, reason in _IPV4_RULES:
        if any(address in network for network in networks):
            return reason
    if address.is_private or address.is_reserved or not address.is_global:
        return "not publicly routable"
    return None


def _ipv6_refusal(address: IPv6Address) -> str | None:
    for networks, reason in _IPV6_RULES:
        if any(address in network for network in networks):
            return reason
    # Forms that carry an IPv4 address reach that address: they are as good as it is.
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind, inner = embedded
        inner_reason = _ipv4_refusal(inner)
        if inner_reason is not None:
            return f"{inner_reason} ({kind} {inner})"
        if kind == "IPv4-compatible":
            return "reserved (IPv4-compatible)"
        return None
    if address.is_private or address.is_reserved or not address.is_global:
        return "not publicly routable"
    return None


def _embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    low32 = IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _IPV4_MAPPED:
        return "IPv4-mapped", low32
    if address in _IPV4_COMPATIBLE:
        return "IPv4-compatible", low32
    if address in _NAT64:
        return "NAT64", low32
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    return None
