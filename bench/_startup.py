"""Start-up and unlock-agent rows for bench/run.py: whole commands, timed as a user runs them.

Rows, side by side in one run (``measure(quick, scratch)``):

* ``python -c pass``: the bare interpreter, the floor of every other row here;
* ``cbk-vault --version``;
* ``cbk-vault fetch REF --reveal`` cold, with the passphrase (Argon2id "interactive"; and
  "moderate", the default, in the full run): open, KDF, decrypt, in the process;
* the same fetch, the vault held by the unlock agent (no passphrase, no KDF);
* ``pass show NAME`` when ``pass`` (and gpg) are installed, with gpg-agent warm: skipped otherwise;
* writers: 1 writer process alone, 4 writer processes directly on the file (these two
  alternating for 3 or 5 rounds, each row its median round), 1 and 4 writer processes through
  the agent, each commit durable (``v.secret.create``; bench/_writer.py).

Method. Each command is a fresh process, started the way a user starts it (the installed
``cbk-vault`` script). The start-up rows run interleaved, round by round, after warm-up
rounds, so load drift on a shared machine hits every row alike; medians of wall time, and of
the children's CPU time (user + system, from ``RUSAGE_CHILDREN``), which drifts less with
load. Children run with a bytecode cache in a scratch directory (``PYTHONPYCACHEPREFIX``;
``PYTHONDONTWRITEBYTECODE`` removed) as an installed package would have: without one, every
start compiles every module again. Each agent row starts its own agent on a private socket
(``$CBK_VAULT_AGENT_SOCK`` in a 0700 temp directory) and stops it (``lock --all``), checking
by its pid (``hello``) that it exited.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import vault
from vault import _session

HERE = Path(__file__).resolve().parent
PASS = "bench-pass"
SECRET = "sk_live_" + "7" * 32

#: Row names (bench/run.py's goals table reads them).
PYTHON = "python -c pass"
VERSION = "cbk-vault --version"
FETCH_AGENT = "cbk-vault fetch --reveal (unlocked, via the agent)"
PASS_SHOW = "pass show (gpg-agent warm)"
W1 = "1 writer process"
W4 = "4 writer processes, directly on the file"
W1_AGENT = "1 writer process, via the agent"
W4_AGENT = "4 writer processes, via the agent"


def fetch_cold(preset: str) -> str:
    return f"cbk-vault fetch --reveal (cold: passphrase, KDF {preset})"


def _cli() -> list[str]:
    """The installed ``cbk-vault`` script next to this interpreter, else ``python -m vault``."""
    script = Path(sys.executable).parent / "cbk-vault"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vault"]


def _child_env(scratch: Path, sock: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    env[_session.AGENT_SOCKET_ENV] = str(sock)
    return env


# --- the agent ------------------------------------------------------------------------------


@contextmanager
def agent(path: Path, sock: Path) -> Iterator[int]:
    """An agent on ``sock`` holding ``path`` (unlocked with the passphrase); stopped on exit. Yields its pid."""
    _session.unlock(path, PASS, sock_path=sock)
    pid = int(_session.request("hello", sock_path=sock)["pid"])
    try:
        yield pid
    finally:
        _session.lock(everything=True, sock_path=sock)  # nothing left to hold: it exits
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; the agent is not our child (start_new_session), init reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


# --- pass ------------------------------------------------------------------------------------


class PassStore:
    """A throwaway password store: its own GNUPGHOME with a key without passphrase, one entry."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        self.home = directory / "gnupg"
        self.home.mkdir(mode=0o700)
        self.store = directory / "password-store"
        self.env = dict(os.environ, GNUPGHOME=str(self.home), PASSWORD_STORE_DIR=str(self.store))
        run = {"env": self.env, "check": True, "capture_output": True, "timeout": 120}
        subprocess.run(
            ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
             "--quick-generate-key", "bench@cbk-vault.invalid", "future-default", "default", "never"],
            **run,
        )  # fmt: skip
        subprocess.run(["pass", "init", "bench@cbk-vault.invalid"], **run)
        subprocess.run(["pass", "insert", "--multiline", "bench/openai"], input=SECRET.encode(), **run)
        self.show = ["pass", "show", "bench/openai"]

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], env=self.env, capture_output=True, timeout=30, check=False)


def pass_available() -> bool:
    return all(shutil.which(tool) for tool in ("pass", "gpg", "gpgconf"))


# --- timing ----------------------------------------------------------------------------------


def _run_once(cmd: list[str], env: dict[str, str], stdin: bytes | None = None) -> tuple[float, float, bytes]:
    """Wall time and the child's CPU time (user + system) of one run, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter_ns()
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, check=False)
    wall = (time.perf_counter_ns() - t) / 1e9
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def interleaved(
    commands: dict[str, tuple[list[str], dict[str, str], str | None]], rounds: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Each command once per round, in turn; its output is checked against the expected value."""
    out: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in commands}
    for r in range(warmup + rounds):
        for name, (cmd, env, expect) in commands.items():
            wall, cpu, stdout = _run_once(cmd, env)
            if expect is not None and stdout.decode().strip() != expect:
                raise RuntimeError(f"{name}: unexpected output {stdout[:80]!r}")
            if r >= warmup:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out


# --- writers ---------------------------------------------------------------------------------


def writers(path: Path, count: int, per: int, env: dict[str, str], *, via_agent: bool) -> dict[str, Any]:
    """``count`` writer processes, ``per`` durable creates each, started together: commits/s and latencies."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "_writer.py"), str(path), str(per), *(["--agent"] if via_agent else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(("" if via_agent else PASS) + "\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("a writer did not open the vault")
    t = time.perf_counter_ns()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.close()
    lat: list[float] = []
    for p in procs:
        assert p.stdout is not None
        lat += json.loads(p.stdout.read())["times"]
        p.stdout.close()
        if p.wait(timeout=300) != 0:
            raise RuntimeError("a writer failed")
    wall = (time.perf_counter_ns() - t) / 1e9
    return {"writers": count, "creates_each": per, "wall_s": wall, "commits_per_s": count * per / wall, "latency": lat}


# --- the run ---------------------------------------------------------------------------------


def _make_vault(path: Path, kdf: str | vault.KdfParams, n: int = 0) -> None:
    with vault.init(path, PASS, kdf=kdf) as v:
        with v.batch():
            for i in range(n):
                v.secret.create(name=f"svc-{i}", type="bearer", value=f"sk_live_{i:032x}")
        v.secret.create(name="OpenAI", alias="openai", type="bearer", value=SECRET)


def measure(quick: bool, scratch: Path, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every row of this module; the dict bench/run.py keeps under "startup" in results.json."""
    work = scratch / "startup"
    work.mkdir(mode=0o700)
    sock = work / "agent" / "agent.sock"
    sock.parent.mkdir(mode=0o700)
    env = _child_env(work, sock)
    presets = ["interactive"] if quick else ["interactive", "moderate"]
    vaults = {preset: work / f"{preset}.cbkv" for preset in presets}
    for preset, path in vaults.items():
        _make_vault(path, preset, n=100)
    served = vaults["interactive"]

    cli = _cli()
    cold_env = dict(env, CBK_VAULT_PASSPHRASE=PASS)
    commands: dict[str, tuple[list[str], dict[str, str], str | None]] = {
        PYTHON: ([sys.executable, "-c", "pass"], env, ""),
        VERSION: ([*cli, "--version"], env, f"cbk-vault {vault.__version__}"),
        FETCH_AGENT: ([*cli, "--path", str(served), "fetch", "@openai", "--reveal"], env, SECRET),
    }
    for preset, path in vaults.items():
        commands[fetch_cold(preset)] = ([*cli, "--path", str(path), "fetch", "@openai", "--reveal"], cold_env, SECRET)
    peer: PassStore | None = None
    pass_note = "not installed (apt-get install pass); row skipped"
    if pass_available():
        try:
            peer = PassStore(work / "pass")
            if _run_once(peer.show, peer.env)[2].decode().strip() != SECRET:
                raise RuntimeError("pass show printed something else")
            commands[PASS_SHOW] = (peer.show, peer.env, SECRET)
            pass_note = "installed"
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            pass_note = f"could not set up a store ({type(exc).__name__}); row skipped"
            peer = None

    rounds, warmup = (7, 2) if quick else (25, 3)
    log("start-up rows (interleaved)")
    load_before = os.getloadavg()
    try:
        with agent(served, sock) as pid:
            samples = interleaved(commands, rounds, warmup)
            agent_pid = pid
    finally:
        if peer is not None:
            peer.close()
    load_after = os.getloadavg()

    rows: list[dict[str, Any]] = []
    base_wall = statistics.median(samples[PYTHON]["wall"])
    base_cpu = statistics.median(samples[PYTHON]["cpu"])
    for name, s in samples.items():
        wall, cpu = statistics.median(s["wall"]), statistics.median(s["cpu"])
        rows.append(
            {
                "op": name,
                "n": None,
                "median_s": wall,
                "p95_s": sorted(s["wall"])[min(len(s["wall"]) - 1, round(0.95 * (len(s["wall"]) - 1)))],
                "runs": float(len(s["wall"])),
                "floor": PYTHON,
                "ratio_floor": wall / base_wall,
                "cpu_median_s": cpu,
                "ratio_cpu": cpu / base_cpu if base_cpu else None,
            }
        )

    # Writers: a vault of 1,000 secrets (fast KDF: the writers open it before the clock starts).
    log("writers")
    wpath = work / "writers.cbkv"
    _make_vault(wpath, vault.KdfParams(1, 8192), n=1000)
    per = 100 if quick else 200
    w: dict[str, Any] = {}
    # 1 and 4 writers on the file take turns, round by round, and each row is its median round:
    # single rounds swung from 0.14x to 5.9x at load 4-6 on this shared machine.
    rounds_w = 3 if quick else 5
    direct: dict[str, list[dict[str, Any]]] = {W1: [], W4: []}
    for _ in range(rounds_w):
        direct[W1].append(writers(wpath, 1, per * 2, env, via_agent=False))
        direct[W4].append(writers(wpath, 4, per, env, via_agent=False))
    for name, runs in direct.items():
        runs.sort(key=lambda run: run["commits_per_s"])
        w[name] = dict(runs[len(runs) // 2], rounds=[run["commits_per_s"] for run in runs])
    with agent(wpath, sock):
        w[W1_AGENT] = writers(wpath, 1, per * 2, env, via_agent=True)
        w[W4_AGENT] = writers(wpath, 4, per, env, via_agent=True)
    for r in w.values():
        lat = sorted(r.pop("latency"))
        r["latency_median_s"] = statistics.median(lat)
        r["latency_p95_s"] = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    return {
        "rows": rows,
        "writers": w,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "load": {"before": load_before, "after": load_after, "end": os.getloadavg()},
        "pass": pass_note,
        "agent_pid": agent_pid,
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cli)),
    }


def goals(startup: dict[str, Any]) -> list[dict[str, Any]]:
    """The start-up and writer goals, met or not, with their figures (issues 12 and 16)."""
    by = {r["op"]: r for r in startup["rows"]}
    out: list[dict[str, Any]] = []

    def goal(text: str, figure: str, met: bool | None) -> None:
        out.append({"goal": text, "figure": figure, "met": met})

    def ratio(a: str, b: str) -> tuple[float, float | None]:
        wall = by[a]["median_s"] / by[b]["median_s"]
        cpu = by[a]["cpu_median_s"] / by[b]["cpu_median_s"] if by[b]["cpu_median_s"] else None
        return wall, cpu

    def figure(wall: float, cpu: float | None) -> str:
        return f"{wall:.2f}x (CPU {cpu:.2f}x)" if cpu is not None else f"{wall:.2f}x"

    wall, cpu = ratio(VERSION, PYTHON)
    goal("`cbk-vault --version` within 1.3x of the bare interpreter (wall, medians)", figure(wall, cpu), wall <= 1.3)
    wall, cpu = ratio(FETCH_AGENT, PYTHON)
    goal("`fetch --reveal` via the agent within 2x of the bare interpreter", figure(wall, cpu), wall <= 2)
    if PASS_SHOW in by:
        wall, cpu = ratio(FETCH_AGENT, PASS_SHOW)
        goal("`fetch --reveal` via the agent within 3x of `pass show`", figure(wall, cpu), wall <= 3)
    else:
        goal("`fetch --reveal` via the agent within 3x of `pass show`", f"pass {startup['pass']}", None)
    w = startup["writers"]
    x = w[W4]["commits_per_s"] / w[W1]["commits_per_s"]
    goal(
        "4 writer processes directly on the file: at least 0.9x the commits/s of 1 writer alone",
        f"{w[W4]['commits_per_s']:,.0f}/s vs {w[W1]['commits_per_s']:,.0f}/s: {x:.2f}x",
        x >= 0.9,
    )
    x = w[W4_AGENT]["commits_per_s"] / w[W1]["commits_per_s"]
    goal(
        "4 writer processes via the agent: at least the commits/s of 1 writer alone",
        f"{w[W4_AGENT]['commits_per_s']:,.0f}/s vs {w[W1]['commits_per_s']:,.0f}/s: {x:.2f}x",
        x >= 1,
    )
    return out


def lines(startup: dict[str, Any]) -> list[str]:
    """The rows as text lines (bench/run.py prints them, and puts them in results.md)."""
    la = startup["load"]
    out = [
        f"start-up ({startup['command']}; {startup['rounds']} interleaved rounds after {startup['warmup_rounds']} "
        f"warm-up; load {la['before'][0]:.2f} -> {la['after'][0]:.2f}; pass: {startup['pass']}):",
        "",
        "| command | wall median | wall p95 | ÷ python -c pass | CPU median | CPU ÷ python -c pass |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in startup["rows"]:
        cpu_ratio = "-" if r["ratio_cpu"] is None else f"{r['ratio_cpu']:.2f}x"
        out.append(
            f"| {r['op']} | {r['median_s'] * 1e3:.1f} ms | {r['p95_s'] * 1e3:.1f} ms | {r['ratio_floor']:.2f}x "
            f"| {r['cpu_median_s'] * 1e3:.1f} ms | {cpu_ratio} |"
        )
    out += [
        "",
        "| writers (durable creates) | processes x creates | commits/s together | latency median | latency p95 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in startup["writers"].items():
        out.append(
            f"| {name} | {r['writers']} x {r['creates_each']} | {r['commits_per_s']:,.0f} "
            f"| {r['latency_median_s'] * 1e3:.2f} ms | {r['latency_p95_s'] * 1e3:.2f} ms |"
        )
    rounds = {name: r["rounds"] for name, r in startup["writers"].items() if "rounds" in r}
    if rounds:
        out += [
            "",
            "Writers on the file, alternating, the median round above; every round's commits/s, lowest first: "
            + "; ".join(f"{name}: " + ", ".join(f"{x:,.0f}" for x in runs) for name, runs in rounds.items())
            + ".",
        ]
    return out
