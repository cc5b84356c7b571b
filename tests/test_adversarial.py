"""Adversarial tests, one class per trust boundary: every byte from outside the owner is hostile.

Each test plays an attacker at one boundary and asserts what SECURITY.md's trust-boundary
table promises: the vault still opens, every acknowledged write is intact, nothing secret
leaks, and the refusal is a typed ``VaultError`` with a code.

* ``TestFileOnDisk``: other local users and processes that can reach the vault's directory.
* ``TestStandInClient``: a local process that talks to the stand-in (``cbk-vault serve``).
"""

from __future__ import annotations

import os
from pathlib import Path

import json

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from vault._api import SecretApi


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


class TestStandInClient:
    """A process that holds the stand-in's token acts on the owner's vault through its routes."""

    @pytest.mark.parametrize("stored_as", ["plain", "basic", "bearer", "reference"])
    def test_a_type_change_never_turns_a_stored_value_into_a_token(self, v: vault.Vault, stored_as: str) -> None:
        # Mint returned the raw stored value of a plain or basic secret once its type was set to oauth.
        api = SecretApi(v)
        value = json.dumps({"accessToken": "the owner's real key"}) if stored_as == "reference" else "sk-owner-key"
        sid = api.create({"name": "k", "type": stored_as, "value": value})["id"]
        api.update(sid, {"type": "oauth"})
        with pytest.raises(vault.MintRefusedError) as info:
            api.mint(sid)
        assert info.value.error == "authorization_required"
        assert "owner" not in json.dumps(info.value.to_dict())
        assert api.verify(sid)["status"] == "unauthenticated"
        # The owner's value is untouched, and re-setting it as oauth token state makes it mintable.
        assert v.secret.fetch(sid).value == value
        api.update(sid, {"value": json.dumps({"accessToken": "at-new"})})
        assert api.mint(sid)["token"] == "at-new"

    def test_a_reference_cannot_launder_a_value_written_as_another_type(self, v: vault.Vault) -> None:
        api = SecretApi(v)
        target = api.create({"name": "t", "type": "plain", "value": json.dumps({"accessToken": "plain-key"})})["id"]
        api.update(target, {"type": "oauth"})
        ref = api.create({"name": "r", "type": "reference", "config": {"reference": target}})["id"]
        with pytest.raises(vault.MintRefusedError):
            api.mint(ref)

    def test_a_bare_string_is_not_oauth_token_state(self, v: vault.Vault) -> None:
        api = SecretApi(v)
        sid = api.create({"name": "o", "type": "oauth", "value": "sk-stored-as-oauth"})["id"]
        with pytest.raises(vault.MintRefusedError) as info:
            api.mint(sid)
        assert info.value.error == "authorization_required"
