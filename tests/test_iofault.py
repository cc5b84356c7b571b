"""I/O error injection: fail the Nth I/O call with EIO and with ENOSPC, for every N of every write path.

SQLite's I/O-error loop, applied to the store: each write path of the scenario in
``tests/_faults.py`` is run with call N failing (the call is not performed, as when the
kernel refuses it). The operation must then either raise a typed ``VaultError`` and leave
the vault on disk byte-identical (or, after compaction's rename, equal in content) and
openable with the passphrase it had, or, when the fault hit only post-commit
housekeeping, succeed completely. Either way the same handle must carry on: redo the
operation, and a fresh open must agree with the handle.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import vault
from tests._faults import (
    FAST,
    NAME,
    PASSPHRASE,
    SCENARIO,
    FaultIO,
    State,
    dry_run,
    dump,
    open_seeded,
    record_figure,
    seed_vault,
)

ERRNOS = (errno.EIO, errno.ENOSPC)


def _logical(state: State) -> list[tuple[Any, ...]]:
    """A state without ids and timestamps (a retried create gets a new id and a later clock)."""
    return sorted(
        (
            s["name"],
            s["value"],
            s["description"],
            s["alias"],
            repr(s["meta"]),
            s["type"],
            s["kind"],
            s["visibility"],
            repr(s["config"]),
        )
        for s in state.values()
    )


def _fresh(path: Path, passphrase: str) -> State:
    with vault.open(path, passphrase) as v:
        return dump(v)


def _known_bug(step: str, step_calls: list[str], k: int) -> str | None:
    """The open core bug that makes this case fail, or None: the sweep counts such cases apart instead of
    failing on them, and strictly, so a fixed bug must leave this table. A fixed bug gets its own test below."""
    return None


def _one_fault(base: Path, work: Path, step_index: int, n: int, err: int, states: list[State], label: str) -> str:
    """Run the scenario up to the step with call ``n`` failing; check the outcome; return its kind."""
    step = SCENARIO[step_index]
    before_pass = PASSPHRASE if step_index == 0 else SCENARIO[step_index - 1].passphrase
    shutil.copytree(base, work)
    path = work / NAME
    io = FaultIO(fail_at=n, fail_errno=err, armed=False)
    v = open_seeded(path, io)
    try:
        io.arm()
        s: dict[str, Any] = {}
        for earlier in SCENARIO[:step_index]:
            earlier.run(v, s)
        before = path.read_bytes()
        try:
            step.run(v, s)
        except vault.VaultError as exc:
            assert io.failed, label
            assert isinstance(exc, vault.StorageError), f"{label}: {type(exc).__name__}"
            assert exc.errno == err, label
            outcome = "identical" if path.read_bytes() == before else "content-equal"
            assert _fresh(path, before_pass) == states[step_index], "the vault on disk changed"
            assert dump(v) == states[step_index], "the handle shows a change that failed"
            io.fail_at = None
            step.run(v, s)  # the same handle carries on: the retry succeeds
        else:
            assert io.failed, label
            # The fault hit housekeeping after the commit (erasing the old key slot,
            # automatic compaction): the operation succeeded and is durable.
            outcome = "housekeeping"
            io.fail_at = None
        assert _logical(dump(v)) == _logical(states[step_index + 1]), "wrong state after carrying on"
        v.secret.create(name="carry-on", value="carry-on-value")
        handle_view = dump(v)
    finally:
        v.close()
    assert _fresh(path, step.passphrase) == handle_view, "disk and handle disagree"
    if step.passphrase != before_pass:
        with pytest.raises(vault.WrongPassphraseError):
            vault.open(path, before_pass)
    shutil.rmtree(work)
    return outcome


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]], list[State], list[str]]:
    root = tmp_path_factory.mktemp("iofault")
    base = root / "base"
    base.mkdir()
    seed_vault(base / NAME)
    bounds, states, calls = dry_run(base, root / "dry")
    return base, bounds, states, calls


@pytest.mark.parametrize("step_index", range(len(SCENARIO)), ids=[s.name for s in SCENARIO])
def test_every_io_call_of_the_step_can_fail(
    step_index: int,
    plan: tuple[Path, list[tuple[int, int]], list[State], list[str]],
    tmp_path: Path,
) -> None:
    base, bounds, states, calls = plan
    step = SCENARIO[step_index]
    lo, hi = bounds[step_index]
    assert hi > lo
    outcomes: dict[str, int] = {}
    failures: list[str] = []
    for n in range(lo + 1, hi + 1):
        for err in ERRNOS:
            label = f"{step.name}: call {n} ({calls[n - 1]}) fails with {errno.errorcode[err]}"
            known = _known_bug(step.name, calls[lo:hi], n - lo - 1)
            try:
                outcome = _one_fault(base, tmp_path / f"{n}-{err}", step_index, n, err, states, label)
            except Exception as exc:  # everything, so one run lists every broken case
                if known is None:
                    failures.append(f"{label}: {type(exc).__name__}: {exc}")
                else:
                    outcomes["known-bug"] = outcomes.get("known-bug", 0) + 1
                continue
            # Strict, like xfail(strict=True): a fixed bug must leave the KNOWN table.
            assert known is None, f"{label}: passes now; remove it from _known_bug ({known})"
            key = f"{outcome}/{errno.errorcode[err]}"
            outcomes[key] = outcomes.get(key, 0) + 1
    assert not failures, "\n".join(failures)
    record_figure(f"io_faults_{step.name}", sum(outcomes.values()), outcomes=outcomes)


class _FailNth(FaultIO):
    """Fail the Nth call of one kind (counted from arming), whatever comes before it."""

    def __init__(self, kind: str, nth: int, err: int = errno.EIO) -> None:
        super().__init__(armed=False, fail_errno=err)
        self.kind = kind
        self.nth = nth

    def _step(self, name: str) -> bool:
        if self.armed and name == self.kind:
            self.nth -= 1
            if self.nth == 0:
                self.fail_at = self.count + 1
        return super()._step(name)

    def close(self, fd: int) -> None:
        if self.armed and self.kind == "close":
            self.nth -= 1
            if self.nth == 0:
                self.fail_at = self.count + 1
        super().close(fd)


def test_compaction_close_failure_of_the_old_descriptor_is_typed(tmp_path: Path) -> None:
    seed_vault(tmp_path / NAME)
    io = _FailNth("close", 3)  # closes in compaction: the temp file, the directory, then the old data fd
    v = open_seeded(tmp_path / NAME, io)
    io.arm()
    try:
        v.compact()
    except vault.VaultError:
        pass
    assert io.failed and io.calls[-1] == "close" and io.calls[-2] == "open"  # the old fd's close failed
    v.secret.create(name="after", value="after-value")
    handle_view = dump(v)
    v.close()
    assert _fresh(tmp_path / NAME, PASSPHRASE) == handle_view


def test_failed_passphrase_change_leaves_the_old_passphrase_working(tmp_path: Path) -> None:
    seed_vault(tmp_path / NAME)
    io = _FailNth("fdatasync", 1)
    v = open_seeded(tmp_path / NAME, io)
    io.arm()
    before = (tmp_path / NAME).read_bytes()
    with pytest.raises(vault.StorageError):
        v.change_passphrase("a new passphrase")
    v.close()
    assert (tmp_path / NAME).read_bytes() == before
    vault.open(tmp_path / NAME, PASSPHRASE).close()


# --- init, and the store's other failure paths --------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["existing-dir", "new-dirs"])
def test_every_io_call_of_init_can_fail(nested: bool, tmp_path: Path) -> None:
    """init either raises StorageError leaving no vault (a retry then works), or returns a working vault."""
    outcomes: dict[str, int] = {}
    failures: list[str] = []
    n = 0
    while True:
        n += 1
        for err in ERRNOS:
            d = tmp_path / f"{n}-{err}"
            path = (d / "a" / "b" if nested else d) / NAME
            d.mkdir()
            io = FaultIO(fail_at=n, fail_errno=err)
            try:
                v = vault.init(path, PASSPHRASE, kdf=FAST, _io=io)
            except vault.StorageError as exc:
                assert exc.errno == err and io.failed
                leftovers = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
                if path.exists():
                    # The vault is complete (linked after its fsync); only the directory sync or the
                    # handle's open failed. It must open, and a retried init must say it exists.
                    with vault.open(path, PASSPHRASE) as v2:
                        assert len(v2) == 0
                    outcomes["exists-complete"] = outcomes.get("exists-complete", 0) + 1
                else:
                    if [x for x in leftovers if ".tmp-" in x]:
                        failures.append(f"call {n} ({io.calls[-1]}): temp file left behind: {leftovers}")
                    vault.init(path, PASSPHRASE, kdf=FAST).close()  # the retry works
                    outcomes["nothing-written"] = outcomes.get("nothing-written", 0) + 1
            else:
                if io.failed:
                    # Only removing the temp name after link() may fail silently: the temp is then a
                    # second name of the finished vault, and the next compaction removes it.
                    if io.calls[-1] != "unlink" and io.calls[n - 1] != "unlink":
                        failures.append(f"call {n} ({io.calls[n - 1]}): init succeeded although it failed")
                    assert [p.name for p in path.parent.iterdir() if ".tmp-" in p.name]
                    v.compact()
                    assert not [p.name for p in path.parent.iterdir() if ".tmp-" in p.name]
                    outcomes["temp-unlink-absorbed"] = outcomes.get("temp-unlink-absorbed", 0) + 1
                v.close()
                if not io.failed:
                    record_figure(
                        f"io_faults_init_{'nested' if nested else 'flat'}", sum(outcomes.values()), **outcomes
                    )
                    assert not failures, "\n".join(failures)
                    return


class _ShortWrites(FaultIO):
    """pwrite writes at most ``limit`` bytes per call (then, optionally, 0: a write that makes no progress)."""

    def __init__(self, limit: int, stall_after: int | None = None) -> None:
        super().__init__(armed=False)
        self.limit = limit
        self.stall_after = stall_after
        self.writes = 0

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self.writes += 1
        if self.armed and self.stall_after is not None and self.writes > self.stall_after:
            return 0
        return super().pwrite(fd, memoryview(data)[: self.limit], offset)


def test_short_writes_are_completed_and_a_stalled_write_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / NAME
    io = _ShortWrites(limit=7)
    with vault.init(path, PASSPHRASE, kdf=FAST, _io=io) as v:
        io.arm()
        s = v.secret.create(name="short", value="written seven bytes at a time")
        v.compact()
    assert _fresh(path, PASSPHRASE)[s.id]["value"] == "written seven bytes at a time"
    before = path.read_bytes()
    io = _ShortWrites(limit=7, stall_after=3)
    v = vault.open(path, PASSPHRASE, _io=io)
    io.arm()
    with pytest.raises(vault.StorageError) as info:
        v.secret.create(name="stalls", value="x")
    assert info.value.errno == errno.EIO
    assert path.read_bytes() == before
    io.stall_after = None
    v.secret.create(name="recovers", value="y")
    v.close()
    assert len(_fresh(path, PASSPHRASE)) == 2


class _Racy(FaultIO):
    """Another process wins a race at one call: the temp name is taken, or the vault appears before link()."""

    def __init__(self, race: str) -> None:
        super().__init__()
        self.race = race

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        if self.race == "symlink" and path.endswith(NAME) and flags & os.O_NOFOLLOW:
            # Swapped for a symlink between the lstat() check and the open(): O_NOFOLLOW catches it.
            self.race = ""
            os.rename(path, path + ".moved")
            os.symlink(path + ".moved", path)
        if self.race == "temp" and flags & os.O_EXCL:
            self.race = ""
            raise FileExistsError(errno.EEXIST, "taken")
        return super().open(path, flags, mode)

    def link(self, src: str, dst: str) -> None:
        if self.race == "link":
            Path(dst).write_bytes(b"the other process's vault")
        super().link(src, dst)

    def mkdir(self, path: str) -> None:
        if self.race == "mkdir":
            os.mkdir(path, 0o700)  # created by someone else a moment earlier
        super().mkdir(path)


def test_races_with_other_processes(tmp_path: Path) -> None:
    vault.init(tmp_path / "a" / NAME, PASSPHRASE, kdf=FAST, _io=_Racy("temp")).close()  # next temp name
    vault.init(tmp_path / "b" / "c" / NAME, PASSPHRASE, kdf=FAST, _io=_Racy("mkdir")).close()  # dir appeared
    (tmp_path / "d").mkdir()
    with pytest.raises(vault.VaultExistsError):
        vault.init(tmp_path / "d" / NAME, PASSPHRASE, kdf=FAST, _io=_Racy("link"))
    assert (tmp_path / "d" / NAME).read_bytes() == b"the other process's vault"  # never clobbered
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [NAME]  # and no temp left
    vault.init(tmp_path / "e" / NAME, PASSPHRASE, kdf=FAST).close()
    with pytest.raises(vault.InsecureFileError):
        vault.open(tmp_path / "e" / NAME, PASSPHRASE, _io=_Racy("symlink"))


def test_open_failures_are_typed(tmp_path: Path) -> None:
    path = tmp_path / NAME
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    for n, what in ((1, "open the vault"), (2, "open the lock file")):
        with pytest.raises(vault.StorageError) as info:
            vault.open(path, PASSPHRASE, _io=FaultIO(fail_at=n))
        assert what in info.value.message
    with pytest.raises(vault.StorageError):  # a path through a regular file: ENOTDIR
        vault.open(path / "inside", PASSPHRASE)
    with pytest.raises(vault.VaultNotFoundError):
        vault.open(tmp_path / "missing.cbkv", PASSPHRASE)
    with pytest.raises(vault.InsecureFileError):  # a directory where the vault should be
        vault.open(tmp_path, PASSPHRASE)
    with pytest.raises(vault.VaultExistsError):
        vault.init(path, PASSPHRASE, kdf=FAST)
    if os.geteuid() == 0:  # only root can hand a file to another user
        os.chown(path, 4321, -1)
        with pytest.raises(vault.InsecureFileError):
            vault.open(path, PASSPHRASE)


def test_a_held_lock_times_out_with_a_typed_error(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / NAME
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    with vault.open(path, PASSPHRASE, lock_timeout=0.05) as v:
        fd = os.open(str(path) + ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(vault.LockTimeoutError) as info:
                v.secret.create(name="blocked")
            assert info.value.code == "LOCKED" and isinstance(info.value, TimeoutError)
        finally:
            os.close(fd)
        v.secret.create(name="unblocked")
        assert len(v) == 1


def test_default_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBK_VAULT_PATH", str(tmp_path / "env.cbkv"))
    assert vault.default_path() == tmp_path / "env.cbkv"
    with vault.init(None, PASSPHRASE, kdf=FAST) as v:
        assert v.path == tmp_path / "env.cbkv"
    monkeypatch.delenv("CBK_VAULT_PATH")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert vault.default_path() == tmp_path / "xdg" / "cbk-vault" / "vault.cbkv"


def test_a_read_error_is_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / NAME
    vault.init(path, PASSPHRASE, kdf=FAST).close()

    def failing_pread(fd: int, n: int, offset: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing_pread)
    with pytest.raises(vault.StorageError) as info:
        vault.open(path, PASSPHRASE)
    assert info.value.errno == errno.EIO


def test_a_failed_init_leaves_no_vault(tmp_path: Path) -> None:
    path = tmp_path / NAME
    io = _FailNth("fsync", 2)  # the temp file's fsync, then the directory's
    io.arm()
    with pytest.raises(vault.StorageError):
        vault.init(path, PASSPHRASE, kdf=FAST, _io=io)
    assert io.failed and io.fail_at is not None and io.calls[io.fail_at - 1] == "fsync"
    assert not path.exists()


class _FailTwice(FaultIO):
    """The append's fdatasync fails and so does the truncate that would roll it back."""

    def fdatasync(self, fd: int) -> None:
        if self.armed:
            raise OSError(errno.EIO, "Input/output error")
        super().fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        if self.armed:
            raise OSError(errno.EIO, "Input/output error")
        super().ftruncate(fd, length)


def test_a_write_that_cannot_be_rolled_back_poisons_the_handle(tmp_path: Path) -> None:
    path = tmp_path / NAME
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    io = _FailTwice(armed=False)
    v = vault.open(path, PASSPHRASE, _io=io)
    io.arm()
    with pytest.raises(vault.StorageError):
        v.secret.create(name="unknown-fate", value="v")
    io.armed = False
    with pytest.raises(vault.StorageError) as info:  # the handle no longer trusts its view of the file
        v.secret.create(name="refused")
    assert "reopen" in info.value.message
    v.close()
    # Like a crash: the failed write is either wholly there or wholly absent, never partial.
    names = {s["name"] for s in _fresh(path, PASSPHRASE).values()}
    assert names in ({"unknown-fate"}, set())


def test_store_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    path = tmp_path / NAME
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="one", value="1")
    # Two handles in one process: the second writer's catch-up re-enters its own lock.
    with vault.open(path, PASSPHRASE) as a, vault.open(path, PASSPHRASE) as b:
        a.secret.create(name="two")
        b.secret.create(name="three")
        assert len(a) == len(b) == 3
    # A read that comes back short (the file shrank under us) stops instead of looping.
    real_pread = os.pread
    with vault.open(path, PASSPHRASE) as v:
        monkeypatch.setattr(os, "pread", lambda fd, n, off: b"")
        with pytest.raises(vault.CorruptVaultError):  # compaction reads the key slot: it gets nothing
            v.compact()
        monkeypatch.setattr(os, "pread", real_pread)
        v.compact()  # and works once reads do
        assert len(v) == 3
    # flock itself failing (ENOLCK on some network file systems) is a typed error.
    real_flock = fcntl.flock

    def no_locks(fd: int, op: int) -> None:
        if op & (fcntl.LOCK_EX | fcntl.LOCK_SH):
            raise OSError(errno.ENOLCK, "No locks available")
        real_flock(fd, op)

    with vault.open(path, PASSPHRASE) as v:
        monkeypatch.setattr(fcntl, "flock", no_locks)
        with pytest.raises(vault.StorageError) as info:
            v.secret.create(name="cannot-lock")
        assert info.value.errno == errno.ENOLCK
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert len(v) == 3
    # The directory cannot be listed while compacting: stale temps are left for later, nothing fails.
    with vault.open(path, PASSPHRASE) as v:
        monkeypatch.setattr(os, "listdir", lambda p: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
        v.compact()
        monkeypatch.undo()
        # The vault file deleted under an open handle: the handle keeps its (unlinked) file.
        path.unlink()
        assert len(v) == 3


def test_a_forked_child_takes_its_own_descriptors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flock belongs to the open file description: after fork() a handle must reopen its own."""
    path = tmp_path / NAME
    with vault.open(vault.init(path, PASSPHRASE, kdf=FAST).path, PASSPHRASE) as v:
        before = v.secret.create(name="before")
        real = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: real + 100_000)  # what the child would see
        v.secret.create(name="in-child")
        assert {s.name for s in v.secret.list().items} == {"before", "in-child"}
        assert v.secret.fetch(before.id).name == "before"
