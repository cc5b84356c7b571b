"""Run the SDK scenarios against ``cbk-vault serve``: a real subprocess, over a loopback socket.

    python tests/sdk/run.py                 both: the Python SDK, then the Node SDK
    python tests/sdk/run.py python          one of them
    python tests/sdk/run.py --require-node  fail (not skip) when node or the npm install is missing

Each scenario gets its own ``cbk-vault serve --ephemeral --token <random>`` (a new, empty
vault), started and stopped here. The Node SDK must be installed first:
``npm ci --prefix tests/sdk/node`` (``.ci/run`` does it). Every check line is printed; the
exit status is 1 when a scenario failed. ``tests/test_sdk_scenarios.py`` calls the same
functions.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
SCENARIO_TIMEOUT = 300


@dataclass
class Outcome:
    name: str
    returncode: int | None  # None: skipped
    output: str

    @property
    def skipped(self) -> bool:
        return self.returncode is None


def serve_command() -> list[str]:
    """``cbk-vault serve`` as installed beside this interpreter, else ``python -m vault serve`` (the same entry)."""
    script = Path(sys.executable).with_name("cbk-vault")
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "vault", "serve"]


@contextmanager
def stand_in() -> Iterator[tuple[str, str]]:
    """A fresh ``cbk-vault serve --ephemeral`` with a random required token: (base_url, token)."""
    token = "sk-scenario-" + secrets.token_hex(12)
    env = {**os.environ, "CBK_VAULT_SERVE_TOKEN": token}  # not on argv, as the README advises
    proc = subprocess.Popen(
        [*serve_command(), "--ephemeral"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.readline()  # token=(configured)
        if not first.startswith("base_url="):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"cbk-vault serve did not start: {first!r} {err!r}")
        yield first.strip().split("=", 1)[1], token
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def node_missing() -> str | None:
    """Why the Node scenario cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "@chatbotkit" / "sdk" / "package.json").exists():
        return f"@chatbotkit/sdk is not installed: run `npm ci --prefix {NODE_DIR}` (.ci/run does)"
    return None


def run_python() -> Outcome:
    with stand_in() as (base_url, token):
        done = subprocess.run(
            [sys.executable, str(HERE / "scenario.py"), base_url, token],
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
        )
    return Outcome("python", done.returncode, done.stdout + done.stderr)


def run_node(*, require: bool = False) -> Outcome:
    why = node_missing()
    if why is not None:
        if require:
            return Outcome("node", 1, f"the Node SDK scenario is required here and cannot run: {why}")
        return Outcome("node", None, f"skipped: {why}")
    node = shutil.which("node")
    assert node is not None
    with stand_in() as (base_url, token):
        done = subprocess.run(
            [node, str(NODE_DIR / "scenario.mjs"), base_url, token],
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            cwd=NODE_DIR,
        )
    return Outcome("node", done.returncode, done.stdout + done.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # No `choices=` on a "*" positional: Python 3.11's argparse checks the empty default against them.
    parser.add_argument("which", nargs="*", help="python and/or node (default: both)")
    parser.add_argument("--require-node", action="store_true", help="a missing node or npm install is a failure")
    args = parser.parse_args()
    which = args.which or ["python", "node"]
    if not set(which) <= {"python", "node"}:
        parser.error(f"unknown scenario in {which}: choose python and/or node")
    failed = False
    for name in which:
        outcome = run_python() if name == "python" else run_node(require=args.require_node)
        print(f"== the {name} SDK against cbk-vault serve")
        print(outcome.output.rstrip())
        failed |= not outcome.skipped and outcome.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
