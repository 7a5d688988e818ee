"""The SSRF guard: which URLs an endpoint may have and which addresses a delivery may reach."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from switchboard.webhooks.guard import (
    InvalidWebhookUrlError,
    NameNotResolvedError,
    TargetRefusedError,
    check_url,
    parse_target,
    refusal,
    resolve,
    system_resolver,
)
from tests.webhooks.receivers import StubResolver

REFUSED = [
    # loopback
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    # RFC 1918
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.0.1", "private"),
    ("192.168.255.255", "private"),
    # carrier-grade NAT
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    # link-local
    ("169.254.0.1", "link-local"),
    ("169.254.255.254", "link-local"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    # cloud metadata
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    # unique local and the old site-local
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fec0::1", "site-local"),
    # unspecified and "this network"
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "0.0.0.0/8"),
    ("0.255.255.255", "0.0.0.0/8"),
    # multicast, broadcast, reserved
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::101", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("254.1.2.3", "reserved"),
    ("192.0.0.8", "protocol assignments"),
    ("192.0.0.170", "protocol assignments"),
    ("192.88.99.1", "6to4 relay"),
    ("100::1", "discard-only"),
    ("4000::1", "not publicly routable"),
    # documentation and benchmarking
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("2001:2::1", "benchmarking"),
    # IPv6 forms carrying a refused IPv4 address
    ("::ffff:127.0.0.1", "loopback (IPv4-mapped 127.0.0.1)"),
    ("::ffff:10.1.2.3", "private (IPv4-mapped 10.1.2.3)"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:0.0.0.0", "unspecified (IPv4-mapped 0.0.0.0)"),
    ("::127.0.0.1", "loopback (IPv4-compatible 127.0.0.1)"),
    ("::10.0.0.1", "private (IPv4-compatible"),
    ("64:ff9b::7f00:1", "loopback (NAT64 127.0.0.1)"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata service (NAT64 169.254.169.254)"),
    ("64:ff9b::c0a8:101", "private (NAT64 192.168.1.1)"),
    ("2002:7f00:1::1", "loopback (6to4 127.0.0.1)"),
    ("2002:a00:1::", "private (6to4 10.0.0.1)"),
    ("2002:a9fe:a9fe::1", "cloud metadata service (6to4 169.254.169.254)"),
    # forms that cannot be checked or are not routable
    ("::8.8.8.8", "IPv4-compatible"),
    ("::ffff:0:7f00:1", "IPv4-translated"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "11.0.0.1",
    "100.63.255.255",
    "100.128.0.0",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "192.169.0.0",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:81a::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_addresses_say_why(address: str, reason: str) -> None:
    assert reason in (refusal(ip_address(address)) or "")


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None


def test_a_link_local_address_with_an_interface_is_refused() -> None:
    assert refusal(IPv6Address("fe80::1%eth0")) == "link-local"


VALID = [
    ("https://example.com/hooks", "https://example.com/hooks"),
    ("HTTPS://Example.COM/Hooks?Tenant=1", "https://example.com/Hooks?Tenant=1"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("HTTPS://Example.COM:443/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("  https://example.com/a\n", "https://example.com/a"),
    ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
    ("https://hooks.example.com/a%20b?c=d&e", "https://hooks.example.com/a%20b?c=d&e"),
    ("https://my_host.example.com/", "https://my_host.example.com/"),
    ("https://8.8.8.8/x", "https://8.8.8.8/x"),
    ("https://[2606:4700:4700::1111]:8443/x", "https://[2606:4700:4700::1111]:8443/x"),
    ("https://127.0.0.1.example.com/x", "https://127.0.0.1.example.com/x"),
]


@pytest.mark.parametrize(("url", "normalized"), VALID)
def test_valid_urls_come_back_normalized(url: str, normalized: str) -> None:
    assert check_url(url, allow_private=False) == normalized
    assert check_url(normalized, allow_private=False) == normalized


INVALID = [
    ("", "https://"),
    ("example.com/hooks", "https://"),
    ("//example.com/hooks", "https://"),
    ("ftp://example.com/", "https://"),
    ("javascript:alert(1)", "https://"),
    ("http://example.com/", "https://"),
    ("https:///hooks", "no host"),
    ("https://user:secret@example.com/", "user name or password"),
    ("https://user@example.com/", "user name or password"),
    ("https://example.com/#top", "fragment"),
    ("https://example.com/#", "fragment"),
    ("https://example.com/" + "a" * 2048, "longer than 2048"),
    ("https://example.com/" + "é" * 1000, "longer than 2048"),
    ("https://" + "a" * 64 + ".example/", "too long"),
    ("https://" + ("a" * 60 + ".") * 5 + "com/", "too long"),
    ("https://[1:2:3]/", "not valid"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com/a b", "spaces"),
    ("https://ex\tample.com/", "control characters"),
    ("https://example.com\\@127.0.0.1/", "backslashes"),
    ("https://example.com:0/", "port"),
    ("https://example.com:65536/", "port"),
    ("https://example.com./", "not a valid host name"),
    ("https://exa%41mple.com/", "not a valid host name"),
    ("https://a..b.example/", "not a valid host name"),
    ("https://[fe80::1%25eth0]/", "interface"),
    # local names
    ("https://localhost/", "local name"),
    ("https://LOCALHOST:8443/", "local name"),
    ("https://api.localhost/", "local name"),
    ("https://printer.local/", "local name"),
    ("https://metadata.google.internal/computeMetadata/v1/", "local name"),
    ("https://router.home.arpa/", "local name"),
    ("https://intranet/", "fully qualified"),
    # literal addresses
    ("https://127.0.0.1/", "the address 127.0.0.1 is loopback"),
    ("https://10.0.0.1:8443/", "the address 10.0.0.1 is private"),
    ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::1]/", "loopback"),
    ("https://[::]/", "unspecified"),
    ("https://[::ffff:127.0.0.1]/", "loopback (IPv4-mapped 127.0.0.1)"),
    ("https://[fd00:ec2::254]/", "cloud metadata"),
    ("https://[64:ff9b::a9fe:a9fe]/", "cloud metadata"),
    # IP addresses in the spellings resolvers accept
    ("https://0x7f.1/", "IP address (127.0.0.1)"),
    ("https://2130706433/", "IP address (127.0.0.1)"),
    ("https://0x7f000001/", "IP address (127.0.0.1)"),
    ("https://017700000001/", "IP address (127.0.0.1)"),
    ("https://127.1/", "IP address (127.0.0.1)"),
    ("https://127.0.1/", "IP address (127.0.0.1)"),
    ("https://0xa9.0xfe.0xa9.0xfe/", "IP address (169.254.169.254)"),
    ("https://0251.0376.0251.0376/", "not valid"),
    ("https://0/", "IP address (0.0.0.0)"),
    ("https://0x/", "IP address (0.0.0.0)"),
    ("https://1.2.3.4.5/", "ends in a number"),
    ("https://example.123/", "ends in a number"),
    ("https://example.0x1f/", "ends in a number"),
    ("https://300.1/", "ends in a number"),
    ("https://4294967296/", "ends in a number"),
    ("https://08.1/", "ends in a number"),
    ("https://0xg.1/", "ends in a number"),
    ("https://0177.0.0.1/", "not valid"),
    ("https://256.1.1.1/", "not valid"),
]


@pytest.mark.parametrize(("url", "message"), INVALID)
def test_invalid_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(InvalidWebhookUrlError) as caught:
        check_url(url, allow_private=False)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


PRIVATE_ONLY = [
    ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
    ("HTTP://Example.COM:80/a", "http://example.com/a"),
    ("http://localhost:3000/x", "http://localhost:3000/x"),
    ("http://receiver/x", "http://receiver/x"),
    ("http://api.internal/x", "http://api.internal/x"),
    ("https://[::1]:8443/", "https://[::1]:8443/"),
    ("http://169.254.169.254/", "http://169.254.169.254/"),
]


@pytest.mark.parametrize(("url", "normalized"), PRIVATE_ONLY)
def test_private_targets_and_http_need_allow_private(url: str, normalized: str) -> None:
    assert check_url(url, allow_private=True) == normalized
    with pytest.raises(InvalidWebhookUrlError):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://0x7f.1/",
        "http://2130706433/",
        "http://user:pass@localhost/",
        "http://localhost/#x",
        "file:///etc/passwd",
        "gopher://localhost:6379/_",
    ],
)
def test_allow_private_does_not_lift_the_url_rules(url: str) -> None:
    with pytest.raises(InvalidWebhookUrlError):
        check_url(url, allow_private=True)


def test_parse_target_takes_the_url_apart() -> None:
    target = parse_target("https://Bücher.example:8443/hooks/1?x=%20")
    assert target.scheme == "https"
    assert target.host == "xn--bcher-kva.example"
    assert target.port == 8443
    assert target.address is None
    assert target.netloc == "xn--bcher-kva.example:8443"
    assert target.path == "/hooks/1?x=%20"

    literal = parse_target("http://[::ffff:127.0.0.1]/")
    assert literal.address == IPv6Address("::ffff:127.0.0.1")
    assert literal.port == 80
    assert literal.netloc == "[::ffff:127.0.0.1]"
    assert parse_target("https://example.com").path == "/"


async def test_resolve_returns_the_addresses_in_order_without_repeats() -> None:
    resolver = StubResolver(
        {"hooks.example.com": ["2606:4700::1", "8.8.8.8", "2606:4700::1", "1.1.1.1"]}
    )
    target = parse_target("https://hooks.example.com:8443/x")
    addresses = await resolve(target, allow_private=False, resolver=resolver)
    assert addresses == [
        IPv6Address("2606:4700::1"),
        IPv4Address("8.8.8.8"),
        IPv4Address("1.1.1.1"),
    ]
    assert resolver.calls == [("hooks.example.com", 8443)]


async def test_resolve_refuses_when_any_address_is_refused() -> None:
    resolver = StubResolver({"mixed.example.com": ["8.8.8.8", "10.0.0.1", "1.1.1.1"]})
    target = parse_target("https://mixed.example.com/")
    with pytest.raises(TargetRefusedError) as caught:
        await resolve(target, allow_private=False, resolver=resolver)
    assert caught.value.address == IPv4Address("10.0.0.1")
    assert caught.value.reason == "private"
    assert str(caught.value) == "the address 10.0.0.1 is private"

    allowed = await resolve(target, allow_private=True, resolver=resolver)
    assert [str(address) for address in allowed] == ["8.8.8.8", "10.0.0.1", "1.1.1.1"]


async def test_resolve_strips_the_interface_of_a_link_local_answer() -> None:
    resolver = StubResolver({"ll.example.com": ["fe80::1%eth0"]})
    with pytest.raises(TargetRefusedError, match="fe80::1 is link-local"):
        await resolve(
            parse_target("https://ll.example.com/"), allow_private=False, resolver=resolver
        )


async def test_a_literal_address_is_not_resolved() -> None:
    resolver = StubResolver({})
    addresses = await resolve(
        parse_target("http://8.8.8.8/"), allow_private=False, resolver=resolver
    )
    assert addresses == [IPv4Address("8.8.8.8")]
    with pytest.raises(TargetRefusedError, match=r"the address 127\.0\.0\.1 is loopback"):
        await resolve(parse_target("http://127.0.0.1/"), allow_private=False, resolver=resolver)
    assert resolver.calls == []


@pytest.mark.parametrize("answers", [{}, {"gone.example.com": []}, {"gone.example.com": ["x"]}])
async def test_a_name_without_addresses_is_not_resolved(answers: dict[str, list[str]]) -> None:
    with pytest.raises(NameNotResolvedError, match=r"gone\.example\.com did not resolve"):
        await resolve(
            parse_target("https://gone.example.com/"),
            allow_private=False,
            resolver=StubResolver(answers),
        )


async def test_the_system_resolver_answers_addresses() -> None:
    assert "127.0.0.1" in await system_resolver("localhost", 443)
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
    assert await system_resolver("::1", 80) == ["::1"]
    with pytest.raises(socket.gaierror):
        await system_resolver("no such name", 80)
