"""Peak memory of opening a vault, measured in a fresh interpreter (run by bench/run.py).

Usage: ``python bench/_memprobe.py PATH rss|tracemalloc`` with the passphrase on stdin
(never argv: argv is visible to every user of the machine). Prints one JSON object.

``rss``: the kernel's high-water mark of the process's resident set after import and
again after open + 100 fetches + one list page. Read from ``/proc/self/status`` VmHWM,
which belongs to this process image; ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is
reported too, but Linux carries it over ``execve`` from the parent (bench/run.py holds
several vaults in memory), so on Linux it can only overstate.
``tracemalloc``: the peak of Python allocations during the same work (slower; no
interpreter or library baseline in it).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc


def _hwm_bytes() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return None


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    passphrase = sys.stdin.readline().rstrip("\n")
    import vault

    vault.open  # noqa: B018 - `import vault` is lazy: the first public name imports the whole API (baseline)
    base_hwm = _hwm_bytes()
    if mode == "tracemalloc":
        tracemalloc.start()
    t = time.perf_counter()
    v = vault.open(path, passphrase)
    opened = time.perf_counter() - t
    page = v.secret.list(take=100)
    for s in page.items:
        v.secret.fetch(s.id)
    v.secret.list(take=20, order="asc")
    out: dict[str, float | str] = {"open_s": opened, "secrets": float(len(v))}
    if mode == "tracemalloc":
        _, peak = tracemalloc.get_traced_memory()
        out["peak_bytes"] = float(peak)
    else:
        maxrss = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        hwm = _hwm_bytes()
        out["ru_maxrss_bytes"] = maxrss
        out["source"] = "VmHWM" if hwm is not None else "ru_maxrss"
        out["baseline_bytes"] = base_hwm if base_hwm is not None else 0.0
        out["peak_bytes"] = hwm if hwm is not None else maxrss
    v.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
