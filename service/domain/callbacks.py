"""Which `callbackUrl` a job may name: the service POSTs to it, so it must not be turned
against the service's own network (SSRF).

Only https to public addresses, checked on every address the host resolves to, at submission
and again at each send (the sender then connects to the address it checked, so DNS cannot
rebind the name to a private one in between). An IPv6 address that carries an IPv4 one
(IPv4-mapped and -compatible, NAT64, 6to4) is judged by the IPv4 address it reaches. A host an
operator lists in CALLBACK_ALLOWED_HOSTS may also use http and private or loopback addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from urllib.parse import urlsplit

from service.domain.errors import InvalidInput

MAX_CALLBACK_URL_LENGTH = 2048
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix (RFC 6052): the last 32 bits are the IPv4 address reached."""
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
"""Local-use NAT64 (RFC 8215): where it embeds the IPv4 address is the network's choice."""
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
"""Deprecated IPv4-compatible addresses (`::127.0.0.1`)."""


def validate_callback_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL a callback can go to; InvalidInput otherwise.

    What it resolves to is checked separately (`callback_refusal`), with the addresses."""
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise InvalidInput(f"callbackUrl must be at most {MAX_CALLBACK_URL_LENGTH} characters")
    if any(not (0x21 <= ord(c) < 0x7F) for c in url):
        raise InvalidInput("callbackUrl must be printable ASCII without spaces (percent-encode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("callbackUrl is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("callbackUrl must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("callbackUrl must not carry credentials (user:password@)")
    if parts.fragment:
        raise InvalidInput("callbackUrl must not have a #fragment")
    if port == 0:
        raise InvalidInput("callbackUrl must not name port 0")
    return url


def callback_host(url: str) -> str:
    """The host a (valid) callback URL names, lower-case, without brackets."""
    return (urlsplit(url).hostname or "").lower()


def is_allowed_host(host: str, allowed_hosts: Collection[str]) -> bool:
    return host.lower() in {h.strip().lower().strip("[]") for h in allowed_hosts}


def callback_refusal(
    url: str, addresses: Sequence[str], *, allowed_hosts: Collection[str]
) -> str | None:
    """Why a callback may not go to `url`, whose host resolved to `addresses`; None if it may."""
    host = callback_host(url)
    allowed = is_allowed_host(host, allowed_hosts)
    if urlsplit(url).scheme != "https" and not allowed:
        return "callbackUrl must use https (http only for a host in CALLBACK_ALLOWED_HOSTS)"
    if not addresses:
        return f"callbackUrl's host {host!r} does not resolve"
    if allowed:
        return None
    for address in addresses:
        ip = reached_address(ipaddress.ip_address(address.split("%", 1)[0]))
        if ip is None or not ip.is_global or ip.is_multicast:
            return (
                f"callbackUrl's host {host!r} resolves to {address}, which is not a public "
                "address (allowed only for a host in CALLBACK_ALLOWED_HOSTS)"
            )
    return None


def reached_address(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a connection to `ip` reaches: the IPv4 one an IPv6 address embeds (the
    translator or relay forwards there), `ip` itself otherwise; None when it cannot be told."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or ip in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in LOCAL_NAT64:
        return None
    return ip
