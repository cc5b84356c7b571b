"""Shared fault-injection helpers: an ``IO`` that fails or "dies" at the Nth call, crash images, state dumps.

The store routes every system call that changes the disk through ``vault._store.IO``;
``vault.init``/``vault.open`` take a private ``_io=``. :class:`FaultIO` counts those calls
once armed and, at call N, either raises ``OSError(errno)`` without doing the call (an I/O
error) or does the call and then simulates the process dying there (a crash).

A crash is judged on *crash images*: what a later process could find on disk. Besides the
plain process-crash image (the page cache as it is), the ALICE-style images model an OS
crash, where only data that was fsynced survives (Pillai et al., OSDI 2014):

- ``process``: names and contents exactly as they are at the instant of death;
- ``lost-data``: current names, but every file reverts to its last fsynced content;
- ``lost-all``: also directory entries revert to the last directory fsync;
- ``zeroed``: current names and sizes, bytes written since the last fsync read as zeros
  (a file system that extended the file but never wrote the block).
"""

from __future__ import annotations

import errno as _errno
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vault
from vault._store import IO

FAST = vault.KdfParams(opslimit=1, memlimit=8192)
PASSPHRASE = "correct horse battery staple"
NEW_PASSPHRASE = "new passphrase, rotated"
REKEY_PASSPHRASE = "a new data key too"

#: One vault's full contents: id -> the cloud's item shape with the value revealed.
State = dict[str, dict[str, Any]]


# --- determinism ---------------------------------------------------------------------


class SeededRng:
    """A deterministic ``_rng``: the same seed gives the same ids, salts and nonces (so runs compare)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._random.randbytes(n)


class StepClock:
    """A deterministic clock: each call is one millisecond later."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


# --- state ---------------------------------------------------------------------------


def dump(v: vault.Vault) -> State:
    """Every secret with every field, value included (fetched, so each value box is opened)."""
    out: State = {}
    cursor: str | None = None
    while True:
        page = v.secret.list(order="asc", take=100, cursor=cursor)
        for item in page.items:
            out[item.id] = v.secret.fetch(item.id).to_dict(reveal=True)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert len(out) == len(v)
    return out


def state_of(path: Path, passphrase: str) -> State:
    with vault.open(path, passphrase) as v:
        return dump(v)


def outcome(path: Path, data: bytes) -> State | vault.VaultError:
    """Write ``data`` as the vault at ``path`` and open it: its state, or the typed error it gives."""
    with open(path, "wb") as f:
        f.write(data)
    try:
        with vault.open(path, PASSPHRASE) as v:
            return dump(v)
    except vault.VaultError as exc:
        return exc


def freeze(state: State) -> str:
    return json.dumps(state, sort_keys=True)


# --- fault-injecting IO ----------------------------------------------------------------


class Died(BaseException):
    """The simulated death of the process. A BaseException, so no ``except Exception`` swallows it."""


@dataclass
class Image:
    """One possible on-disk state after a crash: file name -> bytes, in the vault's directory."""

    kind: str
    files: dict[str, bytes]

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return h.hexdigest()

    def restore(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, data in self.files.items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)


def _read_fd(fd: int) -> bytes:
    # The fd may be write-only (a temp file); /proc re-opens the same inode for reading.
    with open(f"/proc/self/fd/{fd}", "rb") as f:
        return f.read()


@dataclass
class _Tracker:
    """What is durable in one directory: file contents by inode, names as of the last directory fsync."""

    directory: Path
    fd_ino: dict[int, int] = field(default_factory=dict)
    durable: dict[int, bytes] = field(default_factory=dict)
    dirty: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    durable_names: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.durable_names = self._listing()
        for name, ino in self.durable_names.items():
            self.durable[ino] = (self.directory / name).read_bytes()

    def _listing(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False):
                out[entry.name] = entry.inode()
        return out

    def opened(self, fd: int, created: bool) -> None:
        st = os.fstat(fd)
        if not os.path.isfile(f"/proc/self/fd/{fd}"):
            return  # a directory fd (opened to fsync the directory)
        self.fd_ino[fd] = st.st_ino
        if st.st_ino not in self.durable:
            # A brand-new file: until its first fsync, an OS crash may leave it empty.
            self.durable[st.st_ino] = b"" if created else _read_fd(fd)

    def written(self, fd: int, offset: int, length: int) -> None:
        ino = self.fd_ino.get(fd)
        if ino is not None:
            self.dirty.setdefault(ino, []).append((offset, length))

    def synced(self, fd: int) -> None:
        ino = self.fd_ino.get(fd)
        if ino is not None:
            self.durable[ino] = _read_fd(fd)
            self.dirty.pop(ino, None)
        elif os.path.isdir(f"/proc/self/fd/{fd}"):
            self.durable_names = self._listing()

    def closed(self, fd: int) -> None:
        self.fd_ino.pop(fd, None)

    def images(self) -> list[Image]:
        current = self._listing()
        contents = {name: (self.directory / name).read_bytes() for name in current}
        out = [Image("process", contents)]
        out.append(Image("lost-data", {n: self.durable.get(i, contents[n]) for n, i in current.items()}))
        out.append(Image("lost-all", {n: self.durable[i] for n, i in self.durable_names.items() if i in self.durable}))
        zeroed: dict[str, bytes] = {}
        for name, ino in current.items():
            data = bytearray(contents[name])
            for offset, length in self.dirty.get(ino, []):
                end = min(len(data), offset + length)
                if offset < end:
                    data[offset:end] = bytes(end - offset)
            zeroed[name] = bytes(data)
        out.append(Image("zeroed", zeroed))
        unique: dict[str, Image] = {}
        for image in out:
            unique.setdefault(image.digest(), image)
        return list(unique.values())


class FaultIO(IO):
    """Counts the store's system calls once ``armed``; fails (``fail_at``) or dies (``die_at``) at call N.

    ``fail_at``: call N raises ``OSError(fail_errno)`` and is not performed (``close`` is
    performed first, as Linux releases the descriptor even when close reports an error).
    ``die_at``: call N is performed, the crash images are taken, and :class:`Died` is
    raised; every later call raises :class:`Died` too, so no cleanup reaches the disk.
    """

    def __init__(
        self,
        *,
        fail_at: int | None = None,
        fail_errno: int = _errno.EIO,
        die_at: int | None = None,
        directory: Path | None = None,
        armed: bool = True,
    ) -> None:
        self.fail_at = fail_at
        self.fail_errno = fail_errno
        self.die_at = die_at
        self.armed = armed
        self.count = 0
        self.calls: list[str] = []
        self.failed = False
        self.dead = False
        self.images: list[Image] = []
        self.open_fds: set[int] = set()
        self._tracker = _Tracker(directory) if directory is not None else None

    def arm(self) -> None:
        self.armed = True
        self.count = 0
        self.calls = []
        if self._tracker is not None:
            self._tracker.start()
            for fd in self.open_fds:
                self._tracker.opened(fd, created=False)

    def _step(self, name: str) -> bool:
        """Count a call; raise for an injected failure; True if this call is the one to die after."""
        if self.dead:
            raise Died(name)
        if not self.armed:
            return False
        self.count += 1
        self.calls.append(name)
        if self.fail_at == self.count and name != "close":
            self.failed = True
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        return self.die_at == self.count

    def _die(self) -> None:
        if self._tracker is not None:
            self.images = self._tracker.images()
        self.dead = True
        raise Died(f"died after call {self.count}")

    def bury(self) -> None:
        """Release what the dead process held (the kernel would, on exit)."""
        for fd in list(self.open_fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self.open_fds.clear()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        die = self._step("open")
        fd = super().open(path, flags, mode)
        self.open_fds.add(fd)
        if self._tracker is not None and self.armed:
            self._tracker.opened(fd, created=bool(flags & os.O_EXCL))
        if die:
            self._die()
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        die = self._step("pwrite")
        n = super().pwrite(fd, data, offset)
        if self._tracker is not None:
            self._tracker.written(fd, offset, n)
        if die:
            self._die()
        return n

    def fsync(self, fd: int) -> None:
        die = self._step("fsync")
        super().fsync(fd)
        if self._tracker is not None:
            self._tracker.synced(fd)
        if die:
            self._die()

    def fdatasync(self, fd: int) -> None:
        die = self._step("fdatasync")
        super().fdatasync(fd)
        if self._tracker is not None:
            self._tracker.synced(fd)
        if die:
            self._die()

    def ftruncate(self, fd: int, length: int) -> None:
        die = self._step("ftruncate")
        super().ftruncate(fd, length)
        if die:
            self._die()

    def replace(self, src: str, dst: str) -> None:
        die = self._step("replace")
        super().replace(src, dst)
        if die:
            self._die()

    def link(self, src: str, dst: str) -> None:
        die = self._step("link")
        super().link(src, dst)
        if die:
            self._die()

    def unlink(self, path: str) -> None:
        die = self._step("unlink")
        super().unlink(path)
        if die:
            self._die()

    def mkdir(self, path: str) -> None:
        die = self._step("mkdir")
        super().mkdir(path)
        if die:
            self._die()

    def close(self, fd: int) -> None:
        if self.dead:
            raise Died("close")
        self.open_fds.discard(fd)
        if self._tracker is not None:
            self._tracker.closed(fd)
        if not self.armed:
            super().close(fd)
            return
        self.count += 1
        self.calls.append("close")
        super().close(fd)
        if self.fail_at == self.count:
            self.failed = True
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        if self.die_at == self.count:
            self._die()


# --- scenarios ---------------------------------------------------------------------------

#: A step of a write scenario: it gets the open vault and the scenario's scratch dict.
Op = Callable[[vault.Vault, dict[str, Any]], None]


@dataclass
class Step:
    name: str
    run: Op
    #: The passphrase that opens the vault once this step has committed.
    passphrase: str = PASSPHRASE


def seed_vault(path: Path, seed: int = 1) -> None:
    """The starting vault of the write scenarios: three secrets (one with alias and meta)."""
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(seed)) as v:
        v.secret.create(name="alpha", value="alpha-v1", alias="alpha", meta={"n": 1})
        v.secret.create(name="beta", value="beta-v1", type="bearer")
        v.secret.create(name="gamma", description="no value")


def _id(v: vault.Vault, name: str) -> str:
    return v.secret.fetch(f"({name})").id


def _create(v: vault.Vault, s: dict[str, Any]) -> None:
    v.secret.create(name="delta", value="delta-v1", description="created in the scenario")


def _update(v: vault.Vault, s: dict[str, Any]) -> None:
    v.secret.update(_id(v, "alpha"), value="alpha-v2", meta={"$update": {"m": "x"}})


def _delete(v: vault.Vault, s: dict[str, Any]) -> None:
    v.secret.delete(_id(v, "beta"))


def _undelete(v: vault.Vault, s: dict[str, Any]) -> None:
    # beta went to the trash in the step before: it comes back as a new revision.
    (beta,) = [t for t in v.secret.list(deleted=True).items if t.name == "beta"]
    v.secret.undelete(beta.id)


def _restore(v: vault.Vault, s: dict[str, Any]) -> None:
    # alpha's revision 1 (value alpha-v1, meta without "m") becomes current again.
    v.secret.restore(_id(v, "alpha"), 1)


def _batch(v: vault.Vault, s: dict[str, Any]) -> None:
    gamma = _id(v, "gamma")
    with v.batch():
        v.secret.create(name="eps", value="eps-v1")
        v.secret.update(gamma, description="changed in a batch", value="gamma-v1")
        v.secret.create(name="zeta", value="zeta-v1", alias="zeta")


def _compact(v: vault.Vault, s: dict[str, Any]) -> None:
    v.compact()


def _change_passphrase(v: vault.Vault, s: dict[str, Any]) -> None:
    v.change_passphrase(NEW_PASSPHRASE)


def _rekey(v: vault.Vault, s: dict[str, Any]) -> None:
    v.change_passphrase(REKEY_PASSPHRASE, rekey=True)


def _create_after(v: vault.Vault, s: dict[str, Any]) -> None:
    v.secret.create(name="eta", value="eta-v1")


def _update_after(v: vault.Vault, s: dict[str, Any]) -> None:
    v.secret.update(_id(v, "eps"), value="eps-v2")


def _auto_compact(v: vault.Vault, s: dict[str, Any]) -> None:
    # More than 1024 superseded ops in one batch: the commit is followed by an automatic compaction.
    zeta = _id(v, "zeta")
    with v.batch():
        for i in range(1030):
            v.secret.update(zeta, description=f"churn {i}")


#: Every write path, in an order where each has something to act on.
SCENARIO: list[Step] = [
    Step("create", _create),
    Step("update", _update),
    Step("delete", _delete),
    Step("undelete", _undelete),
    Step("restore", _restore),
    Step("delete-again", _delete),
    Step("batch", _batch),
    Step("compact", _compact),
    Step("change_passphrase", _change_passphrase, NEW_PASSPHRASE),
    Step("create-after-passwd", _create_after, NEW_PASSPHRASE),
    Step("rekey", _rekey, REKEY_PASSPHRASE),
    Step("update-after-rekey", _update_after, REKEY_PASSPHRASE),
    Step("auto-compaction", _auto_compact, REKEY_PASSPHRASE),
]


def open_seeded(path: Path, io: IO | None, seed: int = 7, clock: StepClock | None = None) -> vault.Vault:
    return vault.open(path, PASSPHRASE, clock=clock or StepClock(1_800_000_000_000), _rng=SeededRng(seed), _io=io)


#: The vault file's name inside each test's scratch directory.
NAME = "v.cbkv"


def dry_run(base: Path, work: Path) -> tuple[list[tuple[int, int]], list[State], list[str]]:
    """Run SCENARIO without faults on a copy of ``base``: each step's range of I/O call numbers,
    the vault's state before the first step and after each, and every call made."""
    shutil.copytree(base, work)
    io = FaultIO(armed=False)
    clock = StepClock(1_800_000_000_000)
    v = open_seeded(work / NAME, io, clock=clock)
    io.arm()

    def state() -> State:
        # The access log stamps each value read with the vault's clock, so a dump ticks it; the
        # fault runs dump nothing between steps, and their timestamps must match these.
        now = clock.now
        try:
            return dump(v)
        finally:
            clock.now = now

    bounds: list[tuple[int, int]] = []
    states = [state()]
    s: dict[str, Any] = {}
    for step in SCENARIO:
        start = io.count
        step.run(v, s)
        bounds.append((start, io.count))
        before_dump = io.count
        states.append(state())
        assert io.count == before_dump, "reading must not write"
    v.close()
    return bounds, states, list(io.calls)


def copy_dir(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- the SIGKILL child -------------------------------------------------------------------
#
# Protocol (one line per event, each written with one os.write so a kill never splits it):
#   "B <json op>"  the child is about to run this op
#   "A <id>"       the op returned (acknowledged); the id of the secret it created, or "-"
# The parent keeps a model by secret name and, after the kill, allows exactly the
# acknowledged state, or that state plus the one op in flight.


def kill_passphrase(k: int) -> str:
    return PASSPHRASE if k == 0 else f"{PASSPHRASE} #{k}"


def _emit(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


def kill_child(path: Path, passphrase_index: int, seed: int, out_fd: int, prefix: str) -> None:
    """Write forever (until killed): creates, updates, deletes, batches, compactions, rekeys."""
    rnd = random.Random(seed)
    v = vault.open(path, kill_passphrase(passphrase_index))
    names: dict[str, str] = {}
    for item in dump(v).values():
        names[item["name"]] = item["id"]
    counter = 0
    rekeys = passphrase_index
    while True:
        r = rnd.random()
        if r < 0.35 or len(names) < 4:
            counter += 1
            name = f"{prefix}-{counter}"
            value = f"v-{name}-{rnd.randrange(1 << 30)}"
            _emit(out_fd, "B " + json.dumps({"op": "create", "name": name, "value": value}))
            sid = v.secret.create(name=name, value=value).id
            names[name] = sid
            _emit(out_fd, f"A {sid}")
        elif r < 0.6:
            name = rnd.choice(sorted(names))
            value = f"u-{name}-{rnd.randrange(1 << 30)}"
            _emit(out_fd, "B " + json.dumps({"op": "update", "name": name, "value": value}))
            v.secret.update(names[name], value=value)
            _emit(out_fd, "A -")
        elif r < 0.8:
            name = rnd.choice(sorted(names))
            _emit(out_fd, "B " + json.dumps({"op": "delete", "name": name}))
            v.secret.delete(names.pop(name))
            _emit(out_fd, "A -")
        elif r < 0.95:
            ops: list[dict[str, Any]] = []
            victims = rnd.sample(sorted(names), 2)
            ops.append({"op": "update", "name": victims[0], "value": f"b-{rnd.randrange(1 << 30)}"})
            ops.append({"op": "delete", "name": victims[1]})
            for _ in range(rnd.randrange(1, 4)):
                counter += 1
                ops.append({"op": "create", "name": f"{prefix}-{counter}", "value": f"bc-{rnd.randrange(1 << 30)}"})
            _emit(out_fd, "B " + json.dumps({"op": "batch", "ops": ops}))
            with v.batch():
                for op in ops:
                    if op["op"] == "update":
                        v.secret.update(names[op["name"]], value=op["value"])
                    elif op["op"] == "delete":
                        v.secret.delete(names[op["name"]])
                    else:
                        op["id"] = v.secret.create(name=op["name"], value=op["value"]).id
            for op in ops:
                if op["op"] == "delete":
                    names.pop(op["name"])
                elif op["op"] == "create":
                    names[op["name"]] = op["id"]
            _emit(out_fd, "A -")
        elif r < 0.98:
            _emit(out_fd, "B " + json.dumps({"op": "compact"}))
            v.compact()
            _emit(out_fd, "A -")
        else:
            rekeys += 1
            _emit(out_fd, "B " + json.dumps({"op": "rekey", "k": rekeys}))
            v.change_passphrase(kill_passphrase(rekeys), kdf=FAST)
            _emit(out_fd, "A -")


@dataclass
class KillModel:
    """What the parent knows was acknowledged: name -> value, and the passphrase index."""

    values: dict[str, str | None] = field(default_factory=dict)
    passphrase_index: int = 0

    def applied(self, op: dict[str, Any]) -> KillModel:
        out = KillModel(dict(self.values), self.passphrase_index)
        kind = op["op"]
        if kind in ("create", "update"):
            out.values[op["name"]] = op["value"]
        elif kind == "delete":
            del out.values[op["name"]]
        elif kind == "batch":
            for sub in op["ops"]:
                out = out.applied(sub)
        elif kind == "rekey":
            out.passphrase_index = op["k"]
        return out


def parse_kill_output(text: str, model: KillModel) -> tuple[KillModel, dict[str, Any] | None, int]:
    """The acknowledged model, the op in flight (if any) and how many ops were acknowledged."""
    inflight: dict[str, Any] | None = None
    acked = 0
    # Only whole lines count: each is one os.write to a pipe (atomic), but be strict anyway.
    for line in text.split("\n")[:-1]:
        if line.startswith("B "):
            assert inflight is None, "two ops in flight"
            inflight = json.loads(line[2:])
        elif line.startswith("A "):
            assert inflight is not None, "acknowledgement without an op"
            model = model.applied(inflight)
            inflight = None
            acked += 1
    return model, inflight, acked


def values_by_name(path: Path, passphrase: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in state_of(path, passphrase).values():
        assert item["name"] not in out, "duplicate secret name: a create was applied twice"
        out[item["name"]] = item["value"]
    return out


def check_after_kill(path: Path, model: KillModel, inflight: dict[str, Any] | None) -> KillModel:
    """Open the killed vault: it must hold the acknowledged state, or that plus the op in flight."""
    candidates = [model] if inflight is None else [model, model.applied(inflight)]
    for candidate in candidates:
        try:
            found = values_by_name(path, kill_passphrase(candidate.passphrase_index))
        except vault.WrongPassphraseError:
            continue
        for allowed in candidates:
            if allowed.passphrase_index == candidate.passphrase_index and allowed.values == found:
                return allowed
        raise AssertionError(f"vault holds a state it never had (in flight: {inflight and inflight['op']})")
    raise AssertionError("no acknowledged passphrase opens the vault")


def kill_child_main() -> None:
    """Entry point of the subprocess variant: ``python -c 'from tests._faults import kill_child_main; ...'``.

    argv: path, passphrase index, seed, name prefix. The passphrase itself is derived from
    the index, so nothing secret is on the command line; acknowledgements go to stdout.
    """
    import sys

    path, index, seed, prefix = sys.argv[1:5]
    kill_child(Path(path), int(index), int(seed), 1, prefix)


# --- figures for tests/report.py -----------------------------------------------------------

FIGURES_DIR = Path(__file__).resolve().parent.parent / "build" / "proof"


def record_figure(key: str, value: object, **detail: object) -> None:
    """Write one figure the proof report prints (one file per figure, so parallel runs never merge)."""
    import time

    target = Path(os.environ.get("CBKV_FIGURES", FIGURES_DIR))
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".{key}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"key": key, "value": value, "detail": detail, "time": time.time()}))
    tmp.replace(target / f"{key}.json")
