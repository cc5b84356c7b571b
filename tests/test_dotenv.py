"""vault.load_env: load_dotenv's habits, with cbk:// references resolved from the vault."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE

NAMES = ("CBKT_KEY", "CBKT_USER", "CBKT_PASS", "CBKT_PLAIN", "CBKT_KEPT", "CBKT_BOTH", "CBKT_NOVALUE", "CBKT_X")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A vault at $CBK_VAULT_PATH opened by $CBK_VAULT_PASSPHRASE (no agent), and a clean slate of variables."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("CBK_VAULT_AGENT_SOCK", str(run / "agent.sock"))
    path = tmp_path / "env.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(alias="openai", type="bearer", value="sk-MARKER")
        v.secret.create(alias="db", type="basic", value="dba:pw-MARKER")
    monkeypatch.setenv("CBK_VAULT_PATH", str(path))
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("PYTHON_DOTENV_DISABLED", raising=False)
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in NAMES:  # load_env writes os.environ directly; monkeypatch only undoes its own changes
        os.environ.pop(name, None)


def test_references_are_resolved_and_plain_values_kept(env: Path) -> None:
    (env / ".env").write_text(
        "# comment\n"
        "CBKT_KEY=cbk://@openai\n"
        "export CBKT_USER='cbk://@db/username'\n"
        'CBKT_PASS="cbk://@db/password"  # trailing comment\n'
        "CBKT_PLAIN=plain value\n"
        "CBKT_NOVALUE\n"
    )
    got = vault.load_env()
    assert got == {"CBKT_KEY": "sk-MARKER", "CBKT_USER": "dba", "CBKT_PASS": "pw-MARKER", "CBKT_PLAIN": "plain value"}
    assert all(os.environ[k] == v for k, v in got.items())
    assert "CBKT_NOVALUE" not in os.environ


def test_no_override_by_default(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / ".env").write_text("CBKT_KEY=cbk://@openai\nCBKT_KEPT=from file\n")
    monkeypatch.setenv("CBKT_KEPT", "from env")
    assert vault.load_env() == {"CBKT_KEY": "sk-MARKER"}
    assert os.environ["CBKT_KEPT"] == "from env"
    assert vault.load_env(override=True) == {"CBKT_KEY": "sk-MARKER", "CBKT_KEPT": "from file"}
    assert os.environ["CBKT_KEPT"] == "from file"


def test_a_variable_already_set_is_not_resolved(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment wins, so a reference it shadows is never looked up (nor the vault opened).
    (env / ".env").write_text("CBKT_KEY=cbk://@does-not-exist\n")
    monkeypatch.setenv("CBKT_KEY", "already")
    monkeypatch.setenv("CBK_VAULT_PATH", str(env / "absent.cbkv"))
    assert vault.load_env() == {}


def test_interpolation_follows_load_dotenv(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / ".env").write_text("CBKT_X=@openai\nCBKT_KEY=cbk://${CBKT_X}\nCBKT_BOTH=${CBKT_KEPT}\nCBKT_KEPT=file\n")
    monkeypatch.setenv("CBKT_KEPT", "env")
    got = vault.load_env()
    assert got["CBKT_KEY"] == "sk-MARKER"
    assert got["CBKT_BOTH"] == "env"  # load_dotenv(override=False): the environment wins inside ${...} too


def test_no_reference_no_vault(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / ".env").write_text("CBKT_PLAIN=1\n")
    monkeypatch.setenv("CBK_VAULT_PATH", str(env / "absent.cbkv"))
    monkeypatch.delenv("CBK_VAULT_PASSPHRASE")
    assert vault.load_env() == {"CBKT_PLAIN": "1"}


def test_a_missing_file_sets_nothing(env: Path) -> None:
    assert vault.load_env(env / "nope.env") == {}
    assert vault.load_env() == {}


def test_explicit_paths(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = env / "other.cbkv"
    with vault.init(other, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(alias="openai", value="sk-OTHER")
    (env / "conf.env").write_text("CBKT_KEY=cbk://@openai\n")
    assert vault.load_env(env / "conf.env", path=other) == {"CBKT_KEY": "sk-OTHER"}


def test_a_failure_sets_nothing_and_names_the_variable(env: Path) -> None:
    (env / ".env").write_text("CBKT_KEY=cbk://@openai\nCBKT_PASS=cbk://@nope\n")
    with pytest.raises(vault.NotFoundError) as info:
        vault.load_env()
    assert info.value.message.startswith("CBKT_PASS: ")
    assert "CBKT_KEY" not in os.environ and "sk-MARKER" not in info.value.message
    (env / ".env").write_text("CBKT_KEY=cbk://@openai/a/b\n")
    with pytest.raises(vault.InvalidRequestError):
        vault.load_env()


def test_a_locked_vault_never_prompts(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / ".env").write_text("CBKT_KEY=cbk://@openai\n")
    monkeypatch.delenv("CBK_VAULT_PASSPHRASE")
    monkeypatch.setattr("getpass.getpass", lambda *a, **k: pytest.fail("prompted"))
    with pytest.raises(vault.NotUnlockedError):
        vault.load_env()
    assert "CBKT_KEY" not in os.environ


def test_a_nul_byte_is_refused_before_anything_is_set(env: Path) -> None:
    with vault.open(os.environ["CBK_VAULT_PATH"], PASSPHRASE) as v:
        v.secret.create(alias="nul", value="a\0b")
    (env / ".env").write_text("CBKT_KEY=cbk://@openai\nCBKT_X=cbk://@nul\n")
    with pytest.raises(vault.InvalidRequestError) as info:
        vault.load_env()
    assert info.value.message.startswith("CBKT_X:") and "CBKT_KEY" not in os.environ


def test_python_dotenv_disabled_is_honoured(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / ".env").write_text("CBKT_PLAIN=1\n")
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
    assert vault.load_env() == {}


def test_without_python_dotenv(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / ".env").write_text("CBKT_PLAIN=1\n")
    monkeypatch.setitem(sys.modules, "dotenv", None)
    with pytest.raises(vault.MissingDependencyError) as info:
        vault.load_env()
    assert "cbk-vault[dotenv]" in info.value.message and isinstance(info.value, ImportError)
