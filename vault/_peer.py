"""Which local process is at the other end of a connection: for the access log's ``peerPid``.

* A Unix socket: the kernel says (``SO_PEERCRED``), at no cost.
* TCP over loopback, on Linux: the peer's socket is the line of ``/proc/net/tcp`` (or ``tcp6``)
  whose local address is our remote one and whose remote address is our local one; its inode
  is held open by the peer, as ``socket:[inode]`` among ``/proc/<pid>/fd``. That walk costs a few
  milliseconds, and 100+ ms when a process of the same user holds thousands of descriptors, so
  it is bounded (MAX_DESCRIPTORS read, LOOKUP_BUDGET seconds: past either the peer is unknown),
  runs newest process first (a client is usually younger than the long-lived processes that hold
  many descriptors), and the stand-in does it at most once per connection, at the first request
  to a value route, before the vault's lock is taken.

Anything that cannot be known (another OS, the peer gone, another user's descriptors, a
remote peer) is None; a lookup never raises. A pid read this way is what the kernel says at
that moment: a peer that passed its socket to another process, or exited and whose pid was
reused, is not told apart (the access log's peer fields are evidence, not proof).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Final

__all__ = ["exe_of", "tcp_peer", "unix_peer"]

_TCP_TABLES: Final = ("/proc/net/tcp", "/proc/net/tcp6")
MAX_EXE: Final = 4096
#: A lookup reads at most this many descriptors' links (about 30 us each)...
MAX_DESCRIPTORS = 20_000
#: ...and gives up after this many seconds: a peer it did not find by then is unknown (None).
LOOKUP_BUDGET = 0.05
_clock = time.monotonic  # a seam for tests: the budget is checked against this


def exe_of(pid: int) -> str | None:
    """The executable of a process (Linux ``/proc``), or None when it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")[:MAX_EXE]
    except OSError:
        return None


def unix_peer(sock: socket.socket) -> int | None:
    """The pid at the other end of a Unix socket (``SO_PEERCRED``), or None."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = int(struct.unpack("3i", creds)[0])
    except (OSError, AttributeError, struct.error):  # not Linux, or not a Unix socket
        return None
    return pid if pid > 0 else None


def tcp_peer(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The pid of the local process whose TCP socket is connected from ``remote`` to ``local``
    (our side's addresses), or None."""
    try:
        found = _socket_of(remote, local)
        return None if found is None else _holder(*found)
    except (OSError, ValueError):
        return None


def _hex(address: tuple[str, int], *, v6: bool) -> str | None:
    """An address as the kernel prints it in /proc/net/tcp{,6}: each 32-bit word in host order."""
    host, port = address[0], address[1]
    try:
        if not v6:
            return f"{struct.unpack('=I', socket.inet_aton(host))[0]:08X}:{port:04X}"
        packed = socket.inet_pton(socket.AF_INET6, host if ":" in host else "::ffff:" + host)
    except OSError:
        return None
    return "".join(f"{word:08X}" for word in struct.unpack("=4I", packed)) + f":{port:04X}"


def _socket_of(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(inode, uid) of the socket connected from ``local`` to ``remote``, from the kernel's tables."""
    for table in _TCP_TABLES:
        v6 = table.endswith("6")
        want_local, want_remote = _hex(local, v6=v6), _hex(remote, v6=v6)
        if want_local is None or want_remote is None:
            continue
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the column names
                for line in lines:
                    fields = line.split()
                    if len(fields) > 9 and fields[1] == want_local and fields[2] == want_remote:
                        inode = int(fields[9])
                        return (inode, int(fields[7])) if inode else None
        except OSError:
            continue
    return None


def _holder(inode: int, uid: int) -> int | None:
    """The process holding socket ``inode``: only those of the socket's owner are looked at
    (another user's descriptors cannot be read anyway), newest pid first, within the bounds."""
    target = f"socket:[{inode}]"
    deadline = _clock() + LOOKUP_BUDGET
    left = MAX_DESCRIPTORS
    with os.scandir("/proc") as entries:
        pids = sorted((int(e.name) for e in entries if e.name.isdigit()), reverse=True)
    for pid in pids:
        if left <= 0 or _clock() >= deadline:
            return None  # past the bound: unknown, rather than stall the server
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for n, fd in enumerate(fds):
                    left -= 1
                    if left < 0 or (n & 63 == 63 and _clock() >= deadline):
                        return None
                    if os.readlink(fd.path) == target:
                        return pid
        except OSError:  # gone, or not ours to read
            continue
    return None
