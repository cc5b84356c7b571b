"""Sync benchmark: a first push and a no-change sync against the stand-in on loopback, and peak memory.

    python bench/sync.py            N = 1k and 10k at the default concurrency (4), and 1k one at a time
    python bench/sync.py --quick    N = 1k only, default concurrency (well under 20 s; CI runs it)

The cloud is the stand-in as ``cbk-vault serve --ephemeral`` runs it (uvicorn, real HTTP on
127.0.0.1, its vault in a private RAM directory), in its own process. The client runs in a fresh
interpreter too (``--client``), so its peak RSS (VmHWM, /proc/self/status) is the sync's own: it
opens a vault of N secrets, pushes them all (first push: two requests per secret), then syncs
three times with nothing to do. Figures are printed, never asserted; the load average is shown
beside them, because on a shared machine every figure here is partly the neighbours'. The
method and the figures are in bench/README.md, "Sync".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PASS = "bench-pass"
TOKEN = "sk-bench-sync"  # a throwaway token for a loopback stand-in of a RAM vault

#: The goals of issue 16 ("scale"), judged at the largest N of the run.
PUSH_GOAL = 300.0  # secrets/s, first push
NOCHANGE_GOAL = 2.0  # seconds, a sync with nothing to do
#: "Flat" memory: what the sync adds to the process beyond the opened vault, per secret, at the
#: largest N may be at most this multiple of the same figure at 1k (it is O(N) by nature: the
#: planner holds both sides' fingerprints; flat means no per-secret cost that grows with N).
MEMORY_GOAL = 1.25


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def client(path: str, url: str, concurrency: int) -> dict[str, Any]:
    """In a fresh interpreter: open, push everything, then three syncs with nothing to do."""
    import vault
    from vault.sync import ChatBotKitRemote, sync

    with vault.open(path, PASS) as v, ChatBotKitRemote(TOKEN, url) as remote:
        n = len(v)
        rss_open = _status("VmRSS")
        cpu = time.process_time()
        t = time.perf_counter()
        report = sync(v, remote, direction="push", concurrency=concurrency)
        push_s = time.perf_counter() - t
        push_cpu = time.process_time() - cpu
        assert report.ok and len(report.created_remote) == n, "the push did not push every secret"
        hwm_push = _status("VmHWM")
        requests = remote.requests
        nochange: list[float] = []
        nochange_cpu: list[float] = []
        for _ in range(3):
            cpu = time.process_time()
            t = time.perf_counter()
            again = sync(v, remote, concurrency=concurrency)
            nochange.append(time.perf_counter() - t)
            nochange_cpu.append(time.process_time() - cpu)
            assert again.ok and not again.created_remote and not again.pulled, "a no-change sync changed something"
        return {
            "n": n,
            "concurrency": concurrency,
            "push_s": push_s,
            "push_cpu_s": push_cpu,
            "push_per_s": n / push_s,
            "push_requests": requests,
            "nochange_s": statistics.median(nochange),
            "nochange_all_s": nochange,
            "nochange_cpu_s": statistics.median(nochange_cpu),
            "rss_open_bytes": rss_open,
            "hwm_after_push_bytes": hwm_push,
            "hwm_bytes": _status("VmHWM"),
        }


def build(path: Path, n: int) -> None:
    """A vault of ``n`` secrets like bench/run.py's (bearer, 40-character value, two meta keys)."""
    import vault

    with vault.init(path, PASS, kdf=vault.KdfParams(1, 8192)) as v:
        for start in range(0, n, 1000):
            with v.batch():
                for i in range(start, min(n, start + 1000)):
                    v.secret.create(
                        name=f"svc-{i}",
                        description=f"API key for service {i}",
                        type="bearer",
                        value=f"sk_live_{i:032x}",
                        meta={"env": "prod", "team": f"t{i % 10}"},
                    )


def one(scratch: Path, n: int, concurrency: int) -> dict[str, Any]:
    """Build, start a fresh stand-in, run the client; both processes are stopped afterwards."""
    path = scratch / f"sync-{n}-{concurrency}.cbkv"
    build(path, n)
    env = dict(os.environ, CBK_VAULT_SERVE_TOKEN=TOKEN)
    env.pop("CBK_VAULT_PASSPHRASE", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "vault", "serve", "--ephemeral", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["baseUrl"]
        la = os.getloadavg()
        proc = subprocess.run(
            [sys.executable, __file__, "--client", str(path), url, str(concurrency)],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"the sync client failed:\n{proc.stderr}")
        out: dict[str, Any] = json.loads(proc.stdout)
        out["load_before"] = la[0]
        out["load_after"] = os.getloadavg()[0]
        return out
    finally:
        server.terminate()
        server.wait(timeout=30)
        path.unlink(missing_ok=True)


def goals(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    default = [r for r in runs if r["concurrency"] == 4]
    big = max(default, key=lambda r: r["n"])
    small = min(default, key=lambda r: r["n"])
    label = "" if big["n"] >= 10_000 else f" (measured at N={big['n']} only: quick run)"
    out = [
        {
            "goal": f"first push >= {PUSH_GOAL:.0f} secrets/s, concurrency 4 (N={big['n']}){label}",
            "figure": f"{big['push_per_s']:.0f}/s",
            "met": big["push_per_s"] >= PUSH_GOAL,
        },
        {
            "goal": f"no-change sync <= {NOCHANGE_GOAL:g} s (N={big['n']}){label}",
            "figure": f"{big['nochange_s']:.2f} s (CPU {big['nochange_cpu_s']:.2f} s)",
            "met": big["nochange_s"] <= NOCHANGE_GOAL,
        },
    ]
    if big is not small:
        per_small = (small["hwm_bytes"] - small["rss_open_bytes"]) / small["n"]
        per_big = (big["hwm_bytes"] - big["rss_open_bytes"]) / big["n"]
        ratio = per_big / per_small if per_small > 0 else float("inf")
        out.append(
            {
                "goal": f"memory flat: sync's peak over the opened vault, per secret, N={big['n']} within "
                f"{MEMORY_GOAL}x of N={small['n']}",
                "figure": f"{per_big / 1024:.1f} KiB vs {per_small / 1024:.1f} KiB per secret ({ratio:.2f}x)",
                "met": ratio <= MEMORY_GOAL,
            }
        )
    return out


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| N | concurrency | first push | secrets/s | requests | no-change sync (median of 3) | its CPU "
        "| RSS after open | peak RSS | load before/after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['n']:,} | {r['concurrency']} | {r['push_s']:.2f} s | {r['push_per_s']:,.0f} | "
            f"{r['push_requests']:,} | {r['nochange_s']:.3f} s | {r['nochange_cpu_s']:.3f} s | "
            f"{r['rss_open_bytes'] / 2**20:.0f} MiB | {r['hwm_bytes'] / 2**20:.0f} MiB | "
            f"{r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--client":
        path, url, concurrency = argv[1], argv[2], int(argv[3])
        print(json.dumps(client(path, url, concurrency)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 1k only, concurrency 4 (CI smoke run)")
    ap.add_argument("--dir", type=Path, help="scratch directory for the vaults (default: a new temp dir)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="cbkv-bench-sync-", dir=args.dir))
    plan = [(1000, 4)] if args.quick else [(1000, 4), (10_000, 4), (1000, 1)]
    runs: list[dict[str, Any]] = []
    try:
        for n, c in plan:
            print(f"  .. N={n}, concurrency {c} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            runs.append(one(scratch, n, c))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = {"quick": args.quick, "runs": runs, "goals": goals(runs), "elapsed_s": time.monotonic() - started}
    print(f"cbk-vault sync bench{' (quick)' if args.quick else ''}: the stand-in (uvicorn) on 127.0.0.1")
    print(table(runs))
    print("goals:")
    for g in results["goals"]:
        mark = {True: "MET    ", False: "NOT MET"}[g["met"]]
        print(f"  [{mark}] {g['goal']}: {g['figure']}")
    print(f"elapsed {results['elapsed_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
