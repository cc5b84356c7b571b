"""cbk-vault benchmark: every figure beside its physical floor, measured in the same run, and the peers.

    python bench/run.py            full run: N = 1k, 10k, 100k; peers at 1k and 10k; then the scale rows at
                                   1M (open, peak RSS, list from a cursor; the 1M vault is built here)
    python bench/run.py --quick    smoke run for CI: N = 1k, 10k, few repeats, peers at 1k (< 1 min)

Both also run the start-up and unlock-agent rows (bench/_startup.py): the bare interpreter,
``cbk-vault --version``, ``fetch --reveal`` cold and through the agent, ``pass show`` when
installed, and 1 or 4 writer processes directly on the file and through the agent; and the
stand-in under load (bench/serve_load.py): ``cbk-vault serve`` with 32 clients fetching at
once (10 s measured; 2 s in ``--quick``).

Writes bench/results.json, bench/results.md and bench/chart.png (``--out DIR`` to write
elsewhere; a quick run keeps nothing unless ``--out`` is given, so CI never dirties the
tree). Installs nothing: the peers (pykeepass, keyrings.cryptfile) and matplotlib are
used when importable (``pip install -e '.[bench]'``). Figures are printed, never
asserted. The method is in bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as sodium

import vault
from vault import _crypto, _format, _log
from vault._vault import engine_of

HERE = Path(__file__).resolve().parent
PASS = "bench-pass"
FAST = vault.KdfParams(1, 8192)


# --- timing -----------------------------------------------------------------------------


def stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return {"median_s": statistics.median(s), "p95_s": p95, "runs": float(len(s))}


def time_each(fn: Callable[[int], object], count: int, warmup: int = 10) -> list[float]:
    """Per-call wall times in seconds (perf_counter_ns; its overhead is ~0.1 µs)."""
    for i in range(warmup):
        fn(i)
    out: list[float] = []
    clock = time.perf_counter_ns
    for i in range(count):
        t = clock()
        fn(i)
        out.append((clock() - t) / 1e9)
    return out


def load() -> tuple[float, float, float]:
    return os.getloadavg()


# --- the machine --------------------------------------------------------------------------


def machine(directory: Path) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    fs = "unknown"
    try:
        best = ""
        target = str(directory.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, kind = line.split()[:3]
            if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fs = mnt, f"{kind} on {dev} (mounted at {mnt})"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_bytes": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "filesystem": fs,
        "pynacl": _version("pynacl"),
        "msgpack": _version("msgpack"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


# --- floors ----------------------------------------------------------------------------------


class Floors:
    """The physical floors, sampled interleaved with the operations they bound."""

    def __init__(self, directory: Path, frame_size: int) -> None:
        self.path = directory / "floor.bin"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.off = 0
        self.payload = os.urandom(frame_size)
        self.key = os.urandom(32)
        record = [os.urandom(16), "a" * 24, 1, "sk_live_" + "0" * 32]
        self.plain = msgpack.packb(record, use_bin_type=True)
        self.nonce = os.urandom(24)
        self.box = sodium.crypto_secretbox(self.plain, self.nonce, self.key)
        self.entry = _sample_entry().to_list()

    def fsync(self) -> float:
        """One small append + fdatasync on the disk the vaults live on."""
        t = time.perf_counter_ns()
        os.pwrite(self.fd, self.payload, self.off)
        os.fdatasync(self.fd)
        dt = (time.perf_counter_ns() - t) / 1e9
        self.off += len(self.payload)
        if self.off > 8 << 20:
            os.ftruncate(self.fd, 0)
            self.off = 0
        return dt

    def crypto(self, _: int = 0) -> None:
        """One secretbox open + one msgpack decode of a value record."""
        msgpack.unpackb(sodium.crypto_secretbox_open(self.box, self.nonce, self.key), raw=False)

    def seal(self, _: int = 0) -> None:
        """One msgpack encode + one secretbox seal of a whole record (the per-secret CPU of a write)."""
        sodium.crypto_secretbox(msgpack.packb(self.entry, use_bin_type=True), os.urandom(24), self.key)

    def rewrite(self, size: int) -> float:
        """Write ``size`` bytes to a temp file, fsync, rename, fsync the directory: compaction's floor."""
        data = os.urandom(size)
        tmp = self.path.with_suffix(".tmp")
        t = time.perf_counter_ns()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path.with_suffix(".rw"))
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return (time.perf_counter_ns() - t) / 1e9

    def close(self) -> None:
        os.close(self.fd)


def _sample_entry() -> _format.Entry:
    box = _crypto.seal(os.urandom(32), _format.pad(b"x" * 60, _format.VALUE_PAD))
    return _format.Entry(
        "a" * 24, 1, 1_764_000_000_000, 1_764_000_000_000, "svc-1", "API key for service 1", "shared",
        "bearer", "private", None, {"env": "prod", "team": "t1"}, None, None, 1, box, {},
    )  # fmt: skip


# --- fixtures ----------------------------------------------------------------------------


def fields(i: int) -> dict[str, Any]:
    return {
        "name": f"svc-{i}",
        "description": f"API key for service {i}",
        "type": "bearer",
        "value": f"sk_live_{i:032x}",
        "meta": {"env": "prod", "team": f"t{i % 10}"},
    }


def build(path: Path, n: int, chunk: int = 1000) -> tuple[vault.Vault, list[str]]:
    """A vault of ``n`` secrets written in durable batches of ``chunk`` (frames like a bulk import's)."""
    v = vault.init(path, PASS, kdf=FAST)
    ids: list[str] = []
    while len(ids) < n:
        with v.batch():
            for i in range(len(ids), min(n, len(ids) + chunk)):
                ids.append(v.secret.create(**fields(i)).id)
    return v, ids


def build_big(path: Path, n: int, chunk: int = 10_000) -> None:
    """A compacted vault of ``n`` secrets (the 1M row), built in durable batches and compacted once.

    The builder's own handle holds every record decoded (~2 GB at 1M); it is closed before anything
    is timed, and every figure comes from a fresh handle or process that reads the checkpoint.
    """
    v = vault.init(path, PASS, kdf=FAST)
    try:
        done = 0
        while done < n:
            with v.batch():
                for i in range(done, min(n, done + chunk)):
                    v.secret.create(**fields(i))
            done = min(n, done + chunk)
        v.compact()
    finally:
        v.close()


def floor_open(path: Path, keys: _crypto.Keys) -> None:
    """The open floor: read the file, verify the chain, decrypt and msgpack-decode every frame, no index.

    Streamed in the reader's chunk size, like Engine.load, so the floor at 1M holds one chunk at a time.
    """
    with open(path, "rb") as fh:
        head = fh.read(_format.LOG_START)
        tag = head[_format.HEADER_TAG_OFFSET : _format.LOG_START - 2 * _format.SLOT_SIZE]
        epoch = _format.decode_header(head).epoch
        data, seq, want = b"", 0, 1 << 20
        while True:
            more = fh.read(want)
            data += more
            out = _log.LogRead(end=0, tag=tag, seq=seq)
            for _ops in _log.iter_log(keys, data, epoch, out):
                pass
            tag, seq, data = out.tag, out.seq, data[out.end :]
            if len(more) < want:
                break
            want = want * 2 if out.end == 0 else 1 << 20


def memprobe(path: Path, mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "_memprobe.py"), str(path), mode],
        input=PASS + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def sealed_own_size(v: vault.Vault) -> int:
    """What the live records take when each is sealed on its own: msgpack + nonce + MAC."""
    with engine_of(v).reading() as index:
        return sum(len(_format.packb(e.to_list())) + _crypto.NONCE_SIZE + _crypto.MAC_SIZE for e in index.iter_live())


# --- the run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, quick: bool, directory: Path) -> None:
        self.quick = quick
        self.dir = directory
        self.ns = (1000, 10_000) if quick else (1000, 10_000, 100_000)
        #: The scale row (issue 16): built, opened and listed in the full run only.
        self.big: int | None = None if quick else 1_000_000
        self.rounds = 80 if quick else 200  # durable create/update/delete, each
        self.reads = 300 if quick else 3000  # fetches / list pages per N
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.loads: list[tuple[str, tuple[float, float, float]]] = [("start", load())]
        self.rng = random.Random(6)

    def row(self, op: str, n: int | None, samples: list[float], floor: str | None, floor_s: float | None) -> None:
        r: dict[str, Any] = {"op": op, "n": n, **stats(samples), "floor": floor}
        r["ratio_floor"] = r["median_s"] / floor_s if floor_s else None
        self.rows.append(r)

    def log(self, what: str) -> None:
        la = load()
        self.loads.append((what, la))
        print(f"  .. {what} (load {la[0]:.2f})", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        vaults: dict[int, tuple[vault.Vault, list[str]]] = {}
        for n in self.ns:
            self.log(f"building {n} secrets")
            vaults[n] = build(self.dir / f"v{n}.cbkv", n)
        # A create commit's frame size, so the fsync floor appends the same number of bytes.
        v0, _ = vaults[self.ns[0]]
        before = os.path.getsize(v0.path)
        v0.secret.delete(v0.secret.create(**fields(0)).id)
        frame = max(64, (os.path.getsize(v0.path) - before) // 2)
        self.extra["create_frame_bytes"] = frame
        floors = Floors(self.dir, frame)
        try:
            result = self._measure(vaults, floors)
        finally:
            floors.close()
            for v, _ in vaults.values():
                v.close()
        return result

    def _measure(self, vaults: dict[int, tuple[vault.Vault, list[str]]], floors: Floors) -> dict[str, Any]:
        # Floors first (crypto and seal: CPU only); fsync is sampled inside the write rounds below.
        self.log("floors")
        crypto = stats(time_each(floors.crypto, self.reads * 3, warmup=200))
        seal = stats(time_each(floors.seal, self.reads * 3, warmup=200))

        # Durable writes: round-robin over every N and the fsync floor, so load drifts hit all alike.
        self.log("durable create/update/delete")
        samples: dict[tuple[str, int], list[float]] = {}
        fsync: list[float] = []
        for v, _ in vaults.values():  # warm-up
            for _i in range(5):
                v.secret.delete(v.secret.create(**fields(0)).id)
        for r in range(self.rounds):
            fsync.append(floors.fsync())
            for n, (v, ids) in vaults.items():
                sec = v.secret
                t = time.perf_counter_ns()
                new = sec.create(**fields(n + r))
                t1 = time.perf_counter_ns()
                target = ids[self.rng.randrange(len(ids))]
                t2 = time.perf_counter_ns()
                sec.update(target, description=f"rotated {r}", value=f"sk_live_rotated_{r:024x}")
                t3 = time.perf_counter_ns()
                victim = ids.pop(self.rng.randrange(len(ids)))
                t4 = time.perf_counter_ns()
                sec.delete(victim)
                t5 = time.perf_counter_ns()
                ids.append(new.id)  # N stays constant
                samples.setdefault(("create (durable)", n), []).append((t1 - t) / 1e9)
                samples.setdefault(("update (durable)", n), []).append((t3 - t2) / 1e9)
                samples.setdefault(("delete (durable)", n), []).append((t5 - t4) / 1e9)
            fsync.append(floors.fsync())
        fs = stats(fsync)
        for (op, n), s in samples.items():
            self.row(op, n, s, "fsync", fs["median_s"])

        # Reads after unlock.
        self.log("fetch and list")
        for n, (v, ids) in vaults.items():
            pick = [ids[self.rng.randrange(len(ids))] for _ in range(self.reads)]
            sec = v.secret

            def fetch(i: int, sec: vault.SecretClient = sec, pick: list[str] = pick) -> object:
                return sec.fetch(pick[i])

            def first_page(i: int, sec: vault.SecretClient = sec) -> object:
                return sec.list(take=20)

            def cursor_page(i: int, sec: vault.SecretClient = sec, pick: list[str] = pick) -> object:
                return sec.list(take=20, order="asc", cursor=pick[i])

            self.row("fetch by id", n, time_each(fetch, self.reads), "crypto", crypto["median_s"])
            self.row("list page of 20", n, time_each(first_page, self.reads), None, None)
            self.row("list page of 20 (cursor)", n, time_each(cursor_page, self.reads), None, None)
        # A page's floor: the page itself costs take x (build one Secret); the O(take) claim is
        # judged by comparing N, so that row's ratio is to the smallest N's figure.
        for op in ("list page of 20", "list page of 20 (cursor)"):
            base = next(r for r in self.rows if r["op"] == op and r["n"] == self.ns[0])
            for row in self.rows:
                if row["op"] == op:
                    row["floor"] = f"same op at N={self.ns[0]}"
                    row["ratio_floor"] = row["median_s"] / base["median_s"]

        # Compaction: sizes before and after, its cost, and its floor (rewrite the same bytes durably).
        self.log("compaction")
        for n, (v, _) in vaults.items():
            size_before = os.path.getsize(v.path)
            times: list[float] = []
            for _i in range(1 if self.quick or n >= 100_000 else 3):
                t = time.perf_counter_ns()
                v.compact()
                times.append((time.perf_counter_ns() - t) / 1e9)
            size_after = os.path.getsize(v.path)
            own = sealed_own_size(v)
            floor_rw = statistics.median(floors.rewrite(size_after) for _ in range(3))
            self.row("compact", n, times, "rewrite+fsync", floor_rw)
            self.extra.setdefault("sizes", {})[str(n)] = {
                "before_compact": size_before,
                "after_compact": size_after,
                "sealed_records_own": own,
                "ratio_after_to_own": size_after / own,
                "bytes_per_secret_after": size_after / n,
            }

        # Open with the fast KDF (its ~25 µs is the only KDF left in it), and the open floor: read
        # the file, verify the chain, decrypt and msgpack-decode every frame (no index building).
        self.log("open")
        kdf_fast = stats(time_each(lambda _: _crypto.derive_kek(b"x", bytes(16), FAST), 20, warmup=3))
        for n, (v, _) in vaults.items():
            path = v.path
            reps = 3 if n >= 100_000 else (3 if self.quick else 7)
            gc.collect()

            def reopen(_: int, path: Path = path) -> None:
                vault.open(path, PASS).close()

            opens = time_each(reopen, reps, warmup=1)
            keys = engine_of(v).keys().keys

            def floor(_: int, path: Path = path, keys: _crypto.Keys = keys) -> None:
                floor_open(path, keys)

            floor = stats(time_each(floor, reps, warmup=1))
            self.row("open (KDF apart)", n, opens, "read+verify+decrypt+decode", floor["median_s"])
            self.extra.setdefault("open_floor", {})[str(n)] = floor

        # Lock contention: 4 processes creating at once on the 10k vault. Each commit still
        # costs one fsync under the writer lock, so a writer's latency is ~4 commits; the
        # aggregate rate shows whether anything beyond the fsyncs is serialised.
        self.log("4 concurrent writers")
        n_mid = self.ns[1]
        path = vaults[n_mid][0].path
        per = 25 if self.quick else 100
        writers = [
            subprocess.Popen(
                [sys.executable, str(HERE / "_writer.py"), str(path), str(per)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        pipes = [(w.stdin, w.stdout) for w in writers]
        for w_in, _out in pipes:
            assert w_in is not None
            w_in.write(PASS + "\n")
            w_in.flush()
        for _in, w_out in pipes:
            assert w_out is not None
            w_out.readline()  # "ready": opened
        t = time.perf_counter_ns()
        for w_in, _out in pipes:
            assert w_in is not None
            w_in.write("go\n")
            w_in.close()
        lat: list[float] = []
        for w, (_in, w_out) in zip(writers, pipes, strict=True):
            assert w_out is not None
            lat += json.loads(w_out.read())["times"]
            w_out.close()
            w.wait(timeout=300)
        wall = (time.perf_counter_ns() - t) / 1e9
        self.row("create, 4 writers at once", n_mid, lat, "fsync", fs["median_s"])
        one = next(r for r in self.rows if r["op"] == "create (durable)" and r["n"] == n_mid)
        self.extra["concurrent_writers"] = {
            "writers": 4,
            "creates_each": per,
            "aggregate_per_s": 4 * per / wall,
            "single_writer_per_s": 1 / one["median_s"],
            "fsync_floor_per_s": 1 / fs["median_s"],
        }

        # Batch: 10k creates in one `with v.batch():` on a fresh vault, floor = one fsync + 10k seals.
        self.log("batch of 10k")
        batch_times: list[float] = []
        for k in range(2 if self.quick else 5):
            bv = vault.init(self.dir / f"batch{k}.cbkv", PASS, kdf=FAST)
            rows = [fields(i) for i in range(10_000)]
            gc.collect()
            t = time.perf_counter_ns()
            with bv.batch():
                for f in rows:
                    bv.secret.create(**f)
            batch_times.append((time.perf_counter_ns() - t) / 1e9)
            bv.close()
        batch_floor = fs["median_s"] + 10_000 * seal["median_s"]
        self.row("batch of 10k creates", 10_000, batch_times, "fsync + 10k seals", batch_floor)

        # KDF, reported apart: what open() adds on top, per preset.
        self.log("KDF")
        kdf: dict[str, Any] = {"fast (1, 8 KiB)": kdf_fast}
        presets = ["interactive"] if self.quick else ["interactive", "moderate"]
        for name in presets:
            params = _crypto.KDF_PRESETS[name]

            def derive(_: int, p: _crypto.KdfParams = params) -> None:
                _crypto.derive_kek(b"x", bytes(16), p)

            kdf[f"{name} ({params.opslimit}, {params.memlimit >> 20} MiB)"] = stats(time_each(derive, 3, warmup=1))

        # Peak memory in a fresh interpreter: ru_maxrss and tracemalloc.
        self.log("peak memory")
        nmax = self.ns[-1]
        memory: dict[str, Any] = {"n": nmax}
        for mode in ("rss", "tracemalloc"):
            memory[mode] = memprobe(vaults[nmax][0].path, mode)

        # The scale rows (full run only, so --quick keeps its scope and its minute): list from a random
        # cursor on reopened (checkpoint) vaults at every N, then open, memory and list at 1M.
        if self.big is not None:
            self._scale(vaults, floors_open=self.extra.setdefault("open_floor", {}))

        # Whole commands as a user runs them, and writer processes through the unlock agent.
        self.log("start-up and agent rows")
        from _startup import measure as measure_startup

        startup = measure_startup(self.quick, self.dir, log=self.log)

        # The stand-in under load: `cbk-vault serve` in a subprocess, 32 clients in another.
        from serve_load import measure as measure_serve_load

        serve_load = measure_serve_load(self.quick, self.dir, log=self.log)

        peers = self._peers()
        self.loads.append(("end", load()))
        return {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": self.quick,
            "machine": machine(self.dir),
            "load": {"start": self.loads[0][1], "end": self.loads[-1][1], "trace": self.loads},
            "floors": {"fsync": fs, "crypto": crypto, "seal": seal},
            "kdf": kdf,
            "memory": memory,
            "peers": peers,
            "startup": startup,
            "serve_load": serve_load,
            "rows": self.rows,
            **self.extra,
        }

    def _scale(self, vaults: dict[int, tuple[vault.Vault, list[str]]], floors_open: dict[str, Any]) -> None:
        """Issue 16: open, peak RSS and list-from-a-cursor at 1M beside the smaller N.

        Every vault was compacted above, so each starts with a checkpoint; each is reopened here so the
        list pages read records packed (decoded per page), as a process that just opened the vault does.
        """
        self.log("list from a cursor, reopened vaults")
        reads = self.reads
        paths: dict[int, tuple[Path, list[str]]] = {n: (v.path, ids) for n, (v, ids) in vaults.items()}
        big_path: Path | None = None
        if self.big is not None:
            self.log(f"building {self.big:,} secrets (scale row)")
            big_path = self.dir / f"v{self.big}.cbkv"
            build_big(big_path, self.big)
            self.extra.setdefault("sizes_scale", {})[str(self.big)] = os.path.getsize(big_path)
        for n, (path, ids) in paths.items():
            with vault.open(path, PASS) as v:
                picks = [ids[self.rng.randrange(len(ids))] for _ in range(reads)]
                self.row("list page of 20 (cursor, reopened)", n, self._cursor_pages(v, picks), None, None)
        if big_path is not None and self.big is not None:
            big = self.big
            self.log(f"open and list at {big:,}")
            gc.collect()
            opens = time_each(lambda _: vault.open(big_path, PASS).close(), 3, warmup=1)
            with vault.open(big_path, PASS) as v:
                keys = engine_of(v).keys().keys
                # Random cursors over the whole vault: the ids at random positions of the list order.
                with engine_of(v).reading() as index:
                    order = index.order
                    picks = [order[self.rng.randrange(len(order))][1] for _ in range(reads)]
                self.row("list page of 20 (cursor, reopened)", big, self._cursor_pages(v, picks), None, None)
            floor = stats(time_each(lambda _: floor_open(big_path, keys), 3, warmup=1))
            self.row("open (KDF apart)", big, opens, "read+verify+decrypt+decode", floor["median_s"])
            floors_open[str(big)] = floor
            self.log(f"peak memory at {big:,}")
            self.extra["memory_scale"] = {"n": big, "rss": memprobe(big_path, "rss")}
            big_path.unlink()
        op = "list page of 20 (cursor, reopened)"
        base = next(r for r in self.rows if r["op"] == op and r["n"] == self.ns[0])
        for row in self.rows:
            if row["op"] == op:
                row["floor"] = f"same op at N={self.ns[0]}"
                row["ratio_floor"] = row["median_s"] / base["median_s"]

    def _cursor_pages(self, v: vault.Vault, picks: list[str]) -> list[float]:
        sec = v.secret

        def page(i: int) -> object:
            return sec.list(take=20, order="asc", cursor=picks[i])

        return time_each(page, len(picks))

    def _peers(self) -> dict[str, Any]:
        from _peers import PEERS, available

        found = available()
        out: dict[str, Any] = {"versions": found}
        ns = (1000,) if self.quick else (1000, 10_000)
        for name in found:
            for n in ns:
                self.log(f"peer {name} at {n}")
                d = self.dir / f"peer-{name}-{n}"
                d.mkdir()
                peer = PEERS[name](d)
                peer.fill(n)
                out.setdefault(name, {})["kdf_s"] = peer.kdf_seconds()
                adds = 3 if self.quick else (5 if n >= 10_000 else 15)
                gets = 5 if self.quick else (10 if n >= 10_000 else 30)

                def add(i: int, p: Any = peer, n: int = n) -> None:
                    p.add(n + i)

                def get(i: int, p: Any = peer, n: int = n) -> None:
                    p.fetch(self.rng.randrange(n))

                add_s = time_each(add, adds, warmup=1)
                get_s = time_each(get, gets, warmup=1)
                label = {"pykeepass": ("pykeepass add + save", "pykeepass fetch (find_entries)"),
                         "cryptfile": ("cryptfile set_password", "cryptfile get_password")}[name]  # fmt: skip
                self.row(label[0], n, add_s, None, None)
                self.row(label[1], n, get_s, None, None)
                out[name][f"size_{n}"] = peer.size()
                shutil.rmtree(d)
        return out


# --- goals and the table ------------------------------------------------------------------


def find(results: dict[str, Any], op: str, n: int) -> dict[str, Any] | None:
    return next((r for r in results["rows"] if r["op"] == op and r["n"] == n), None)


def peer_ratios(results: dict[str, Any]) -> None:
    """Peer median ÷ our median for the same operation at the same N (how many times faster we are)."""
    pairs = {
        "create (durable)": {"pykeepass": "pykeepass add + save", "cryptfile": "cryptfile set_password"},
        "fetch by id": {"pykeepass": "pykeepass fetch (find_entries)", "cryptfile": "cryptfile get_password"},
    }
    for r in results["rows"]:
        for peer, op in pairs.get(r["op"], {}).items():
            p = find(results, op, r["n"])
            r[f"vs_{peer}"] = p["median_s"] / r["median_s"] if p else None


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    ns = sorted({r["n"] for r in results["rows"] if r["op"] == "fetch by id"})
    lo, hi = ns[0], ns[-1]
    out: list[dict[str, Any]] = []

    def goal(text: str, figure: str, met: bool | None) -> None:
        out.append({"goal": text, "figure": figure, "met": met})

    for op in ("create (durable)", "update (durable)", "delete (durable)"):
        a, b = find(results, op, lo), find(results, op, hi)
        assert a and b
        goal(f"{op}: median within 2x of the fsync floor (N={hi})", f"{b['ratio_floor']:.2f}x", b["ratio_floor"] <= 2)
        flat = b["median_s"] / a["median_s"]
        goal(f"{op}: flat, N={hi} within 1.3x of N={lo}", f"{flat:.2f}x", flat <= 1.3)
    f = find(results, "fetch by id", hi)
    assert f
    goal(f"fetch within 10x of crypto+decode floor (N={hi})", f"{f['ratio_floor']:.1f}x", f["ratio_floor"] <= 10)
    for op in ("list page of 20", "list page of 20 (cursor)"):
        lp = find(results, op, hi)
        assert lp
        ratio = lp["ratio_floor"]
        goal(f"{op}: independent of N (N={hi} vs N={lo}, within 1.3x)", f"{ratio:.2f}x", ratio <= 1.3)
    # Issue 16 ("a million secrets on a laptop"): open and memory at 100k and 1M, list from a cursor flat to 1M.
    quick_note = "" if hi == 100_000 else f" (measured at N={hi} only: quick run)"
    o = find(results, "open (KDF apart)", hi)
    assert o
    goal(f"open <= 0.25 s, KDF apart (N=100000){quick_note}", f"{o['median_s']:.3f} s", o["median_s"] <= 0.25)
    mem = results["memory"]
    rss = mem["rss"]["peak_bytes"] / 2**20
    goal(
        f"peak RSS <= 100 MiB (N=100000, a fresh process, VmHWM){quick_note}", f"{rss:.0f} MiB", rss <= 100
    )
    big = find(results, "open (KDF apart)", 1_000_000)
    scale = results.get("memory_scale")
    if big is None or scale is None:
        goal("open <= 2.5 s, KDF apart (N=1000000)", "full run only", None)
        goal("peak RSS <= 600 MiB (N=1000000)", "full run only", None)
    else:
        goal("open <= 2.5 s, KDF apart (N=1000000)", f"{big['median_s']:.2f} s", big["median_s"] <= 2.5)
        rss_big = scale["rss"]["peak_bytes"] / 2**20
        goal("peak RSS <= 600 MiB (N=1000000, a fresh process, VmHWM)", f"{rss_big:.0f} MiB", rss_big <= 600)
    op = "list page of 20 (cursor, reopened)"
    tops = [r["n"] for r in results["rows"] if r["op"] == op]
    lc = find(results, op, max(tops)) if tops else None
    if lc is None:
        goal(f"list from a random cursor, reopened: N=1000000 within 1.3x of N={lo}", "full run only", None)
    else:
        goal(
            f"list from a random cursor, reopened: N={lc['n']} within 1.3x of N={lo}",
            f"{lc['ratio_floor']:.2f}x",
            lc["ratio_floor"] <= 1.3,
        )
    bt = find(results, "batch of 10k creates", 10_000)
    assert bt
    goal("batch of 10k creates < 1 s", f"{bt['median_s']:.3f} s", bt["median_s"] < 1)
    size = results["sizes"][str(hi)]
    goal(
        f"file after compaction within 1.5x of the sealed records' own size (N={hi})",
        f"{size['ratio_after_to_own']:.2f}x",
        size["ratio_after_to_own"] <= 1.5,
    )
    for peer in ("pykeepass", "cryptfile"):
        at = (
            10_000
            if find(results, "create (durable)", 10_000)
            and any(r["n"] == 10_000 and r["op"].startswith(peer) for r in results["rows"])
            else 1000
        )
        c, g = find(results, "create (durable)", at), find(results, "fetch by id", at)
        if not c or c.get(f"vs_{peer}") is None or not g:
            goal(f">= 100x faster per durable add than {peer} (N=10k)", "peer not installed", None)
            continue
        note = "" if at == 10_000 else f" (measured at N={at} only: quick run)"
        add_x, get_x = c[f"vs_{peer}"], g[f"vs_{peer}"]
        goal(f">= 100x faster per durable add than {peer} (N={at}){note}", f"{add_x:,.0f}x", add_x >= 100)
        goal(f"fetch at least as fast as {peer} (N={at}){note}", f"{get_x:,.0f}x", get_x >= 1)
    from _startup import goals as startup_goals

    out += startup_goals(results["startup"])
    from serve_load import goals as serve_load_goals

    out += serve_load_goals(results["serve_load"])
    return out


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2f}x" if x < 10 else f"{x:,.0f}x")


def table(results: dict[str, Any]) -> str:
    head = "| operation | N | median | p95 | floor | ratio to floor | pykeepass ÷ us | cryptfile ÷ us |"
    lines = [head, "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(
            f"| {r['op']} | {r['n']:,} | {fmt_time(r['median_s'])} | {fmt_time(r['p95_s'])} | {r['floor'] or '-'} "
            f"| {fmt_ratio(r['ratio_floor'])} | {fmt_ratio(r.get('vs_pykeepass'))} "
            f"| {fmt_ratio(r.get('vs_cryptfile'))} |"
        )
    return "\n".join(lines)


def summary(results: dict[str, Any]) -> str:
    fl = results["floors"]
    m = results["machine"]
    la = results["load"]
    mem = results["memory"]
    parts = [
        f"cbk-vault bench {'(quick) ' if results['quick'] else ''}{results['date']}",
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_bytes'] / 2**30:.0f} GiB, Python {m['python']}, "
        f"{m['filesystem']}",
        f"load avg (1/5/15 min): start {la['start'][0]:.2f}/{la['start'][1]:.2f}/{la['start'][2]:.2f}, "
        f"end {la['end'][0]:.2f}/{la['end'][1]:.2f}/{la['end'][2]:.2f}",
        f"floors: append {results['create_frame_bytes']} B + fdatasync {fmt_time(fl['fsync']['median_s'])} "
        f"(p95 {fmt_time(fl['fsync']['p95_s'])}); "
        f"secretbox open + msgpack decode {fmt_time(fl['crypto']['median_s'])}; "
        f"msgpack encode + secretbox seal of a record {fmt_time(fl['seal']['median_s'])}",
        "KDF (reported apart; open() runs it once): "
        + ", ".join(f"{k} {fmt_time(v['median_s'])}" for k, v in results["kdf"].items()),
        "",
        table(results),
        "",
        "sizes: "
        + "; ".join(
            f"N={n}: {s['before_compact']:,} B before compact, {s['after_compact']:,} B after "
            f"({s['bytes_per_secret_after']:.0f} B/secret, {s['ratio_after_to_own']:.2f}x the sealed records' own "
            f"{s['sealed_records_own']:,} B)"
            for n, s in results["sizes"].items()
        ),
        _writers_line(results),
        f"peak memory at N={mem['n']}: peak RSS (VmHWM) {mem['rss']['peak_bytes'] / 2**20:.0f} MiB "
        f"(interpreter + imports alone {mem['rss']['baseline_bytes'] / 2**20:.0f} MiB); "
        f"tracemalloc peak {mem['tracemalloc']['peak_bytes'] / 2**20:.0f} MiB",
        _scale_line(results),
        _peer_line(results),
        "",
        *startup_lines(results["startup"]),
        "",
        *serve_load_lines(results["serve_load"]),
        "",
        "goals:",
    ]
    for g in results["goals"]:
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[g["met"]]
        parts.append(f"  [{mark}] {g['goal']}: {g['figure']}")
    return "\n".join(parts)


def markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown (bench/results.md), for bench/README.md and docs/PERF.md."""
    m, la, fl, mem = results["machine"], results["load"], results["floors"], results["memory"]
    lines = [
        f"Measured {results['date']} with `python bench/run.py{' --quick' if results['quick'] else ''}` on "
        f"{m['cpu']} ({m['cpus']} CPUs, {m['memory_bytes'] / 2**30:.0f} GiB), {m['platform']}, Python {m['python']}, "
        f"PyNaCl {m['pynacl']}, msgpack {m['msgpack']}; vaults and floor file on {m['filesystem']}. "
        f"Shared machine: load average (1/5/15 min) {la['start'][0]:.2f}/{la['start'][1]:.2f}/{la['start'][2]:.2f} "
        f"at the start, {la['end'][0]:.2f}/{la['end'][1]:.2f}/{la['end'][2]:.2f} at the end.",
        "",
        f"Floors, measured in the same run: append {results['create_frame_bytes']} B + fdatasync "
        f"**{fmt_time(fl['fsync']['median_s'])}** (p95 {fmt_time(fl['fsync']['p95_s'])}); one secretbox open + one "
        f"msgpack decode **{fmt_time(fl['crypto']['median_s'])}**; msgpack encode + secretbox seal of one record "
        f"{fmt_time(fl['seal']['median_s'])}.",
        "",
        table(results),
        "",
        "KDF, reported apart (open() runs it once per unlock): "
        + ", ".join(f"{k} {fmt_time(v['median_s'])}" for k, v in results["kdf"].items())
        + ". Peers at their lowest KDF, timed apart: "
        + ", ".join(
            f"{k} {fmt_time(v['kdf_s'])}" for k, v in results["peers"].items() if k != "versions" and "kdf_s" in v
        )
        + " (pykeepass "
        + results["peers"]["versions"].get("pykeepass", "not installed")
        + ", keyrings.cryptfile "
        + results["peers"]["versions"].get("cryptfile", "not installed")
        + "; neither calls fsync).",
        "",
        "| N | file before compact | after compact | bytes/secret | sealed records' own size | after ÷ own |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, sz in results["sizes"].items():
        lines.append(
            f"| {int(n):,} | {sz['before_compact']:,} B | {sz['after_compact']:,} B "
            f"| {sz['bytes_per_secret_after']:.0f} | {sz['sealed_records_own']:,} B | {sz['ratio_after_to_own']:.2f}x |"
        )
    lines += [
        "",
        _writers_line(results) + ".",
        "",
        f"Peak memory, open of {mem['n']:,} secrets + 100 fetches + a list page in a fresh interpreter: "
        f"peak RSS (VmHWM) **{mem['rss']['peak_bytes'] / 2**20:.0f} MiB** (the interpreter with vault imported: "
        f"{mem['rss']['baseline_bytes'] / 2**20:.0f} MiB); "
        f"tracemalloc peak {mem['tracemalloc']['peak_bytes'] / 2**20:.0f} MiB. " + _scale_line(results) + ".",
        "",
        *startup_lines(results["startup"]),
        "",
        *serve_load_lines(results["serve_load"]),
        "",
        "| goal | figure | |",
        "|---|---:|---|",
    ]
    for g in results["goals"]:
        mark = {True: "met", False: "**not met**", None: "n/a"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['figure']} | {mark} |")
    return "\n".join(lines) + "\n"


def startup_lines(startup: dict[str, Any]) -> list[str]:
    from _startup import lines

    return lines(startup)


def serve_load_lines(serve_load: dict[str, Any]) -> list[str]:
    from serve_load import lines

    return lines(serve_load)


def _writers_line(results: dict[str, Any]) -> str:
    cw = results["concurrent_writers"]
    return (
        f"{cw['writers']} concurrent writer processes x {cw['creates_each']} durable creates: "
        f"{cw['aggregate_per_s']:,.0f} commits/s together, vs {cw['single_writer_per_s']:,.0f}/s for one writer "
        f"and {cw['fsync_floor_per_s']:,.0f}/s for back-to-back floor fsyncs"
    )


def _scale_line(results: dict[str, Any]) -> str:
    scale = results.get("memory_scale")
    if scale is None:
        return "scale rows (1M): full run only"
    n = scale["n"]
    size = results.get("sizes_scale", {}).get(str(n))
    floor = results.get("open_floor", {}).get(str(n), {}).get("median_s")
    return (
        f"at N={n:,} (a compacted vault of {size or 0:,} B, built in the run): peak RSS (VmHWM) "
        f"{scale['rss']['peak_bytes'] / 2**20:.0f} MiB after open + 100 fetches + a list page; open floor "
        f"(read + verify + decrypt + msgpack-decode every frame) {fmt_time(floor)}"
    )


def _peer_line(results: dict[str, Any]) -> str:
    versions = results["peers"]["versions"]
    if not versions:
        return "peers: none installed (pip install -e '.[bench]' to compare with pykeepass and keyrings.cryptfile)"
    kdf = ", ".join(
        f"{k} {fmt_time(v['kdf_s'])}" for k, v in results["peers"].items() if k != "versions" and "kdf_s" in v
    )
    names = ", ".join(f"{k} {v}" for k, v in versions.items())
    return f"peers: {names} (KDF at its minimum, timed apart: {kdf}; neither fsyncs)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: smaller N, fewer repeats (< 1 min)")
    ap.add_argument("--out", type=Path, help="where results.json and chart.png go (default: bench/; quick: a temp dir)")
    ap.add_argument("--dir", type=Path, help="scratch directory for the vaults (default: a new temp dir)")
    ap.add_argument(
        "--update-docs",
        action="store_true",
        help="replace the results block in bench/README.md and docs/PERF.md with this run's results.md",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))  # for the _peers / _chart helpers when run as a script
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="cbkv-bench-", dir=args.dir))
    try:
        results = Bench(args.quick, scratch).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    peer_ratios(results)
    results["goals"] = goals(results)
    results["elapsed_s"] = time.monotonic() - started
    print(summary(results))
    # A quick run without --out keeps nothing: CI calls it as a smoke test on every push.
    keep = args.out is not None or not args.quick
    out = args.out or (HERE if keep else Path(tempfile.mkdtemp(prefix="cbkv-bench-out-")))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(markdown(results))
    from _chart import draw

    charted = draw(results, out / "chart.png")
    if keep:
        chart = f" and {out / 'chart.png'}" if charted else " (no chart: matplotlib missing)"
        print(f"\nwrote {out / 'results.json'}, {out / 'results.md'}{chart}")
    else:
        print(
            f"\nquick run: results, Markdown{' and chart' if charted else ''} rendered and discarded "
            "(--out DIR keeps them)"
        )
        shutil.rmtree(out, ignore_errors=True)
    print(f"elapsed {results['elapsed_s']:.1f} s")
    if args.update_docs:
        for doc in (HERE / "README.md", HERE.parent / "docs" / "PERF.md"):
            print(f"updated {doc}" if update_block(doc, markdown(results)) else f"no results block in {doc}")
    return 0


BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def update_block(doc: Path, text: str) -> bool:
    """Swap the text between the results markers; the prose around them is written by hand."""
    try:
        body = doc.read_text()
    except FileNotFoundError:
        return False
    start, stop = body.find(BEGIN), body.find(END)
    if start < 0 or stop < start:
        return False
    doc.write_text(body[: start + len(BEGIN)] + "\n" + text + body[stop:])
    return True


if __name__ == "__main__":
    raise SystemExit(main())
