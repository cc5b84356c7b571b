"""Benchmark rows for versions and the access log (figures printed, never asserted).

    python bench/history.py            # N = 10k; about a minute here
    python bench/history.py --quick    # N = 1k

Three rows, each measured A/B interleaved in the same run (the machine is shared, so only
same-run ratios mean anything; see bench/README.md):

1. fetch with the access log on versus off (goal: within 1.5x): the same vault, the
   retention's ``access_log`` flipped between rounds; median per-call time of random fetches.
2. durable update with history on versus off (goal: within 1.2x): two vaults of N secrets,
   one with the default retention, one with ``history=0``; one value update per call, each
   an fdatasync'd commit, alternating between the two vaults.
3. file size after compaction with 10 revisions of each of N secrets (history on: the
   default keeps all 10), against the same vault with history off.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vault

FAST = vault.KdfParams(opslimit=1, memlimit=8192)


def build(path: Path, n: int, *, history: bool) -> tuple[vault.Vault, list[str]]:
    v = vault.init(path, "bench", kdf=FAST)
    if not history:
        v.set_retention(history=0)
    ids: list[str] = []
    for start in range(0, n, 1000):
        with v.batch():
            for i in range(start, min(n, start + 1000)):
                ids.append(
                    v.secret.create(
                        name=f"secret-{i}", type="bearer", value=f"sk-{i:036d}", meta={"env": f"K{i}", "team": "a"}
                    ).id
                )
    return v, ids


def per_call(fn: Any, count: int) -> float:
    start = time.perf_counter_ns()
    for i in range(count):
        fn(i)
    return (time.perf_counter_ns() - start) / count / 1e9


def fetch_row(v: vault.Vault, ids: list[str], rounds: int, per: int) -> dict[str, float]:
    from vault._vault import engine_of

    index = engine_of(v)._index  # the retention flag flipped in memory: no commit between rounds
    pick = [random.Random(7).choice(ids) for _ in range(per)]
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        for flag, out in ((True, on), (False, off)):
            index.retention = index.retention.changed(access_log=flag)
            out.append(per_call(lambda i: v.secret.fetch(pick[i]), per))
    index.retention = index.retention.changed(access_log=True)
    return {"on": statistics.median(on), "off": statistics.median(off)}


def update_row(a: vault.Vault, a_ids: list[str], b: vault.Vault, b_ids: list[str], rounds: int) -> dict[str, float]:
    rnd = random.Random(11)
    on: list[float] = []
    off: list[float] = []
    for r in range(rounds):
        for v, ids, out in ((a, a_ids, on), (b, b_ids, off)):
            sid = rnd.choice(ids)
            t = time.perf_counter_ns()
            v.secret.update(sid, value=f"rotated-{r}")
            out.append((time.perf_counter_ns() - t) / 1e9)
    return {"on": statistics.median(on), "off": statistics.median(off)}


def size_row(directory: Path, n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, history in (("on", True), ("off", False)):
        path = directory / f"size-{label}.cbkv"
        v, ids = build(path, n, history=history)
        for rev in range(2, 11):  # 10 revisions of each secret
            with v.batch():
                for sid in ids:
                    v.secret.update(sid, value=f"rev-{rev}-{sid}")
        v.compact()
        out[label] = path.stat().st_size
        out[f"{label}_revisions_kept"] = sum(len(v.secret.history(sid)) for sid in ids[:10]) // 10
        v.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 1k, fewer rounds")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else 10_000
    with tempfile.TemporaryDirectory(prefix="cbkv-bench-history-") as tmp:
        d = Path(tmp)
        a, a_ids = build(d / "on.cbkv", n, history=True)
        b, b_ids = build(d / "off.cbkv", n, history=False)
        fetch = fetch_row(a, a_ids, 7 if args.quick else 15, 300 if args.quick else 1000)
        update = update_row(a, a_ids, b, b_ids, 60 if args.quick else 200)
        a.close()
        b.close()
        size = size_row(d, n)
    rows = [
        ("fetch, access log on / off", fetch["on"], fetch["off"], 1.5),
        ("durable update, history on / off", update["on"], update["off"], 1.2),
    ]
    print(f"cbk-vault bench: versions and the access log, N = {n}")
    print(f"{'row':<36} {'on':>10} {'off':>10} {'ratio':>7} {'goal':>6}")
    for name, on, off, goal in rows:
        ratio = on / off
        verdict = "met" if ratio <= goal else "MISSED"
        print(f"{name:<36} {on * 1e6:>8.1f}us {off * 1e6:>8.1f}us {ratio:>6.2f}x {goal:>5.1f}x {verdict}")
    mib = 1 << 20
    print(
        f"{'size after compaction, 10 revisions':<36} {size['on'] / mib:>8.2f}MiB {size['off'] / mib:>8.2f}MiB "
        f"{size['on'] / size['off']:>6.2f}x  (history on keeps {size['on_revisions_kept']} revisions each)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
