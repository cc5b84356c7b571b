"""One of several concurrent writer processes for bench/run.py (the lock-contention row).

Usage: ``python bench/_writer.py PATH COUNT [--agent]``; stdin carries the passphrase (an
empty line with ``--agent``: the vault is used through the unlock agent, as ``vault.open(path)``
does), then a "go" line once every writer is ready (so all start together). Prints "ready",
then one JSON object: the per-create wall times in seconds.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2])
    via_agent = sys.argv[3:] == ["--agent"]
    passphrase = sys.stdin.readline().rstrip("\n")
    import vault

    v = vault.open(path) if via_agent else vault.open(path, passphrase, lock_timeout=60.0)
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal
    times: list[float] = []
    for i in range(count):
        t = time.perf_counter_ns()
        v.secret.create(name=f"w-{i}", type="bearer", value=f"sk_live_{i:032x}")
        times.append((time.perf_counter_ns() - t) / 1e9)
    v.close()
    print(json.dumps({"times": times}), flush=True)


if __name__ == "__main__":
    main()
