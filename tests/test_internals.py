"""Defensive checks in the private layers that the public API never reaches with bad input.

The public API validates before it calls these, so the checks below are the second line:
they must still hold if a future caller forgets (the security note's "cap before work" and
"never retry a failed fsync" rules).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from vault import _crypto, _log
from vault._store import IO


def test_derive_refuses_a_salt_of_the_wrong_length() -> None:
    with pytest.raises(vault.KdfParamsError):
        _crypto.derive_kek(b"pw", b"short salt", FAST)


def test_open_box_refuses_input_shorter_than_nonce_and_mac() -> None:
    with pytest.raises(_crypto.OpenFailed):
        _crypto.open_box(bytes(32), bytes(_crypto.NONCE_SIZE + _crypto.MAC_SIZE - 1))


def test_a_tail_shorter_than_a_frame_header_is_torn() -> None:
    assert _log.tail_is_torn(b"\x01\x02\x03")
    assert not _log.tail_is_torn(bytes(range(1, 40)))


class _BrokenDisk(IO):
    """Every pwrite fails once armed: the slot write and its rollback both fail."""

    armed = False

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.armed:
            raise OSError(errno.EIO, "Input/output error")
        return super().pwrite(fd, data, offset)


def test_a_slot_write_whose_rollback_fails_poisons_the_handle(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    io = _BrokenDisk()
    v = vault.open(path, PASSPHRASE, _io=io)
    io.armed = True
    with pytest.raises(vault.StorageError):
        v.change_passphrase("new")
    io.armed = False
    # The outcome on disk is unknown now, so this handle refuses further writes...
    with pytest.raises(vault.StorageError, match="reopen"):
        v.change_passphrase("again")
    with pytest.raises(vault.StorageError, match="reopen"):
        v.secret.create()
    v.close()
    # ...and a fresh handle reads what is really there: the change never happened.
    vault.open(path, PASSPHRASE).close()


class _InterruptedWrite(IO):
    """Ctrl-C arrives between the frame's write and its fdatasync."""

    armed = False

    def fdatasync(self, fd: int) -> None:
        if self.armed:
            raise KeyboardInterrupt
        super().fdatasync(fd)


def test_an_interrupted_commit_is_cut_off_and_never_surfaces(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    io = _InterruptedWrite()
    with vault.open(path, PASSPHRASE, _io=io) as v:
        before = path.read_bytes()
        io.armed = True
        with pytest.raises(KeyboardInterrupt):
            v.secret.create(name="interrupted")
        io.armed = False
        assert path.read_bytes() == before
        assert len(v) == 0
        v.secret.create(name="next")
    with vault.open(path, PASSPHRASE) as v:
        assert [s.name for s in v.secret.list()] == ["next"]
