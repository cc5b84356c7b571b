"""A/B a core patch: the same measurements on scratch copies of the package, alternating.

    python bench/_ab.py --vault V100K.cbkv base=/tmp/m0 patched=/tmp/m1 [--rounds 3]

Each ``name=DIR`` is a directory holding a ``vault/`` package (a scratch copy with the
patch under test applied; never the working tree). Every measurement runs
in a fresh interpreter with ``PYTHONPATH=DIR``, variants alternating round by round so
load drift on a shared machine hits all of them alike. Reported per variant (medians
over rounds): open of ``--vault`` with its fast KDF (wall and CPU time; on a loaded
2-CPU machine trust CPU), peak RSS (VmHWM) and tracemalloc peak of open + 100 fetches
(bench/_memprobe.py), and CPU of a batch of 10k creates. The fixture vault comes from
``python bench/_ab.py --make V100K.cbkv 100000`` (durable batches of 1000, passphrase
"bench-pass", fast KDF), the same shape bench/run.py measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_OPEN = """
import json, statistics, sys, time, vault
vault.open  # import vault is lazy: the API's imports happen here, not inside the timed open
ts, cs = [], []
for _ in range(2):
    t, c = time.perf_counter(), time.process_time()
    v = vault.open(sys.argv[1], "bench-pass")
    cs.append(time.process_time() - c); ts.append(time.perf_counter() - t)
    v.close()
print(json.dumps({"open_wall": statistics.median(ts), "open_cpu": statistics.median(cs)}))
"""

_BATCH = """
import json, os, shutil, statistics, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import vault
from run import FAST, fields
d = tempfile.mkdtemp()
rows = [fields(i) for i in range(10_000)]
cpu = []
for k in range(5):
    v = vault.init(os.path.join(d, f"v{k}.cbkv"), "bench-pass", kdf=FAST)
    c = time.process_time()
    with v.batch():
        for f in rows:
            v.secret.create(**f)
    cpu.append(time.process_time() - c)
    v.close()
shutil.rmtree(d)
print(json.dumps({"batch10k_cpu": statistics.median(cpu)}))
"""


def _run(code_or_file: list[str], root: str, stdin: str | None = None) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=root)
    # cwd=root too: with -c, the current directory comes before PYTHONPATH on sys.path, and
    # run from the repo it would import the working tree's vault instead of the variant's.
    cmd = [sys.executable, *code_or_file]
    out = subprocess.run(cmd, env=env, cwd=root, input=stdin, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", help="name=DIR with DIR/vault the package to measure")
    ap.add_argument("--vault", type=Path, help="fixture vault to open")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--make", nargs=2, metavar=("PATH", "N"), help="build a fixture vault and exit")
    args = ap.parse_args()
    if args.make:
        sys.path.insert(0, str(HERE))
        from run import build

        v, _ = build(Path(args.make[0]), int(args.make[1]))
        v.close()
        return 0
    variants = dict(v.split("=", 1) for v in args.variants)
    got: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    for _ in range(args.rounds):
        for name, root in variants.items():
            rows = [_run(["-c", _OPEN, str(args.vault)], root), _run(["-c", _BATCH, str(HERE)], root)]
            for mode in ("rss", "tracemalloc"):
                m = _run([str(HERE / "_memprobe.py"), str(args.vault), mode], root, stdin="bench-pass\n")
                rows.append({f"peak_{mode}_mib": float(m["peak_bytes"]) / 2**20})
            for row in rows:
                for key, value in row.items():
                    got[name].setdefault(key, []).append(value)
    print(f"load avg {os.getloadavg()}")
    for name, figures in got.items():
        print(name, {k: round(statistics.median(v), 3) for k, v in figures.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
