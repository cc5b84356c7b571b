"""Run every fuzz target for a fixed budget and print its figures (what .ci/run calls).

    python fuzz/run.py                 # 20 s per target (the CI budget; 10 s for import, plan, refs and cloud)
    python fuzz/run.py --seconds 3600  # a long run (see fuzz/README.md)
    python fuzz/run.py --budget fuzz_plan=600 fuzz_plan   # one target, its own budget

Each target first replays its committed corpus, then fuzzes from a scratch copy of it
under fuzz/.work/<target>/ (so the committed corpus only changes when someone adds a
find on purpose). Prints, per target, "executions N" and "crashes found N"; exits
non-zero if any target crashed or could not run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
#: target -> share of --seconds it gets. The import parsers, the planner and the reference parser
#: are small and fast (thousands of executions a second); a whole sync per input is slow. Half
#: the budget for those four keeps CI's six targets near ~120 s.
TARGETS: dict[str, float] = {
    "fuzz_format": 1.0,
    "fuzz_open": 1.0,
    "fuzz_import": 0.5,
    "fuzz_plan": 0.5,
    "fuzz_refs": 0.5,
    # A whole sync per input (a vault copy, the client, a fake cloud): slower, half the budget too.
    "fuzz_cloud": 0.5,
}


def budget(target: str, seconds: int, overrides: dict[str, int]) -> int:
    if target in overrides:
        return overrides[target]
    return max(1, round(seconds * TARGETS.get(target, 1.0)))


def _override(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or name not in TARGETS or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected TARGET=SECONDS with TARGET one of {', '.join(TARGETS)}")
    return name, int(value)


def run_target(target: str, seconds: int, seed: int) -> dict[str, object]:
    work = FUZZ_DIR / ".work" / target
    if work.exists():
        shutil.rmtree(work)
    corpus = work / "corpus"
    shutil.copytree(FUZZ_DIR / "corpus" / target, corpus)
    artifacts = work / "artifacts"
    artifacts.mkdir()
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ_DIR / f"{target}.py"),
            f"-max_total_time={seconds}",
            f"-seed={seed}",
            "-rss_limit_mb=3072",
            "-timeout=10",
            f"-artifact_prefix={artifacts}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    log = proc.stdout + proc.stderr
    (work / "log.txt").write_text(log)
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    replayed = re.search(r"replayed (\d+) corpus inputs", log)
    crashes = sorted(p.name for p in artifacts.iterdir())
    failed = proc.returncode != 0 or bool(crashes) or done is None
    return {
        "target": target,
        "replayed": int(replayed.group(1)) if replayed else 0,
        "executions": int(done.group(1)) if done else 0,
        "seconds": round(time.monotonic() - started, 1),
        "budget": seconds,
        "crashes": len(crashes) if crashes else int(failed),
        "artifacts": crashes,
        "returncode": proc.returncode,
        "tail": "" if not failed else log[-3000:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seconds",
        type=int,
        default=20,
        help="fuzzing budget per target (default 20); fuzz_import, fuzz_plan, fuzz_refs and fuzz_cloud get half of it",
    )
    parser.add_argument(
        "--budget",
        type=_override,
        action="append",
        default=[],
        metavar="TARGET=SECONDS",
        help="give one target its own budget (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        print(f"fuzz: atheris cannot be imported ({exc}); install the 'fuzz' extra", file=sys.stderr)
        return 2
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    overrides = dict(args.budget)
    bad = 0
    for target in args.targets:
        result = run_target(target, budget(target, args.seconds, overrides), args.seed)
        print(
            f"fuzz {target}: corpus replayed {result['replayed']}, executions {result['executions']} "
            f"in {result['seconds']} s (budget {result['budget']} s), crashes found {result['crashes']}"
        )
        if result["crashes"]:
            bad += 1
            print(f"  artifacts: {result['artifacts']} in fuzz/.work/{target}/artifacts/", file=sys.stderr)
            print(result["tail"], file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
