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
