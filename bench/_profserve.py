"""``cbk-vault serve`` under cProfile, for ``python bench/serve_load.py --profile``.

    python bench/_profserve.py OUT.pstats serve --path ... --port 0

The stand-in's event loop runs on a thread of its own (``vault._http.StandInServer``), and
cProfile only sees the thread that enabled it, so the server's ``_run`` is wrapped here to
profile that thread; the stats are written when the server stops (SIGTERM, as usual). Nothing
in the package is changed or needs a hook for this.
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
