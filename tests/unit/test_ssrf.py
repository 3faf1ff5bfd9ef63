"""The SSRF guard: odd IPv4 spellings read as the C library reads them, non-public addresses refused."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.ssrf import Refused, literal_address, parse_allowlist, parse_ipv4_like_inet_aton, resolve, verdict


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ],
)
def test_literal_forms(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "256.1.1.1", "09.1.1.1", "1..1", ""])
def test_names_and_malformed_literals_are_not_addresses(host: str) -> None:
    assert parse_ipv4_like_inet_aton(host) is None


@given(st.integers(0, 2**32 - 1))
def test_inet_aton_agrees_with_the_c_library(number: int) -> None:
    for text in (str(number), hex(number), ".".join(str(b) for b in number.to_bytes(4, "big"))):
        assert parse_ipv4_like_inet_aton(text) == ipaddress.IPv4Address(socket.inet_aton(text))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "169.254.169.254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert verdict([ipaddress.ip_address(address)], []) is not None


def test_public_addresses_pass_and_the_allowlist_admits() -> None:
    assert verdict([ipaddress.ip_address("93.184.216.34")], []) is None
    allow = parse_allowlist(["127.0.0.1"])
    assert verdict([ipaddress.ip_address("127.0.0.1")], allow) is None
    assert verdict([ipaddress.ip_address("127.0.0.2")], allow) is not None
    # One bad address among good ones refuses the name.
    mixed = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.1")]
    assert verdict(mixed, []) is not None
    assert verdict([], []) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://0x7f.1:9/hook",
        "http://2130706433:9/hook",
        "http://localhost:9/hook",
    ],
)
async def test_the_acceptance_cases_are_refused_when_not_allowlisted(url: str) -> None:
    with pytest.raises(Refused, match="refused"):
        await resolve(url, [])


async def test_allowlisted_loopback_resolves_to_the_checked_address() -> None:
    target = await resolve("http://localhost:8080/x", parse_allowlist(["127.0.0.1", "::1"]))
    assert target.host == "localhost"
    assert target.port == 8080
    assert target.address.is_loopback


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http://user:pw@93.184.216.34/x", "file:///etc/passwd", "http:///x"]
)
async def test_other_schemes_and_credentials_are_refused(url: str) -> None:
    with pytest.raises(Refused):
        await resolve(url, [])


def _v4(number: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(number)


NON_PUBLIC_V4 = ["127.0.0.1", "10.0.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        # 6to4 and Teredo are refused whatever they carry: the relay that unwraps them sits elsewhere.
        ("2002:7f00:1::1", "6to4"),
        ("2002:a9fe:a9fe::1", "6to4"),
        ("2002:5db8:d822::1", "6to4"),  # a public IPv4 inside, still refused
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),  # server 65.54.227.120, client obfuscated
        ("2001:0:7f00:1:8000:ffff:80ff:fffe", "Teredo"),  # server 127.0.0.1, client ~127.0.0.1
        ("2001::1", "Teredo"),
        ("64:ff9b:1::7f00:1", "local-use NAT64"),
        ("64:ff9b:1::5db8:d822", "local-use NAT64"),
        ("::7f00:1", "IPv4-compatible"),
        ("::a9fe:a9fe", "IPv4-compatible"),
        ("::5db8:d822", "IPv4-compatible"),
        ("::ffff:0:7f00:1", "SIIT"),
        # Judged by the IPv4 they reach.
        ("::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1"),
        ("::ffff:169.254.169.254", "IPv4-mapped 169.254.169.254"),
        ("64:ff9b::7f00:1", "NAT64 127.0.0.1"),
        ("64:ff9b::a00:1", "NAT64 10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "NAT64 169.254.169.254"),
        ("64:ff9b::6440:1", "NAT64 100.64.0.1"),
        ("::1", "loopback"),
        ("::", "unspecified"),
    ],
)
def test_ipv6_that_embeds_ipv4_is_refused(address: str, reason: str) -> None:
    found = verdict([ipaddress.ip_address(address)], [])
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["::ffff:93.184.216.34", "64:ff9b::93.184.216.34", "2606:4700::1111"])
def test_ipv6_that_reaches_a_public_address_passes(address: str) -> None:
    assert verdict([ipaddress.ip_address(address)], []) is None


@given(st.sampled_from(NON_PUBLIC_V4), st.integers(0, 2**80 - 1))
def test_no_6to4_or_teredo_address_passes(v4: str, rest: int) -> None:
    embedded = int(ipaddress.IPv4Address(v4))
    six_to_four = ipaddress.IPv6Address(0x2002 << 112 | embedded << 80 | rest)
    teredo = ipaddress.IPv6Address(0x20010000 << 96 | embedded << 64 | rest & (2**64 - 1))
    assert verdict([six_to_four], []) is not None
    assert verdict([teredo], []) is not None


@given(st.integers(0, 2**32 - 1))
def test_mapped_and_nat64_agree_with_their_ipv4(number: int) -> None:
    plain = verdict([_v4(number)], []) is None
    for prefix in (0xFFFF << 32, 0x64FF9B << 96):
        assert (verdict([ipaddress.IPv6Address(prefix | number)], []) is None) == plain


async def test_a_literal_6to4_url_is_refused() -> None:
    with pytest.raises(Refused, match="6to4"):
        await resolve("http://[2002:7f00:1::1]:9/hook", [])
