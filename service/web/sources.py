"""Who sent a request, and whether an allow-list lets it in.

The sender is the connection's peer; only a peer in TRUSTED_PROXIES is believed about the
address it forwarded (`X-Forwarded-For`, read from the right: the last hop no trusted proxy
added). Addresses are compared with the networks parsed once with the settings; an IPv4-mapped
IPv6 peer (`::ffff:127.0.0.1`, what a dual-stack socket reports) counts as its IPv4 address.
This runs on the webhook hot path when an allow-list is set: a few microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


def parse_address(text: str) -> Address | None:
    """The address in `text` (IPv4-mapped IPv6 as IPv4), or None if it is none."""
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address | None, networks: Sequence[Network]) -> bool:
    """Whether `address` lies in any of `networks` (an unknown address lies in none)."""
    if address is None:
        return False
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]
) -> Address | None:
    """The sender's address; None when it cannot be known (a forwarded hop that is no address)."""
    address = parse_address(peer) if peer else None
    if not forwarded_for or not in_networks(address, trusted_proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        address = parse_address(hop)
        if not in_networks(address, trusted_proxies):
            return address
    return address
