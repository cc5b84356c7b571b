"""vault.keyring.VaultKeyring: keyring's own backend tests, the mapping, how it unlocks and how it is chosen.

keyring ships ``keyring.testing.backend.BackendBasicTests`` for every backend to pass; it runs
here three times: on an open handle, on a vault file opened with ``$CBK_VAULT_PASSPHRASE``
for each call, and through the unlock agent.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import pytest
from keyring import errors as kr_errors
from keyring.backends import chainer, fail
from keyring.testing.backend import BackendBasicTests

import vault
from tests.conftest import FAST, PASSPHRASE
from vault import _session
from vault.keyring import VaultKeyring
from vault.testing import memory_vault


@pytest.fixture
def no_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No agent for this test (a socket path nothing listens on), and no passphrase variable."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv(_session.AGENT_SOCKET_ENV, str(run / "agent.sock"))
    monkeypatch.delenv("CBK_VAULT_PASSPHRASE", raising=False)


# --- keyring's own backend tests -------------------------------------------------------------------


class TestOnAnOpenHandle(BackendBasicTests):
    """The mixin as keyring wires it: ``init_keyring`` makes the backend (here over a memory vault)."""

    def init_keyring(self) -> VaultKeyring:
        self.handle = memory_vault()
        return VaultKeyring(vault=self.handle)


class TestWithThePassphraseVariable(BackendBasicTests):
    """Each call opens the vault file with ``$CBK_VAULT_PASSPHRASE`` and closes it again (CI's way)."""

    @pytest.fixture(autouse=True)
    def _init_properties(  # the mixin's fixture, with a vault file and the environment it needs
        self, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_agent: None
    ) -> None:
        self.vault_path = tmp_path / "keyring.cbkv"
        vault.init(self.vault_path, PASSPHRASE, kdf=FAST).close()
        monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
        self.keyring = self.init_keyring()
        self.credentials_created: set[tuple[str, str]] = set()
        request.addfinalizer(self.cleanup)

    def init_keyring(self) -> VaultKeyring:
        return VaultKeyring(self.vault_path)

    def test_written_to_the_file(self) -> None:
        self.set_password("svc", "ann", "pw")
        with vault.open(self.vault_path, PASSPHRASE) as v:
            assert [s.name for s in v.secret.list()] == ["svc"]


@pytest.fixture(scope="class")
def agent_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One agent for the class, holding one vault; no passphrase in the environment."""
    root = tmp_path_factory.mktemp("keyring-agent")
    run = root / "run"
    run.mkdir(mode=0o700)
    sock = run / "agent.sock"
    path = root / "agent.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_session.AGENT_SOCKET_ENV, str(sock))
        mp.delenv("CBK_VAULT_PASSPHRASE", raising=False)
        _session.unlock(path, PASSPHRASE)
        try:
            yield path
        finally:
            with contextlib.suppress(vault.VaultError):
                os.kill(_session.request("hello", sock_path=sock)["pid"], signal.SIGKILL)


class TestThroughTheUnlockAgent(BackendBasicTests):
    """The way for a workstation: ``cbk-vault unlock`` once, then keyring calls need nothing."""

    @pytest.fixture(autouse=True)
    def _init_properties(self, request: pytest.FixtureRequest, agent_vault: Path) -> None:
        self.vault_path = agent_vault
        self.keyring = self.init_keyring()
        self.credentials_created: set[tuple[str, str]] = set()
        request.addfinalizer(self.cleanup)

    def init_keyring(self) -> VaultKeyring:
        return VaultKeyring(self.vault_path)


# --- the mapping ---------------------------------------------------------------------------------


def test_the_mapping_is_a_basic_secret_with_a_keyring_marker() -> None:
    with memory_vault() as v:
        kr = VaultKeyring(vault=v)
        kr.set_password("pypi", "alice", "tok en")
        (item,) = v.secret.list().items
        s = v.secret.fetch(item.id)
        assert (s.name, s.type, s.kind, s.alias) == ("pypi", "basic", "shared", None)
        assert s.meta == {"keyring": {"service": "pypi", "username": "alice"}}
        assert json.loads(s.value or "") == {"username": "alice", "password": "tok en"}
        # The same secret reads through a reference and Secret.credentials().
        assert vault.ref_resolver(v)("cbk://(pypi)/password") == "tok en"
        assert tuple(s.credentials()) == ("alice", "tok en")
        # set_password again updates the one secret in place.
        kr.set_password("pypi", "alice", "rotated")
        assert len(v) == 1 and kr.get_password("pypi", "alice") == "rotated"


def test_lookup_is_exact_and_needs_the_marker() -> None:
    with memory_vault() as v:
        kr = VaultKeyring(vault=v)
        v.secret.create(name="pypi", type="basic", value='{"username":"alice","password":"not mine"}')
        assert kr.get_password("pypi", "alice") is None  # no marker: not a keyring credential
        kr.set_password("PyPI", "alice", "upper")
        assert kr.get_password("pypi", "alice") is None
        assert kr.get_password("PyPI", "Alice") is None
        # The words the list filter reads as booleans still match exactly.
        kr.set_password("true", "x", "t")
        kr.set_password("false", "x", "f")
        assert (kr.get_password("true", "x"), kr.get_password("false", "x")) == ("t", "f")


def _ticking() -> Callable[[], int]:
    """One second per call: two secrets made in the same millisecond would sort by their random ids."""
    return itertools.count(1_767_225_600_000, 1000).__next__


def test_get_credential_without_username_gives_the_oldest() -> None:
    with memory_vault(clock=_ticking()) as v:
        kr = VaultKeyring(vault=v)
        kr.set_password("svc", "first", "1")
        kr.set_password("svc", "second", "2")
        cred = kr.get_credential("svc", None)
        assert cred is not None and (cred.username, cred.password) == ("first", "1")


def test_a_secret_made_by_hand_with_the_marker_is_found() -> None:
    with memory_vault() as v:
        v.secret.create(name="gh", type="bearer", value="ghp_1", meta={"keyring": {"service": "gh", "username": "me"}})
        kr = VaultKeyring(vault=v)
        assert kr.get_password("gh", "me") == "ghp_1"
        v.secret.create(
            name="odd", type="basic", value="{not json", meta={"keyring": {"service": "o", "username": "u"}}
        )
        with pytest.raises(kr_errors.KeyringError) as info:
            kr.get_password("o", "u")
        assert "not json" not in str(info.value)


def test_delete_removes_every_duplicate() -> None:
    with memory_vault(clock=_ticking()) as v:
        marker = {"keyring": {"service": "s", "username": "u"}}
        for value in ('{"username":"u","password":"a"}', '{"username":"u","password":"b"}'):
            v.secret.create(name="s", type="basic", value=value, meta=marker)
        kr = VaultKeyring(vault=v)
        assert kr.get_password("s", "u") == "a"  # the oldest
        kr.delete_password("s", "u")
        assert len(v) == 0


def test_vault_errors_become_keyring_errors_without_the_password() -> None:
    with memory_vault() as v:
        kr = VaultKeyring(vault=v)
        with pytest.raises(kr_errors.PasswordSetError) as info:
            kr.set_password("s", "u", "sk-MARKER" + "\ud800")  # not valid Unicode: the vault refuses it
        assert isinstance(info.value.__cause__, vault.InvalidRequestError)
        assert "MARKER" not in str(info.value)


# --- unlocking -----------------------------------------------------------------------------------


def test_a_locked_vault_raises_keyring_locked_and_never_prompts(
    tmp_path: Path, no_agent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("prompted"))
    monkeypatch.setattr("getpass.getpass", lambda *a, **k: pytest.fail("prompted"))
    kr = VaultKeyring(path)
    with pytest.raises(kr_errors.KeyringLocked) as info:
        kr.get_password("s", "u")
    assert "cbk-vault unlock" in str(info.value)
    with pytest.raises(kr_errors.KeyringLocked):
        kr.set_password("s", "u", "p")
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", "wrong passphrase")
    with pytest.raises(kr_errors.KeyringLocked) as info:
        kr.get_password("s", "u")
    assert isinstance(info.value.__cause__, vault.WrongPassphraseError)


def test_a_missing_vault_is_no_keyring(tmp_path: Path, no_agent: None) -> None:
    with pytest.raises(kr_errors.NoKeyringError):
        VaultKeyring(tmp_path / "absent.cbkv").get_password("s", "u")


def test_the_path_comes_from_keyring_property_or_cbk_vault_path(
    tmp_path: Path, no_agent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.cbkv", tmp_path / "b.cbkv"
    for path in (a, b):
        vault.init(path, PASSPHRASE, kdf=FAST).close()
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("CBK_VAULT_PATH", str(a))
    VaultKeyring().set_password("s", "u", "in a")
    monkeypatch.setenv("KEYRING_PROPERTY_PATH", str(b))
    kr = VaultKeyring()
    assert kr.path == str(b)
    kr.set_password("s", "u", "in b")
    assert VaultKeyring(a).get_password("s", "u") == "in a"  # an explicit path beats the property
    assert kr.get_password("s", "u") == "in b"


# --- how keyring chooses it ------------------------------------------------------------------------


def test_registered_under_the_keyring_backends_entry_point() -> None:
    found = {ep.value for ep in metadata.entry_points(group="keyring.backends")}
    assert "vault.keyring" in found
    assert VaultKeyring in keyring.backend.KeyringBackend._classes  # the metaclass registry keyring reads
    assert VaultKeyring.viable


def test_priority_never_hijacks_an_unconfigured_user() -> None:
    # Below the fail backend (which keyring picks when nothing better exists) and the chainer's cut-off.
    assert VaultKeyring.priority < fail.Keyring.priority
    assert VaultKeyring.priority <= 0
    assert not any(isinstance(k, VaultKeyring) for k in chainer.ChainerBackend.backends)
    assert not keyring.core.recommended(VaultKeyring)
    assert VaultKeyring.name == "cbk-vault"


def test_python_keyring_backend_selects_it(tmp_path: Path, no_agent: None) -> None:
    path = tmp_path / "env.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        VaultKeyring(vault=v).set_password("svc", "ann", "from the vault")
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "vault.keyring.VaultKeyring",
        "CBK_VAULT_PATH": str(path),
        "CBK_VAULT_PASSPHRASE": PASSPHRASE,
    }
    r = subprocess.run(
        [sys.executable, "-m", "keyring", "get", "svc", "ann"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (r.returncode, r.stdout) == (0, "from the vault\n"), r.stderr
