"""Print the proof figures of the last test run (what .ci/run calls after pytest), and check them.

    python tests/report.py                     # figures + coverage of the core modules
    python tests/report.py --fuzz 20           # also run every fuzz target (20 s each; import, plan, refs, cloud 10 s)

The tests write one JSON file per figure to build/proof/ (``$CBKV_FIGURES`` overrides);
this script prints them, adds branch coverage of the core modules from ``.coverage`` (if
the tests ran under ``coverage run``), and exits non-zero when a figure is missing, stale
(older than ``--max-age`` seconds) or below what the issues ask for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIGURES = Path(os.environ.get("CBKV_FIGURES", ROOT / "build" / "proof"))
CORE = ("vault/_format.py", "vault/_crypto.py", "vault/_log.py", "vault/_store.py")

#: figure -> (label, minimum the issues ask for)
REQUIRED: dict[str, tuple[str, int]] = {
    "vectors": ("test vectors run (one file per case)", 80),
    "bit_flips": ("bit flips and byte inversions tried", 1),
    "truncations": ("truncation points tried", 1),
    "crash_points": ("crash points injected (every I/O call of every write path)", 1),
    "crash_points_init": ("crash points injected in init", 1),
    "kills_fork": ("SIGKILLs survived (forked writer)", 200),
    "kills_subprocess": ("SIGKILLs survived (fresh interpreter)", 30),
    "concurrency": ("concurrent updates (8 processes x 100) with a live reader", 800),
    "kills_while_holding_the_lock": ("SIGKILLs of the writer holding the lock, 2 others waiting", 8),
    "kdf_hostile_refused": ("hostile KDF parameter sets refused before derivation", 10),
    "bit_flips_checkpoint": ("bit flips tried on a v3 checkpoint and its log tail", 1),
    "truncations_checkpoint": ("truncation points tried on a v3 checkpoint and its log tail", 1),
    "crash_points_checkpoint": ("crash points injected while a checkpoint is written (upgrade, compaction)", 1),
    "leak_checks": ("leak checks (marker forms x places)", 1),
    "cli_leak_checks": ("CLI leak checks (marker x stream, every command and error path, --debug too)", 1),
}

#: Every fuzz target fuzz/run.py must report on, with "crashes found 0".
FUZZ_TARGETS = ("fuzz_format", "fuzz_open", "fuzz_import", "fuzz_plan", "fuzz_refs", "fuzz_cloud")


def load() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(FIGURES.glob("*.json")):
        record = json.loads(path.read_text())
        out[record["key"]] = record
    return out


def coverage_lines() -> list[str]:
    data = ROOT / ".coverage"
    if not data.exists():
        return ["coverage: no .coverage data (run the tests under `coverage run`)"]
    import coverage

    cov = coverage.Coverage(data_file=str(data))
    cov.load()
    lines = []
    for module in CORE:
        try:
            _, _statements, _, missing, _ = cov.analysis2(str(ROOT / module))
        except coverage.CoverageException:
            lines.append(f"coverage {module}: not measured")
            continue
        analysis = cov._analyze(str(ROOT / module))  # branch figures are only on the analysis object
        nums = analysis.numbers
        lines.append(
            f"coverage {module}: {nums.pc_covered_str}% (statements {nums.n_statements - nums.n_missing}/"
            f"{nums.n_statements}, branches {nums.n_branches - nums.n_missing_branches}/{nums.n_branches})"
            + (f", missing lines {','.join(map(str, missing))}" if missing else "")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-age", type=float, default=6 * 3600, help="ignore figures older than this (s)")
    parser.add_argument("--fuzz", type=int, default=0, metavar="SECONDS", help="also run fuzz/run.py")
    parser.add_argument(
        "--fuzz-seed", type=int, default=0, metavar="N", help="libFuzzer seed for that run (0: random)"
    )
    args = parser.parse_args(argv)
    figures = load()
    now = time.time()
    problems: list[str] = []
    print("== proof figures")
    for key, (label, minimum) in REQUIRED.items():
        record = figures.get(key)
        if record is None or now - record["time"] > args.max_age:
            problems.append(f"{key}: missing or stale")
            print(f"{label}: MISSING")
            continue
        detail = ", ".join(f"{k} {v}" for k, v in record["detail"].items())
        print(f"{label}: {record['value']}" + (f" ({detail})" if detail else ""))
        if record["value"] < minimum:
            problems.append(f"{key}: {record['value']} < {minimum}")
    faults = {k: v for k, v in figures.items() if k.startswith("io_faults_") and now - v["time"] <= args.max_age}
    total = sum(v["value"] for v in faults.values())
    print(f"I/O faults injected (EIO and ENOSPC at every call of every write path): {total}")
    for key in sorted(faults):
        detail = faults[key]["detail"].get("outcomes", faults[key]["detail"])
        print(f"  {key[len('io_faults_') :]}: {faults[key]['value']} {detail}")
    if total == 0:
        problems.append("io_faults: missing")
    for line in coverage_lines():
        print(line)
    if args.fuzz:
        print("== fuzz")
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "fuzz" / "run.py"),
                "--seconds",
                str(args.fuzz),
                "--seed",
                str(args.fuzz_seed),
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        sys.stdout.write(proc.stdout)
        if proc.returncode:
            problems.append(f"fuzz: exit {proc.returncode}")
        for target in FUZZ_TARGETS:
            # A target that silently dropped out of run.py would otherwise pass unnoticed.
            if f"fuzz {target}: corpus" not in proc.stdout:
                problems.append(f"fuzz {target}: not run")
            elif not any(
                line.startswith(f"fuzz {target}: ") and line.endswith("crashes found 0")
                for line in proc.stdout.splitlines()
            ):
                problems.append(f"fuzz {target}: crashed")
    if problems:
        print("PROOF FIGURES NOT MET: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
