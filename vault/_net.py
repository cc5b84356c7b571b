"""Which hosts are this machine: the one loopback test, shared by the stand-in and the sync client."""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = ["is_loopback"]

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """A loopback name or address (IPv4, IPv6 in brackets or not). Shared with the sync client,
    which allows plain http only to such a host; kept here so the server never imports httpx."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
