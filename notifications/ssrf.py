"""Callback URLs must not become a way into the operator's network (SSRF).

A URL is refused unless it is http(s) with a host and no credentials, and every address its
host resolves to is public. CALLBACK_ALLOW_PRIVATE=1 lifts the address check for local
development and tests.
"""

import ipaddress
import socket
from urllib.parse import urlsplit


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for private, loopback, link-local (incl. 169.254.169.254), CGNAT,
    # reserved, unspecified and ULA ranges; multicast needs its own check.
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise ValueError(f"The host '{host[:100]}' does not resolve.") from None
    return sorted({info[4][0] for info in infos})


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """Raise ValueError with a reason if the URL may not receive callbacks."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("The URL must not contain spaces or control characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("Use an http or https URL.")
    if not parts.hostname:
        raise ValueError("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("The URL must not carry credentials (user:password@).")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("The URL's port is not valid.") from None
    if allow_private:
        return
    addresses = resolve(parts.hostname, port)
    if blocked := [a for a in addresses if not is_public_address(a)]:
        raise ValueError(
            f"Callbacks to private, loopback or link-local addresses are refused ({blocked[0]})."
        )
