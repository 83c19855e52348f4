"""Callback URLs must not become a way into the operator's network (SSRF).

A URL is refused unless it is http(s) with a host and no credentials, and every address its
host resolves to is public. The check runs when the decision is created and again at connect
time, where pinned_target() hands back the very address it checked, so a DNS answer that
changes in between (rebinding) cannot redirect the request. CALLBACK_ALLOW_PRIVATE=1 lifts
the address check for local development and tests.

An IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible, SIIT, NAT64, 6to4,
Teredo, ISATAP) is delivered to that IPv4 address by a translator or relay, possibly one inside the
operator's network, so it is judged as that IPv4 address.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit


class RefusedAddress(ValueError):
    """The host resolves to an address callbacks may not reach."""


class UnresolvableHost(ValueError):
    """The host does not resolve (now)."""


# Prefixes whose last 32 bits are the IPv4 address: SIIT (RFC 2765), NAT64's well-known prefix
# (RFC 6052) and IPv4-compatible (RFC 4291, deprecated; also covers :: and ::1).
_IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("::ffff:0:0:0/96", "64:ff9b::/96", "::/96")
)
# NAT64's local-use prefix (RFC 8215): only a translator of the operator's own answers there, and
# where the IPv4 address sits depends on its local prefix length, so none of it is public.
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
# ISATAP's interface identifiers (the u bit clear or set): the router tunnels to the IPv4 address
# in the last 32 bits, whatever the /64 prefix is.
_ISATAP_INTERFACE_IDS = (bytes.fromhex("00005efe"), bytes.fromhex("02005efe"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return [ip.ipv4_mapped]
    if ip.teredo is not None:  # 2001::/32: (server, client); the client's bits come XORed, undone here
        return list(ip.teredo)
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48
        return [ip.sixtofour]
    if any(ip in prefix for prefix in _IPV4_IN_LAST_32_BITS):
        return [ipaddress.IPv4Address(ip.packed[-4:])]
    if ip.packed[8:12] in _ISATAP_INTERFACE_IDS:  # <any /64>:0:5efe:a.b.c.d (RFC 5214)
        return [ipaddress.IPv4Address(ip.packed[-4:])]
    return []


def _is_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global is False for private, loopback, link-local (incl. 169.254.169.254), CGNAT,
    # reserved, unspecified and ULA ranges; multicast needs its own check.
    return ip.is_global and not ip.is_multicast


def is_public_address(address: str) -> bool:
    """The one judgement of an address, at create and at connect: may a callback reach it?"""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return False
        if embedded := _embedded_ipv4(ip):
            return all(_is_global(v4) for v4 in embedded)
    return _is_global(ip)


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnresolvableHost(f"The host '{host[:100]}' does not resolve.") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse(url: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, its host name and port; ValueError with a reason if it cannot be one."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("The URL must not contain spaces or control characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("Use an http or https URL.")
    host = parts.hostname
    if not host:
        raise ValueError("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("The URL must not carry credentials (user:password@).")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("The URL's port is not valid.") from None
    return parts, host, port


def _checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    addresses = resolve(host, port)
    if not allow_private and (blocked := [a for a in addresses if not is_public_address(a)]):
        raise RefusedAddress(
            f"Callbacks to private, loopback or link-local addresses are refused ({blocked[0]})."
        )
    return addresses


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """Raise ValueError with a reason if the URL may not receive callbacks."""
    _parts, host, port = _parse(url)
    if not allow_private:
        _checked_addresses(host, port, allow_private=False)


@dataclass(frozen=True)
class PinnedTarget:
    url: str  # the URL with its host replaced by the checked address
    host_header: str
    sni_hostname: str | None  # for https: TLS is still verified against the real name


def pinned_target(url: str, *, allow_private: bool) -> PinnedTarget:
    """Resolve and check the URL's host now, and name the checked address to connect to.
    Raises RefusedAddress, UnresolvableHost, or ValueError for a malformed URL."""
    parts, host, port = _parse(url)
    address = _checked_addresses(host, port, allow_private=allow_private)[0]
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    name = f"[{host}]" if ":" in host else host
    host_header = name if parts.port is None else f"{name}:{parts.port}"
    return PinnedTarget(pinned, host_header, host if parts.scheme == "https" else None)
