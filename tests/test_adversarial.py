"""Adversarial tests, one class per trust boundary: every byte from outside the owner is hostile.

Each test plays an attacker at one boundary and asserts what SECURITY.md's trust-boundary
table promises: the vault still opens, every acknowledged write is intact, nothing secret
leaks, and the refusal is a typed ``VaultError`` with a code.

* ``TestFileOnDisk``: other local users and processes that can reach the vault's directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE


def _intact(path: Path, expected: dict[str, str | None]) -> None:
    """The vault opens with the owner's passphrase and holds exactly the acknowledged secrets."""
    with vault.open(path, PASSPHRASE) as v:
        assert {s.name: v.secret.fetch(s.id).value for s in v.secret.list()} == expected


class TestFileOnDisk:
    """Another local user shares the directory; the files handed to us may be planted."""

    @pytest.fixture
    def made(self, vault_path: Path) -> Path:
        with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
            v.secret.create(name="kept", value="k")
        return vault_path

    def test_a_lock_file_others_may_write_is_refused(self, made: Path) -> None:
        # A 0666 lock file in a shared directory lets anyone hold the lock forever.
        lock = made.with_name(made.name + ".lock")
        lock.chmod(0o666)
        with pytest.raises(vault.InsecureFileError) as info:
            vault.open(made, PASSPHRASE)
        assert info.value.code == "INSECURE_FILE" and "lock file" in info.value.message
        lock.chmod(0o600)
        _intact(made, {"kept": "k"})

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the lock file to another user")
    def test_a_lock_file_owned_by_another_user_is_refused(self, made: Path) -> None:
        lock = made.with_name(made.name + ".lock")
        os.chown(lock, 65534, 65534)
        with pytest.raises(vault.InsecureFileError) as info:
            vault.open(made, PASSPHRASE)
        assert "owned by another user" in info.value.message
        os.chown(lock, 0, 0)
        _intact(made, {"kept": "k"})

    def test_a_lock_path_that_is_a_symlink_or_not_a_file_is_refused(self, made: Path) -> None:
        lock = made.with_name(made.name + ".lock")
        lock.unlink()
        lock.symlink_to(made.with_name("elsewhere"))
        with pytest.raises(vault.InsecureFileError):
            vault.open(made, PASSPHRASE)
        lock.unlink()
        os.mkfifo(lock, 0o600)
        with pytest.raises(vault.InsecureFileError):
            vault.open(made, PASSPHRASE)
        lock.unlink()
        _intact(made, {"kept": "k"})
