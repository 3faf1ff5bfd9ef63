"""SSRF guard for webhook URLs: a pure verdict over the addresses a host resolves to, and a resolver shell.

The edge asks at registration and the notifier again before every attempt, because DNS can change. The
notifier then connects to the address it checked (not to a second lookup), so a name cannot be rebound
between the check and the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(ValueError):
    """The URL may not be called; the message says why."""


def parse_ipv4_like_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C library reads from `host` (inet_aton: 1-4 parts, each decimal, 0x hex or
    0-prefixed octal; the last part fills the remaining bytes), e.g. `0x7f.1` and `2130706433` are
    127.0.0.1. None if it is not such a literal (then it is a name to resolve)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:], 16) if part[2:] else 0)
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
    if any(v < 0 for v in values):
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (4 - len(head))) | last
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host names literally (IPv6 in brackets, or any inet_aton IPv4 form)."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return parse_ipv4_like_inet_aton(bare)


# IPv6 ranges that carry an IPv4 address. Refused outright: tunnels and translations whose far end this
# process cannot see (6to4 and Teredo relay to any IPv4, including private ones on the relay's side; the
# local-use NAT64 prefix embeds its address at an operator-chosen length), and the deprecated
# IPv4-compatible and SIIT forms, which no public host uses.
_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("2002::/16"), "6to4"),
    (ipaddress.IPv6Network("2001::/32"), "Teredo"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible"),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "IPv4-translated (SIIT)"),
)
# Ranges whose last 32 bits are the IPv4 address actually reached: judged by that address.
_EMBEDS_V4: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64"),
)


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public internet address (None: it is). Covers loopback, RFC 1918, link-local
    (so cloud metadata at 169.254.169.254), CGNAT 100.64/10, unique-local, multicast, reserved; IPv6 that
    embeds an IPv4 is judged by that IPv4 (IPv4-mapped, NAT64) or refused outright (6to4, Teredo, ...)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_loopback or address.is_unspecified:  # ::1 and :: lie inside ::/96
            return "loopback" if address.is_loopback else "unspecified"
        for network, name in _REFUSED_V6:
            if address in network:
                return name
        for network, name in _EMBEDS_V4:
            if address in network:
                embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
                reason = blocked_reason(embedded)
                return None if reason is None else f"{name} {embedded}, {reason}"
    for name in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    if address in ipaddress.ip_network("100.64.0.0/10"):
        return "carrier-grade NAT"
    if not address.is_global:
        return "not globally routable"
    return None


def verdict(addresses: Sequence[IPAddress], allowlist: Sequence[IPNetwork]) -> str | None:
    """None if every address may be called; otherwise the reason for the first that may not. An address
    in the allowlist may always be called."""
    if not addresses:
        return "the host resolves to no address"
    for address in addresses:
        if any(address.version == net.version and address in net for net in allowlist):
            continue
        reason = blocked_reason(address)
        if reason is not None:
            return f"{address} is {reason}"
    return None


def parse_allowlist(entries: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: connect to `address`, send `host` as Host header and TLS server name."""

    url: str
    host: str
    port: int
    address: IPAddress


async def resolve(url: str, allowlist: Sequence[IPNetwork]) -> Target:
    """Check `url` (scheme, host, every address it resolves to); raise Refused with the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused("a webhook URL is http or https")
    if parts.hostname is None:
        raise Refused("a webhook URL needs a host")
    if parts.username or parts.password:
        raise Refused("a webhook URL carries no credentials; use the signing secret")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise Refused("the port is not a number between 0 and 65535") from error
    host = parts.hostname
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise Refused(f"cannot resolve {host}: {error.strerror}") from error
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    reason = verdict(addresses, allowlist)
    if reason is not None:
        raise Refused(f"refused: {host} resolves to a non-public address ({reason})")
    return Target(url, host, port, addresses[0])
