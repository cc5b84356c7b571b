"""``cbk-vault serve`` under cProfile, for ``python bench/serve_load.py --profile``.

    python bench/_profserve.py OUT.pstats serve --path ... --port 0

The stand-in's event loop runs on a thread of its own (``vault._http.StandInServer``), and
cProfile only sees the thread that enabled it, so the server's ``_run`` is wrapped here to
profile that thread; the stats are written when the server stops (SIGTERM, as usual). Nothing
in the package is changed or needs a hook for this. cProfile's clock is wall time: on a busy
machine a system call that the scheduler stretched (a loopback ``send`` wakes the client) looks
costlier than its CPU. Timing by the thread's CPU clock instead costs a system call per event and
multiplied the profiled cost per fetch by ten here, so serve_load.py's unprofiled per-layer
figures are the ones to quote; the profile says where inside a layer the time goes.
"""

from __future__ import annotations

import cProfile
import sys
from typing import Any

from vault import _http
from vault.cli import main

_out = sys.argv[1]
_plain_run = _http.StandInServer._run


def _profiled_run(self: Any) -> None:
    profile = cProfile.Profile()
    profile.enable()
    try:
        _plain_run(self)
    finally:
        profile.disable()
        profile.dump_stats(_out)


_http.StandInServer._run = _profiled_run  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[2:]))
