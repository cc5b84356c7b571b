"""The load generator for bench/serve_load.py: closed-loop clients over raw asyncio streams.

Run as its own process (``python bench/_loadgen.py`` with a JSON config on stdin, a JSON result
on stdout), so its CPU never comes out of the server's process. Each client holds one kept-alive
connection and sends the next request only when the previous answer is read whole (closed
loop): ``clients`` requests are in flight at any time.

Why raw streams and not httpx: on a 2-core machine the client shares the CPUs with the server,
and httpx spends several times the server's own CPU per request; a pre-built request line and
a hand-read ``content-length`` answer cost a few tens of microseconds. The answers are still
checked: status 200 and the requested id in the body, else the request counts as an error.

Stops by itself: the warm-up phase, then the measured phase ends at ``duration`` seconds or
``max_requests`` answers, whichever comes first; every read has ``request_timeout``, and the
whole run ``duration + warmup + 30`` s. CPU of this process (``getrusage``) and of the server
(``/proc/PID/stat``) are sampled at the same instants, the start and end of the measured phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
from typing import Any


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds; None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat: how loaded the whole machine was."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


class _Run:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.host: str = cfg["host"]
        self.port: int = cfg["port"]
        self.ids: list[str] = cfg["ids"]
        self.clients: int = cfg["clients"]
        self.duration: float = cfg["duration"]
        self.warmup: float = cfg["warmup"]
        self.max_requests: int = cfg["max_requests"]
        self.timeout: float = cfg["request_timeout"]
        self.server_pid: int = cfg["server_pid"]
        auth = f"Authorization: Bearer {cfg['token']}"
        self.head = f"Host: {self.host}:{self.port}\r\n{auth}\r\nAccept: application/json\r\n\r\n".encode()
        self.path: str = cfg["path"]  # "/api/v1/secret/{id}/fetch"
        self.latencies: list[int] = []  # ns, measured phase only
        self.errors: dict[str, int] = {}
        self.measuring = False
        self.stop = False
        self.done = 0

    def error(self, kind: str) -> None:
        if self.measuring:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        ids = self.ids
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        clock = time.perf_counter_ns
        while not self.stop:
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
                except (OSError, asyncio.TimeoutError):
                    self.error("connect")
                    await asyncio.sleep(0.05)
                    continue
            assert reader is not None
            sid = ids[rng.randrange(len(ids))]
            request = b"GET " + self.path.format(id=sid).encode() + b" HTTP/1.1\r\n" + self.head
            started = clock()
            try:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
                status, length, close = _parse_head(head)
                body = await asyncio.wait_for(reader.readexactly(length), self.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                self.error("connection")
                writer.close()
                writer = None
                continue
            elapsed = clock() - started
            if self.measuring:
                if status != 200:
                    self.error(f"status {status}")
                elif b'"id":"' + sid.encode() + b'"' not in body:
                    self.error("wrong body")
                else:
                    self.latencies.append(elapsed)
                self.done += 1
                if self.done >= self.max_requests:
                    self.stop = True
            if close:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    async def run(self) -> dict[str, Any]:
        tasks = [asyncio.create_task(self.client(i)) for i in range(self.clients)]
        await asyncio.sleep(self.warmup)
        load_before = os.getloadavg()
        busy0 = _machine_busy()
        client0, server0 = _self_cpu(), _proc_cpu(self.server_pid)
        t0 = time.perf_counter()
        self.measuring = True
        deadline = t0 + self.duration
        while not self.stop and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        self.measuring = False
        wall = time.perf_counter() - t0
        client1, server1 = _self_cpu(), _proc_cpu(self.server_pid)
        busy1 = _machine_busy()
        load_after = os.getloadavg()
        self.stop = True
        await asyncio.wait(tasks, timeout=self.timeout + 1)
        for task in tasks:
            task.cancel()
        server_cpu = None if server0 is None or server1 is None else server1 - server0
        return {
            "wall_s": wall,
            "ok": len(self.latencies),
            "answers": self.done,
            "errors": self.errors,
            "latencies_ns": self.latencies,
            "client_cpu_s": client1 - client0,
            "server_cpu_s": server_cpu,
            "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
            "load_before": load_before,
            "load_after": load_after,
        }


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length < 0:
        raise ValueError("no content-length")
    return status, length, close


def main() -> int:
    cfg = json.load(sys.stdin)
    limit = cfg["duration"] + cfg["warmup"] + 30
    result = asyncio.run(asyncio.wait_for(_Run(cfg).run(), limit))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
