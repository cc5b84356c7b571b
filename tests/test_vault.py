"""Vault lifecycle: init/open, passphrases, handles that share a file, compaction, permissions."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from vault._store import IO
from vault._vault import raw_records


def test_init_refuses_an_existing_file(vault_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    before = vault_path.read_bytes()
    with pytest.raises(vault.VaultExistsError) as info:
        vault.init(vault_path, "other", kdf=FAST)
    assert info.value.code == "VAULT_EXISTS"
    assert vault_path.read_bytes() == before


def test_open_missing_vault(tmp_path: Path) -> None:
    with pytest.raises(vault.VaultNotFoundError):
        vault.open(tmp_path / "nope.cbkv", PASSPHRASE)


def test_wrong_passphrase_is_typed_and_distinct_from_damage(vault_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    with pytest.raises(vault.WrongPassphraseError) as info:
        vault.open(vault_path, "not it")
    assert info.value.code == "WRONG_PASSPHRASE"
    assert "not it" not in str(info.value)
    assert not isinstance(info.value, vault.CorruptVaultError)


def test_empty_passphrase_and_bad_kdf_are_rejected(vault_path: Path) -> None:
    with pytest.raises(vault.InvalidRequestError):
        vault.init(vault_path, "", kdf=FAST)
    with pytest.raises(vault.InvalidRequestError):
        vault.init(vault_path, PASSPHRASE, kdf="ludicrous")
    with pytest.raises(vault.InvalidRequestError):
        vault.KdfParams(opslimit=0, memlimit=8192)
    with pytest.raises(vault.InvalidRequestError):
        vault.KdfParams(opslimit=1, memlimit=8193)
    assert not vault_path.exists()


def test_passphrases_are_nfc_normalised(vault_path: Path) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    vault.init(vault_path, composed, kdf=FAST).close()
    vault.open(vault_path, decomposed).close()
    vault.open(vault_path, composed.encode()).close()


def test_presets_resolve_to_libsodium_costs() -> None:
    from vault._crypto import resolve_kdf

    assert resolve_kdf("moderate") == vault.KdfParams(3, 256 << 20)
    assert resolve_kdf("interactive") == vault.KdfParams(2, 64 << 20)
    assert resolve_kdf("sensitive") == vault.KdfParams(4, 1 << 30)


def test_default_path_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CBK_VAULT_PATH", raising=False)
    assert vault.default_path().name == "vault.cbkv"
    assert "cbk-vault" in str(vault.default_path())
    target = tmp_path / "nested" / "dir" / "env.cbkv"
    monkeypatch.setenv("CBK_VAULT_PATH", str(target))
    assert vault.default_path() == target
    with vault.init(None, PASSPHRASE, kdf=FAST) as v:
        assert v.path == target
    # Directories we create are private.
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(target.parent.parent.stat().st_mode) == 0o700
    vault.open(None, PASSPHRASE).close()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_files_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = tmp_path / "u.cbkv"
        with vault.init(path, PASSPHRASE, kdf=FAST) as v:
            v.secret.create(value="x")
            v.compact()
        for p in (path, path.with_name(path.name + ".lock")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    finally:
        os.umask(old)


def test_group_writable_vault_is_refused(vault_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    vault_path.chmod(0o620)
    with pytest.raises(vault.InsecureFileError) as info:
        vault.open(vault_path, PASSPHRASE)
    assert info.value.code == "INSECURE_FILE"


def test_change_passphrase(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(value="kept")
        body_before = vault_path.read_bytes()[584:]
        v.change_passphrase("new passphrase")
        # Records are untouched: only a key slot changed.
        assert vault_path.read_bytes()[584:] == body_before
        assert v.secret.fetch(s.id).value == "kept"
        v.secret.create(name="after")
    with pytest.raises(vault.WrongPassphraseError):
        vault.open(vault_path, PASSPHRASE)
    with vault.open(vault_path, "new passphrase") as v:
        assert v.secret.fetch(s.id).value == "kept" and len(v) == 2
        v.change_passphrase("third", kdf=vault.KdfParams(1, 16384))
        assert v.kdf == vault.KdfParams(1, 16384)
    with vault.open(vault_path, "third") as v:
        assert v.kdf == vault.KdfParams(1, 16384)


def test_old_key_slot_is_erased_from_the_file(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        slot_a = vault_path.read_bytes()[72:328]
        v.change_passphrase("new")
        data = vault_path.read_bytes()
    assert slot_a not in data
    assert data[72:328] == bytes(256)  # slot A empty, slot B holds the new wrap


def test_change_passphrase_cost_is_independent_of_size(vault_path: Path) -> None:
    # Two small in-place writes whatever the size: the log bytes do not move.
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v, v.batch():
        for i in range(2000):
            v.secret.create(name=f"s{i}", value="x" * 40)
    io = IO()
    with vault.open(vault_path, PASSPHRASE, _io=io) as v:
        writes: list[int] = []
        orig = io.pwrite
        io.pwrite = lambda fd, data, off: (writes.append(len(data)), orig(fd, data, off))[1]  # type: ignore[method-assign]
        v.change_passphrase("new")
    assert writes == [256, 256]


def test_two_handles_see_each_others_commits(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as a, vault.open(vault_path, PASSPHRASE) as b:
        s = a.secret.create(name="from a", value="1")
        assert b.secret.fetch(s.id).value == "1"
        b.secret.update(s.id, value="2")
        assert a.secret.fetch(s.id).value == "2"
        a.secret.delete(s.id)
        assert len(b) == 0
        # Compaction by one handle swaps the file; the other follows the new inode.
        with a.batch():
            ids = [a.secret.create(name=f"n{i}").id for i in range(10)]
        b.compact()
        a.secret.update(ids[0], name="renamed")
        assert b.secret.fetch(ids[0]).name == "renamed"
        assert len(a) == len(b) == 10


def test_compaction_keeps_everything_and_shrinks(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(name="n", alias="a", value="v0", meta={"k": 1})
        for i in range(50):
            v.secret.update(s.id, value=f"v{i + 1}")
        raw_records(v).set_setting("sync", {"x": 1})
        before = vault_path.stat().st_size
        expected = v.secret.fetch(s.id)
        v.compact()
        assert vault_path.stat().st_size < before / 5
        assert v.secret.fetch(s.id) == expected
        v.secret.update(s.id, value="after")
    with vault.open(vault_path, PASSPHRASE) as v:
        assert v.secret.fetch("@a").value == "after"
        assert raw_records(v).setting("sync") == {"x": 1}
    leftovers = [p for p in vault_path.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_automatic_compaction_bounds_the_file(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(value="x")
        size = vault_path.stat().st_size
        v.secret.update(s.id, value="0")
        frame = vault_path.stat().st_size - size
        for i in range(1, 1500):
            v.secret.update(s.id, value=str(i))
        # Without compaction the log would hold 1500 update frames; it was rewritten along the way.
        assert vault_path.stat().st_size < 1500 * frame / 2
        assert v.secret.fetch(s.id).value == "1499"


def test_lock_timeout_for_writers_while_readers_carry_on(vault_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    with vault.open(vault_path, PASSPHRASE, lock_timeout=0.2) as b, b.batch():
        b.secret.create()
        # Readers never wait for the writer lock, and never see an uncommitted batch.
        with vault.open(vault_path, PASSPHRASE, lock_timeout=0.2) as c:
            assert len(c) == 0
            started = time.monotonic()
            with pytest.raises(vault.LockTimeoutError) as info:
                c.secret.create()
            assert info.value.code == "LOCKED" and isinstance(info.value, TimeoutError)
            # The handle's own 0.2 s applied, not the 10 s default: the error names it and the wait
            # lasted at least that long. No upper bound: a loaded machine stretches any wait.
            assert "0.2 s" in str(info.value) and time.monotonic() - started >= 0.2
            assert len(c) == 0
    with vault.open(vault_path, PASSPHRASE) as c:
        assert len(c) == 1


def test_repr_of_vault_shows_no_secrets(v: vault.Vault) -> None:
    v.secret.create(value="sk_MARKER")
    assert "sk_MARKER" not in repr(v) and "1 secrets" in repr(v)


def test_public_api_is_exactly_all() -> None:
    import types

    # Submodules appear as attributes once imported; pytest's assertion rewriting adds "@..." names.
    public = {
        name
        for name, obj in vars(vault).items()
        if not name.startswith(("_", "@")) and not isinstance(obj, types.ModuleType) and name != "annotations"
    }
    assert public == set(vault.__all__) - {"__version__"}
    for name in vault.__all__:
        assert hasattr(vault, name)
    assert vault.__all__ == sorted(vault.__all__)


def test_error_tree() -> None:
    leaves = [
        vault.NotFoundError, vault.InvalidRequestError, vault.ConflictError, vault.WrongPassphraseError,
        vault.CorruptVaultError, vault.UnsupportedVersionError, vault.KdfParamsError, vault.VaultExistsError,
        vault.VaultNotFoundError, vault.InsecureFileError, vault.LockTimeoutError, vault.StorageError,
        vault.VaultClosedError, vault.MissingDependencyError,
    ]
    codes = set()
    for cls in leaves:
        assert issubclass(cls, vault.VaultError)
        err = cls("msg")
        assert err.to_dict() == {"message": "msg", "code": err.code}
        codes.add(err.code)
    assert len(codes) == len(leaves)
    assert str(vault.NotFoundError("plain")) == "plain"
    refused = vault.MintRefusedError("not_mintable", "no")
    assert isinstance(refused, vault.ConflictError) and refused.code == "NOT_MINTABLE"
    assert refused.to_dict() == {"error": "not_mintable", "message": "no"}


def test_a_forked_child_takes_its_own_lock(vault_path: Path) -> None:
    # flock belongs to the open file description, which fork shares: the child must reopen.
    v = vault.init(vault_path, PASSPHRASE, kdf=FAST, lock_timeout=0.3)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        code = 1
        try:
            os.read(ready_r, 1)  # the parent now holds the writer lock
            v.secret.create(name="child")
        except vault.LockTimeoutError:
            code = 0
        finally:
            os._exit(code)
    try:
        with v.batch():
            v.secret.create(name="parent")
            os.write(ready_w, b"x")
            _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0  # the child had to wait for the parent's lock
        assert [s.name for s in v.secret.list()] == ["parent"]
    finally:
        v.close()
        os.close(ready_r)
        os.close(ready_w)


def test_a_reader_that_saw_a_frame_later_cut_off_reloads(vault_path: Path) -> None:
    # A writer's fsync can fail after a lock-free open read its frame; the writer then cuts the
    # frame off. The reader must fall back to what is on disk, not report damage.
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as w:
        w.secret.create(name="kept")
        committed = vault_path.stat().st_size
        w.secret.create(name="failed write")
        with vault.open(vault_path, PASSPHRASE) as r:
            assert len(r) == 2
            os.truncate(vault_path, committed)  # what the failed writer's rollback does
            assert [s.name for s in r.secret.list()] == ["kept"]


@pytest.mark.parametrize("chunk", [1, 97, 700, 4096])
def test_loading_in_chunks_sees_exactly_what_a_whole_read_sees(
    vault_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault import _engine

    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        with v.batch():
            ids = [v.secret.create(name=f"s{i}", value="v" * i).id for i in range(40)]  # one big frame
        for i in range(0, 40, 3):
            v.secret.update(ids[i], value=f"new{i}")  # many small frames
        v.secret.delete(ids[1])
        expected = [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")]
    with vault_path.open("ab") as f:
        f.write(b"\x00\x00\x01\x00")  # a torn append at the end
    monkeypatch.setattr(_engine, "_LOAD_CHUNK", chunk)
    with vault.open(vault_path, PASSPHRASE) as v:
        assert [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")] == expected
        v.secret.create(name="after the torn tail")
    with vault.open(vault_path, PASSPHRASE) as v:
        assert len(v) == len(expected) + 1


def test_rekey_draws_a_new_data_key_and_keeps_every_secret(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        a = v.secret.create(name="a", value="alpha", alias="a")
        v.secret.create(name="b")  # no value
        raw_records(v).set_setting("sync", {"x": 1})
        before = vault_path.read_bytes()
        v.change_passphrase("rekeyed", kdf=FAST, rekey=True)
        assert v.secret.fetch(a.id).value == "alpha"  # the handle carries on under the new key
        v.secret.create(name="after", value="written after the re-key")
    with pytest.raises(vault.WrongPassphraseError):
        vault.open(vault_path, PASSPHRASE)
    with vault.open(vault_path, "rekeyed") as v:
        assert {s.name: v.secret.fetch(s.id).value for s in v.secret.list()} == {
            "a": "alpha",
            "b": None,
            "after": "written after the re-key",
        }
        assert v.secret.fetch("@a").id == a.id
        assert raw_records(v).setting("sync") == {"x": 1}
    # An old copy of the file and the old passphrase give the old data key. Put the old key slots
    # in front of the new log: the old key must not open a single frame written since.
    after = vault_path.read_bytes()
    spliced = vault_path.with_name("spliced.cbkv")
    spliced.write_bytes(before[:584] + after[584:])
    spliced.chmod(0o600)
    with pytest.raises(vault.CorruptVaultError):
        vault.open(spliced, PASSPHRASE)
    assert b"written after the re-key" not in after and b"alpha" not in after


def test_a_passphrase_change_without_rekey_keeps_the_data_key(vault_path: Path) -> None:
    # The documented limit that rekey exists for: old slots + new log still open with the old passphrase.
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        before = vault_path.read_bytes()
        v.change_passphrase("changed", kdf=FAST)
        v.secret.create(name="after", value="written after the change")
    spliced = vault_path.with_name("spliced.cbkv")
    spliced.write_bytes(before[:584] + vault_path.read_bytes()[584:])
    spliced.chmod(0o600)
    with vault.open(spliced, PASSPHRASE) as old:
        assert [old.secret.fetch(s.id).value for s in old.secret.list()] == ["written after the change"]


def test_other_handles_learn_of_a_rekey_with_key_changed(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as a, vault.open(vault_path, PASSPHRASE) as b:
        s = a.secret.create(name="s", value="v")
        assert b.secret.fetch(s.id).value == "v"
        a.change_passphrase("rekeyed", rekey=True)
        with pytest.raises(vault.KeyChangedError) as info:
            b.secret.fetch(s.id)
        assert info.value.code == "KEY_CHANGED" and isinstance(info.value, vault.VaultClosedError)
        assert b.closed
        assert a.secret.fetch(s.id).value == "v"


def test_rekey_is_refused_inside_a_batch_and_checks_its_flag(v: vault.Vault) -> None:
    with pytest.raises(vault.InvalidRequestError), v.batch():
        v.change_passphrase("x", rekey=True)
    with pytest.raises(vault.InvalidRequestError):
        v.change_passphrase("x", rekey="yes")  # type: ignore[arg-type]
