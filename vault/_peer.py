"""Which local process is at the other end of a connection, and what a process runs: for the access log.

Anything that cannot be known (another OS, the process gone, another user's process) is None; a
lookup never raises.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["exe_of"]

MAX_EXE: Final = 4096


def exe_of(pid: int) -> str | None:
    """The executable of a process (Linux ``/proc``), or None when it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")[:MAX_EXE]
    except OSError:
        return None
