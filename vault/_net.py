"""Which hosts are this machine: two tests, for two different questions.

* :func:`is_loopback_address` answers "may a token go here in clear text?" (the sync
  client's plain-http rule). Only what cannot be resolved elsewhere qualifies: an IPv4
  literal in 127.0.0.0/8, the IPv6 literal ``::1``, and the name ``localhost``, which
  RFC 6761 reserves for loopback. Names that merely look local (``localhost.localdomain``,
  ``ip6-localhost``) come from /etc/hosts or DNS and may point anywhere.
* :func:`is_loopback_name` answers "does this Host header name this machine?" (the
  stand-in's DNS-rebinding defence, and its bind-address rule). Here the usual local
  names are accepted too: a page on another name that rebinds to 127.0.0.1 still sends
  its own name, which is none of these.

Kept apart from the server and the client so the server never imports httpx.
"""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = ["is_loopback", "is_loopback_address", "is_loopback_name"]

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_IPV4_LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")
_IPV6_LOOPBACK: Final = ipaddress.IPv6Address("::1")


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback_address(host: str) -> bool:
    """An IPv4 literal in 127.0.0.0/8, the IPv6 literal ``::1`` (in brackets or not), or ``localhost``.

    The sync client's rule for plain http. Shorthands the resolver would expand (``127.1``,
    ``2130706433``), IPv4-mapped IPv6, scoped addresses and any other name are refused.
    """
    if host.lower() == "localhost":
        return True
    addr = _literal(host)
    if isinstance(addr, ipaddress.IPv4Address):
        return addr in _IPV4_LOOPBACK
    # IPv6Address equality includes the scope id, so "::1%lo" is not "::1".
    return addr == _IPV6_LOOPBACK


def is_loopback_name(host: str) -> bool:
    """A loopback name or address, any case: what the stand-in accepts in a Host header."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    addr = _literal(name)
    return addr is not None and addr.is_loopback


#: The stand-in's name for :func:`is_loopback_name` (vault/_http.py and vault/_serve_cli.py import it).
is_loopback = is_loopback_name
