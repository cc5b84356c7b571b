"""The stand-in under load: ``cbk-vault serve`` on loopback, 32 clients fetching at once.

    python bench/serve_load.py                  10k secrets, 10 s measured (about 15 s)
    python bench/serve_load.py --quick          10k secrets, 2 s measured (about 5 s; bench/run.py --quick)
    python bench/serve_load.py --profile FILE   the same, with the server under cProfile (stats to FILE)

A vault of 10,000 secrets (fast KDF, values set) is served by the real server, the installed
``cbk-vault serve`` in a subprocess on a free loopback port, with a configured token (passed
in its environment, so it is never printed). Once it answers, a load generator in a third
process (bench/_loadgen.py: raw asyncio streams, keep-alive) runs 32 closed-loop clients,
each sending ``GET /api/v1/secret/<random id>/fetch`` with the bearer token and checking the
answer (200 and the id). After a warm-up, a fixed duration is measured (bounded by a request
cap and hard timeouts), then the server is stopped with SIGTERM, as a user stops it.

Reported: fetches/s, p50/p95/p99 latency, errors, CPU of the server and of the client over the
measured window (each as a share of one core: the server's event loop runs on one thread under
one GIL, so ~1.0 means the server saturated), how busy the whole machine was, and the load
average. Beside them, the cost per layer measured in this process without a socket: the
route (``SecretApi.fetch``) and the whole ASGI application; the rest of the server's CPU per
request is uvicorn, h11 and asyncio. Goals (issue 16): >= 2,000 fetches/s and p99 <= 20 ms with
32 clients, no errors. With 32 clients in a closed loop, Little's law ties the two: the mean
latency is 32 / throughput, so 2,000/s alone already means a 16 ms mean.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vault
from vault._asgi import StandInApp
from vault._vault import raw_records

HERE = Path(__file__).resolve().parent
PASS = "bench-pass"
CLIENTS = 32
GOAL_RATE = 2000.0
GOAL_P99_S = 0.020
FETCH_PATH = "/api/v1/secret/{id}/fetch"
#: The server must print its address within this long, and stop within it after SIGTERM.
START_TIMEOUT = 60.0


def _fields(i: int) -> dict[str, Any]:
    # The same shape as bench/run.py's secrets: bearer, a 40-character value, two meta keys.
    return {
        "name": f"svc-{i}",
        "description": f"API key for service {i}",
        "type": "bearer",
        "kind": "shared",
        "value": f"sk_live_{i:032x}",
        "meta": {"env": "prod", "team": f"t{i % 10}"},
    }


def build(path: Path, n: int) -> list[str]:
    """A vault of ``n`` secrets in durable batches of 1,000; returns their ids."""
    ids: list[str] = []
    with vault.init(path, PASS, kdf=vault.KdfParams(1, 8192)) as v:
        while len(ids) < n:
            with v.batch():
                for i in range(len(ids), min(n, len(ids) + 1000)):
                    ids.append(v.secret.create(**_fields(i)).id)
    return ids


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "cbk-vault"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vault"]


def _child_env(token: str, server_src: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    if server_src is not None:  # A/B: the server imports `vault` from this tree instead
        env["PYTHONPATH"] = str(server_src)
    env["CBK_VAULT_PASSPHRASE"] = PASS
    env["CBK_VAULT_SERVE_TOKEN"] = token  # configured, so `serve` prints "(configured)", never the token
    return env


class Server:
    """``cbk-vault serve`` in a subprocess; ``--profile`` runs it through bench/_profserve.py."""

    def __init__(self, path: Path, token: str, profile: Path | None = None, server_src: Path | None = None) -> None:
        # stderr to a file, not a pipe nobody reads while the load runs: a full pipe would stall the server.
        self.stderr_path = path.with_suffix(".serve-stderr")
        self._stderr_file = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        serve = ["serve", "--path", str(path), "--port", "0"]
        if profile is None:
            cmd = [*_cli(), *serve]
        else:
            cmd = [sys.executable, str(HERE / "_profserve.py"), str(profile), *serve]
        self.proc = subprocess.Popen(
            cmd,
            env=_child_env(token, server_src),
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            stdin=subprocess.DEVNULL,
        )
        try:
            self.base_url = self._read_base_url()
        except BaseException:
            self.stop()
            raise
        host_port = self.base_url.removeprefix("http://")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)

    def _read_base_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(b"base_url="):
                    return line.decode().strip().split("=", 1)[1]
                if not line:
                    break
        raise RuntimeError(f"cbk-vault serve did not start: {self._stderr()}")

    def _stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")[-500:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr_file.close()
        return self.proc.returncode


def _ready(host: str, port: int, token: str, sid: str) -> None:
    """One fetch answered 200, or RuntimeError: the server is up and the token is the right one."""
    import http.client

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", FETCH_PATH.format(id=sid), headers={"Authorization": f"Bearer {token}"})
            status = conn.getresponse().status
            if status == 200:
                return
            raise RuntimeError(f"the readiness fetch answered {status}")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))] / 1e9


def layers(path: Path, ids: list[str], count: int) -> dict[str, float]:
    """CPU per fetch of the stand-in's own layers, in this process, without a socket (medians, s).

    ``route``: ``SecretApi.fetch`` (identifier, lookup with the engine's catch-up check, the
    item dict); ``app``: the whole ASGI application, from the scope to the last ``send``
    (routing, Host check, body read, token, JSON encoding, headers) with a no-op ``send``;
    ``h11``: uvicorn's HTTP/1.1 library alone, one request parsed and its answer encoded.
    """
    with vault.open(path, PASS) as v:
        app = StandInApp(v, token="t", loopback_only=True)
        api = app.api
        raw_records(v)  # the seam the route uses, created once as the server's is
        pick = [ids[i * 7919 % len(ids)] for i in range(count)]

        def route(i: int) -> None:
            api.fetch(pick[i])

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"the application answered {message['status']}")

        def scope(sid: str) -> dict[str, Any]:
            raw = FETCH_PATH.format(id=sid).encode()
            return {
                "type": "http",
                "method": "GET",
                "path": raw.decode(),
                "raw_path": raw,
                "query_string": b"",
                "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer t"), (b"accept", b"*/*")],
            }

        scopes = [scope(s) for s in pick]

        async def timed_app() -> float:
            # Inside a running loop, as under uvicorn: the application may use asyncio's timers.
            clock = time.perf_counter_ns
            out = []
            for i in range(-min(200, count), count):
                t = clock()
                await app(scopes[i], receive, send)
                if i >= 0:
                    out.append(clock() - t)
            return statistics.median(out) / 1e9

        return {"route_s": _median_time(route, count), "app_s": asyncio.run(timed_app()), "h11_s": _h11_cost(count)}


def _h11_cost(count: int) -> float:
    """h11 alone (uvicorn's HTTP/1.1 protocol): parse one fetch request, encode its answer, next cycle."""
    import h11

    request = (
        b"GET " + FETCH_PATH.format(id="a" * 24).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:40000\r\n"
        b"Authorization: Bearer sk-bench-" + b"0" * 32 + b"\r\nAccept: application/json\r\n\r\n"
    )
    body = b"x" * 330  # about a fetch answer's size
    headers = [(b"content-type", b"application/json"), (b"content-length", b"330"), (b"cache-control", b"no-store")]
    conn = h11.Connection(h11.SERVER)

    def exchange(_: int) -> None:
        conn.receive_data(request)
        conn.next_event()  # the request
        conn.next_event()  # its end
        conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
        conn.send(h11.Data(data=body))
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()

    return _median_time(exchange, count)


def _median_time(fn: Callable[[int], None], count: int) -> float:
    for i in range(min(200, count)):
        fn(i)
    out = []
    clock = time.perf_counter_ns
    for i in range(count):
        t = clock()
        fn(i)
        out.append(clock() - t)
    return statistics.median(out) / 1e9


def measure(
    quick: bool,
    scratch: Path,
    log: Callable[[str], None] = lambda _: None,
    *,
    profile: Path | None = None,
    n: int = 10_000,
    duration: float | None = None,
    server_src: Path | None = None,
) -> dict[str, Any]:
    """Build, serve, load, stop; the figures as a dict (bench/run.py keeps it in results.json)."""
    if server_src is None and importlib.util.find_spec("uvicorn") is None:
        # The benchmark installs nothing: without the serve extra the row says so, as a peer's does.
        return {"skipped": "uvicorn is not installed (pip install 'cbk-vault[serve]')", "quick": quick}
    warmup = 0.5 if quick else 1.0
    duration = duration or (2.0 if quick else 10.0)
    path = scratch / "serve-load.cbkv"
    log(f"serve load: building {n} secrets")
    ids = build(path, n)
    token = "sk-bench-" + secrets.token_hex(16)
    log("serve load: starting cbk-vault serve")
    server = Server(path, token, profile, server_src)
    try:
        _ready(server.host, server.port, token, ids[0])
        log(f"serve load: {CLIENTS} clients for {duration:.0f} s")
        cfg = {
            "host": server.host,
            "port": server.port,
            "token": token,
            "ids": ids,
            "clients": CLIENTS,
            "duration": duration,
            "warmup": warmup,
            "max_requests": int(duration * 50_000),
            "request_timeout": 10.0,
            "server_pid": server.proc.pid,
            "path": FETCH_PATH,
        }
        gen = subprocess.run(
            [sys.executable, str(HERE / "_loadgen.py")],
            input=json.dumps(cfg).encode(),
            capture_output=True,
            timeout=duration + warmup + 60,
            check=False,
        )
        if gen.returncode != 0:
            raise RuntimeError(f"the load generator failed: {gen.stderr.decode(errors='replace')[-800:]}")
        run = json.loads(gen.stdout)
    finally:
        exit_code = server.stop()
        # What the server said beyond its start-up line (an internal error, a traceback) is reported.
        server_stderr = [
            line
            for line in server._stderr().splitlines()
            if not line.startswith("cbk-vault serve: ChatBotKit secret API")
        ]
    log("serve load: per-layer costs in process")
    layer = layers(path, ids, 500 if quick else 3000)
    path.unlink()  # the next measurement in the same scratch directory builds its own
    lat = sorted(run.pop("latencies_ns"))
    wall = run["wall_s"]
    ok = run["ok"]
    errors = sum(run["errors"].values())
    server_cpu = run["server_cpu_s"]
    return {
        "n": n,
        "clients": CLIENTS,
        "quick": quick,
        "profiled": profile is not None,
        "server_src": None if server_src is None else str(server_src),
        "duration_s": wall,
        "fetches": ok,
        "errors": run["errors"],
        "error_count": errors,
        "fetches_per_s": ok / wall if wall else 0.0,
        "p50_s": percentile(lat, 0.50),
        "p95_s": percentile(lat, 0.95),
        "p99_s": percentile(lat, 0.99),
        "max_s": lat[-1] / 1e9 if lat else float("nan"),
        "mean_s": statistics.fmean(lat) / 1e9 if lat else float("nan"),
        "server_cpu_share": None if server_cpu is None else server_cpu / wall,
        "client_cpu_share": run["client_cpu_s"] / wall,
        "server_cpu_per_fetch_s": None if server_cpu is None or not ok else server_cpu / ok,
        "client_cpu_per_fetch_s": run["client_cpu_s"] / ok if ok else None,
        "machine_busy": run["machine_busy"],
        # What the rest of the machine took meanwhile, in cores: the neighbours the server competed with.
        "others_cpu_share": None
        if server_cpu is None
        else max(0.0, run["machine_busy"] * (os.cpu_count() or 1) - (server_cpu + run["client_cpu_s"]) / wall),
        "load_before": run["load_before"],
        "load_after": run["load_after"],
        "server_exit_code": exit_code,
        "server_stderr": server_stderr[-5:],
        "layers": layer,
    }


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The stand-in's load goals, met or not, with their figures (issue 16)."""
    tag = " (quick run)" if r["quick"] else ""
    if "skipped" in r:
        return [{"goal": f"stand-in under load{tag}", "figure": f"not measured: {r['skipped']}", "met": None}]
    return [
        {
            "goal": f"stand-in: >= 2,000 fetches/s with {r['clients']} clients on loopback{tag}",
            "figure": f"{r['fetches_per_s']:,.0f}/s",
            "met": r["fetches_per_s"] >= GOAL_RATE,
        },
        {
            "goal": f"stand-in: fetch p99 <= 20 ms with {r['clients']} clients{tag}",
            "figure": f"{r['p99_s'] * 1e3:.1f} ms",
            "met": r["p99_s"] <= GOAL_P99_S,
        },
        {
            "goal": "stand-in under load: no errors",
            "figure": f"{r['error_count']} of {r['fetches'] + r['error_count']:,}",
            "met": r["error_count"] == 0 and r["server_exit_code"] == 0 and not r["server_stderr"],
        },
    ]


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _us(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e6:.0f} µs"


def lines(r: dict[str, Any]) -> list[str]:
    """The figures as Markdown lines (bench/run.py prints them and puts them in results.md)."""
    if "skipped" in r:
        return [f"stand-in under load: not measured: {r['skipped']}"]
    lb, la = r["load_before"], r["load_after"]
    lay = r["layers"]
    per = r["server_cpu_per_fetch_s"]
    below = None if per is None else per - lay["app_s"]
    return [
        f"stand-in under load (`cbk-vault serve`, uvicorn + h11, one process; {r['n']:,} secrets; {r['clients']} "
        f"closed-loop keep-alive clients in another process; {r['duration_s']:.1f} s measured; load "
        f"{lb[0]:.2f} -> {la[0]:.2f}; machine {r['machine_busy'] * 100:.0f} % busy over all CPUs, other processes "
        f"{_share(r['others_cpu_share'])} cores"
        f"{'; server under cProfile' if r['profiled'] else ''}):",
        "",
        "| fetches/s | p50 | p95 | p99 | max | errors | server CPU (cores) | client CPU (cores) "
        "| server CPU / fetch | client CPU / fetch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['fetches_per_s']:,.0f} | {r['p50_s'] * 1e3:.2f} ms | {r['p95_s'] * 1e3:.2f} ms "
        f"| {r['p99_s'] * 1e3:.2f} ms | {r['max_s'] * 1e3:.1f} ms | {r['error_count']} "
        f"| {_share(r['server_cpu_share'])} | {_share(r['client_cpu_share'])} | {_us(per)} "
        f"| {_us(r['client_cpu_per_fetch_s'])} |",
        "",
        f"Per fetch, in process without a socket (medians): the route (`SecretApi.fetch`) {_us(lay['route_s'])}, "
        f"the whole ASGI application {_us(lay['app_s'])}, h11 alone (parse the request, encode the answer) "
        f"{_us(lay['h11_s'])}; the rest of the server's CPU per fetch beside the application, {_us(below)}, is "
        "uvicorn, h11, asyncio and the kernel's socket work.",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s measured instead of 10 s")
    ap.add_argument("--duration", type=float, help="seconds measured (overrides the default)")
    ap.add_argument("--profile", type=Path, help="run the server under cProfile and write its stats here")
    ap.add_argument(
        "--ab",
        type=Path,
        metavar="DIR",
        help="A/B: alternate rounds of a server importing `vault` from DIR (e.g. `git archive main vault`) "
        "and of this tree's, and print both",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each side with --ab (default 3)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = ap.parse_args(argv)

    def log(what: str) -> None:
        print(f"  .. {what} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="cbkv-serve-load-") as tmp:
        if args.ab is not None:
            sides: dict[str, list[dict[str, Any]]] = {"A (" + str(args.ab) + ")": [], "B (this tree)": []}
            for _ in range(args.rounds):
                for name, src in zip(sides, (args.ab.resolve(), None), strict=True):
                    sides[name].append(measure(args.quick, Path(tmp), log, duration=args.duration, server_src=src))
            for name, runs in sides.items():
                rates = [r["fetches_per_s"] for r in runs]
                median = statistics.median(rates)
                p99s = [r["p99_s"] * 1e3 for r in runs]
                cpu = [r["server_cpu_per_fetch_s"] * 1e6 for r in runs if r["server_cpu_per_fetch_s"]]
                print(
                    f"{name}: fetches/s {', '.join(f'{x:,.0f}' for x in rates)} (median {median:,.0f}); "
                    f"p99 {', '.join(f'{x:.1f}' for x in p99s)} ms; server CPU/fetch "
                    f"{', '.join(f'{x:.0f}' for x in cpu)} µs; errors {sum(r['error_count'] for r in runs)}; "
                    f"load {runs[0]['load_before'][0]:.2f} -> {runs[-1]['load_after'][0]:.2f}"
                )
            return 0
        result = measure(
            args.quick,
            Path(tmp),
            log,
            profile=args.profile.resolve() if args.profile else None,
            duration=args.duration,
        )
    print("\n".join(lines(result)))
    print()
    for g in goals(result):
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[g["met"]]
        print(f"  [{mark}] {g['goal']}: {g['figure']}")
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
