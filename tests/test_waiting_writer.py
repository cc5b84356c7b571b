"""Writers waiting for the lock while its holder fails, tears its append, or is killed.

Whatever a waiting writer does while it waits (today: sleep; any catch-up done there must obey
FORMAT.md §10), it must commit on top of what really is in the file once it holds the lock.
These tests stage the hostile cases while a writer waits: the holder's fsync fails and its frame
is cut, then another frame of the same length takes its place; the holder leaves bytes that do not
verify, then a torn tail; and, with several writer processes, the holder is SIGKILLed mid-commit.
The waiting writer's commit must succeed and the file must verify with every acknowledged change.

Each case is staged through the public API: a second handle with an ``IO`` whose fsync blocks
and then fails, a raw ``flock`` held by the test, and the waiting writer's sleep between lock
attempts held until the test says go (so the order of events is fixed, not left to timing).
A waiting writer that took in the holder's last frame before its sync failed makes the first
test fail (the file stops verifying); one that reported the unverifiable bytes as damage makes
the second fail (both checked by mutation on a branch that caught up while waiting).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

import vault
from tests._faults import record_figure
from tests.conftest import FAST, PASSPHRASE
from vault._store import IO

WAIT = 30.0  # generous: a loaded machine only delays each step; a step that never comes fails the test


class _GatedSync(IO):
    """Once armed: fdatasync says it has begun, waits for the test, then fails with EIO (the frame is cut)."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def fdatasync(self, fd: int) -> None:
        if not self.armed:
            super().fdatasync(fd)
            return
        self.armed = False
        self.entered.set()
        assert self.release.wait(WAIT)
        raise OSError(errno.EIO, "injected: the disk lost the write")


@contextmanager
def _held_sleep(monkeypatch: pytest.MonkeyPatch, thread_name: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The named thread's first sleep between lock attempts blocks until ``go`` is set; ``asleep`` says it began.

    A waiting writer tries the lock, does whatever it does while waiting, then sleeps: so when
    ``asleep`` is set it has looked at the file once while waiting, and nothing more happens until ``go``.
    """
    import vault._store as store_module

    real_sleep = store_module.time.sleep
    asleep, go = threading.Event(), threading.Event()

    class _Time:
        def __getattr__(self, name: str) -> object:
            return getattr(real_time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            if threading.current_thread().name == thread_name and not go.is_set():
                asleep.set()
                assert go.wait(WAIT)
                return
            real_sleep(seconds)

    real_time = store_module.time
    monkeypatch.setattr(store_module, "time", _Time())
    try:
        yield asleep, go
    finally:
        go.set()


def _in_thread(name: str, work: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = work()
        except BaseException as exc:  # the test asserts on it
            out["error"] = exc

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t, out


def _names(path: Path) -> list[str]:
    with vault.open(path, PASSPHRASE) as v:
        return sorted(s.name for s in v.secret.list())


def test_a_waiting_writer_never_takes_in_a_frame_whose_sync_then_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder's frame is on disk while it syncs; the sync fails, the frame is cut, and another
    frame of the same length takes its place before the waiting writer gets the lock.

    Had the waiting writer taken in the cut frame, it would chain its own commit from a tag that is
    no longer in the file (same length, so nothing looks new): the file would stop verifying.
    The waiter looks at the file once while the doomed frame is in it (see ``_held_sleep``).
    """
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    io = _GatedSync()
    with vault.open(path, PASSPHRASE) as waiter, vault.open(path, PASSPHRASE, _io=io) as holder:
        holder.secret.create(name="settled-1", value="one")  # a frame the waiter must take in
        with _held_sleep(monkeypatch, "waiter") as (asleep, go):
            io.armed = True
            doomed, doomed_out = _in_thread("holder", lambda: holder.secret.create(name="doomed-2", value="two"))
            assert io.entered.wait(WAIT)  # the doomed frame is in the file, its fsync not yet done
            waiting, waiting_out = _in_thread("waiter", lambda: waiter.secret.create(name="waiter-3", value="three"))
            assert asleep.wait(WAIT)  # the waiter caught up while the doomed frame was there
            io.release.set()
            doomed.join(WAIT)
            assert isinstance(doomed_out.get("error"), vault.StorageError)
            # The same op shape as the doomed one: a frame of the same length at the same offset.
            holder.secret.create(name="redone-2", value="two")
            go.set()
            waiting.join(WAIT)
        assert "error" not in waiting_out, waiting_out
        assert sorted(s.name for s in waiter.secret.list()) == ["redone-2", "settled-1", "waiter-3"]
    assert _names(path) == ["redone-2", "settled-1", "waiter-3"]


def test_a_waiting_writer_stops_at_a_torn_tail_and_at_garbage_written_over_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed writer's torn append, then bytes that fail to verify (as a read racing a cut and a new
    append can see): the waiting writer neither fails on them nor takes them in; under the lock, the
    torn tail is cut and the frame committed there since is read."""
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    with vault.open(path, PASSPHRASE) as waiter, vault.open(path, PASSPHRASE) as other:
        for i in range(3):
            other.secret.create(name=f"before-{i}", value=f"v{i}")
        end = path.stat().st_size
        lock_fd = os.open(str(path) + ".lock", os.O_RDWR)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # a writer holds the lock...
            with path.open("r+b") as f:  # ...and has written garbage that verifies as nothing
                f.seek(end)
                f.write((200).to_bytes(4, "big") + (200 ^ 0xFFFFFFFF).to_bytes(4, "big") + os.urandom(232))
            with _held_sleep(monkeypatch, "waiter") as (asleep, go):
                waiting, waiting_out = _in_thread("waiter", lambda: waiter.secret.create(name="waiter", value="w"))
                assert asleep.wait(WAIT)
                assert "error" not in waiting_out, waiting_out  # waiting past unverifiable bytes is no error
                # The holder dies mid-append instead: a torn tail (zeros, as an extended file reads).
                os.truncate(path, end)
                with path.open("r+b") as f:
                    f.seek(end)
                    f.write(bytes(100))
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                other.secret.create(name="after-torn", value="t")  # cuts the torn tail, commits there
                go.set()
                waiting.join(WAIT)
        finally:
            os.close(lock_fd)
        assert "error" not in waiting_out, waiting_out
        assert len(waiter) == 5
    assert _names(path) == ["after-torn", "before-0", "before-1", "before-2", "waiter"]


def test_a_lone_writer_and_a_batch_never_wait(tmp_path: Path) -> None:
    """No other process, no waiting: a lone writer's creates and batch commit as before."""
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        with v.batch():
            for i in range(5):
                v.secret.create(name=f"s{i}")
        v.secret.create(name="one more")
        assert len(v) == 6
    assert len(_names(path)) == 6


# --- several writer processes, one killed while it holds the lock ---------------------------------

KILL_ROUNDS = int(os.environ.get("CBKV_WAITING_KILLS", "8"))


def _lock_holders(lock_path: Path) -> set[int]:
    """Pids holding a flock on ``lock_path`` (Linux's /proc/locks names the process that took it)."""
    st = os.stat(lock_path)
    ident = f":{st.st_ino}"
    held: set[int] = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(ident):
                held.add(int(fields[4]))
    return held


def _drain(children: dict[int, int], got: dict[int, bytes], timeout: float) -> None:
    """Read what the children printed so far (their acknowledgements) into ``got``."""
    ready, _, _ = select.select(list(children.values()), [], [], timeout)
    for pid, fd in children.items():
        if fd in ready:
            got[pid] += os.read(fd, 65536)


def _writer_child(path: Path, tag: str, out_fd: int) -> None:  # pragma: no cover - runs in a forked child
    with vault.open(path, PASSPHRASE, lock_timeout=60) as v:
        k = 0
        while True:
            k += 1
            sid = v.secret.create(name=f"{tag}-{k}", value=f"value-{tag}-{k}").id
            os.write(out_fd, f"{sid} {tag}-{k}\n".encode())


@pytest.mark.skipif(not os.path.exists("/proc/locks") or not hasattr(os, "fork"), reason="needs /proc/locks, fork()")
def test_writers_carry_on_when_one_is_killed_holding_the_lock(tmp_path: Path) -> None:
    """3 writer processes; each round SIGKILLs the one /proc/locks shows holding the lock (mid-commit:
    its frame appended or not, synced or not) while the others wait. The others carry on, and every
    acknowledged create of every writer is in the vault, which verifies, after every round."""
    path = tmp_path / "v.cbkv"
    lock_path = Path(str(path) + ".lock")
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    rnd = random.Random(16)
    acked: dict[str, str] = {}
    holding_kills = 0
    for r in range(KILL_ROUNDS):
        children: dict[int, int] = {}
        victim = None
        for i in range(3):
            rd, wr = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                try:
                    os.close(rd)
                    _writer_child(path, f"r{r}w{i}", wr)
                finally:
                    os._exit(1)
            os.close(wr)
            children[pid] = rd
        got: dict[int, bytes] = {pid: b"" for pid in children}

        try:
            deadline = time.monotonic() + WAIT
            while not all(b"\n" in out for out in got.values()):  # every writer committed once
                assert time.monotonic() < deadline, "a writer acknowledged nothing"
                _drain(children, got, 0.1)
            time.sleep(rnd.uniform(0, 0.02))
            while victim is None and time.monotonic() < deadline:
                holders = _lock_holders(lock_path) & set(children)
                if holders:
                    victim = holders.pop()
            assert victim is not None, "no writer was ever seen holding the lock"
            os.kill(victim, signal.SIGKILL)
            holding_kills += 1
            # The others carry on past the dead holder: each acknowledges at least one more create.
            marks = {pid: got[pid].count(b"\n") for pid in children if pid != victim}
            while any(got[pid].count(b"\n") <= n for pid, n in marks.items()):
                assert time.monotonic() < deadline, "a writer stopped after another was killed holding the lock"
                _drain(children, got, 0.1)
        finally:
            for pid in children:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # the victim is dead already (a zombie until reaped)
            for pid, fd in children.items():
                os.waitpid(pid, 0)
                while chunk := os.read(fd, 65536):
                    got[pid] += chunk
                os.close(fd)
        for out in got.values():
            for line in out.decode().splitlines():
                if line.count(" ") == 1:  # a line cut by the kill is not an acknowledgement
                    sid, name = line.split()
                    acked[sid] = name
        with vault.open(path, PASSPHRASE) as v:
            names = {s.id: s.name for s in v.secret.list(take=100)} if len(v) <= 100 else None
            for sid, name in acked.items():
                assert v.secret.fetch(sid).name == name
            # Nothing else but the creates in flight when the processes were killed (one each).
            assert len(acked) <= len(v) <= len(acked) + 3 * (r + 1), names
    record_figure("kills_while_holding_the_lock", holding_kills, acknowledged=len(acked), rounds=KILL_ROUNDS)
