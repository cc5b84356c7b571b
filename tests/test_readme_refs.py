"""The README's examples for references, vault.read, vault.load_env and the keyring backend, run verbatim.

Each example is the code block after a ``<!-- readme-test: NAME -->`` marker in README.md, read
from the file at test time, so the README cannot drift from what works. They run against a
vault holding the secrets the README describes, once through the unlock agent (the README's
own set-up) and, where the block does not call ``vault.open()``, once with
``$CBK_VAULT_PASSPHRASE`` (CI's).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from vault import _session

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```[\w-]*\n(.*?)\n```", re.DOTALL)
ENV_NAMES = ("OPENAI_API_KEY", "DB_PASSWORD", "LOG_LEVEL")


def blocks() -> dict[str, str]:
    found = {name: body + "\n" for name, body in _BLOCK.findall(README.read_text(encoding="utf-8"))}
    assert set(found) >= {"read", "dotenv-file", "dotenv", "helpers", "keyring", "keyring-cli"}, sorted(found)
    return found


def run_python(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"readme_{name.replace('-', '_')}"}
    exec(compile(blocks()[name], f"README.md <{name}>", "exec"), namespace)
    return namespace


@dataclass
class Setup:
    path: Path
    sock: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """The vault the README describes, unlocked in an agent of its own."""
    root = tmp_path_factory.mktemp("readme")
    run = root / "run"
    run.mkdir(mode=0o700)
    sock = run / "agent.sock"
    path = root / "vault.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(
            name="OpenAI", alias="openai", type="bearer", value="sk-live-123", meta={"env": "OPENAI_API_KEY"}
        )
        v.secret.create(name="Database", alias="db", type="basic", value='{"username": "app", "password": "db-pw"}')
        v.secret.create(name="Partner API", type="oauth", config={"clientId": "partner-client", "clientSecret": "cs"})
    _session.unlock(path, PASSPHRASE, sock_path=sock)
    try:
        yield Setup(path, sock)
    finally:
        with contextlib.suppress(vault.VaultError):
            os.kill(_session.request("hello", sock_path=sock)["pid"], signal.SIGKILL)


def _configure(way: str, setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CBK_VAULT_PATH", str(setup.path))
    if way == "agent":
        monkeypatch.setenv(_session.AGENT_SOCKET_ENV, str(setup.sock))
        monkeypatch.delenv("CBK_VAULT_PASSPHRASE", raising=False)
    else:
        run = tmp_path / "no-agent"
        run.mkdir(mode=0o700)
        monkeypatch.setenv(_session.AGENT_SOCKET_ENV, str(run / "agent.sock"))
        monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.chdir(tmp_path)
    return way


@pytest.fixture(params=["agent", "passphrase variable"])
def way(request: pytest.FixtureRequest, setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return _configure(str(request.param), setup, tmp_path, monkeypatch)


@pytest.fixture
def agent(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Only the agent's way (a block that calls ``vault.open()`` with no passphrase)."""
    return _configure("agent", setup, tmp_path, monkeypatch)


def test_read(way: str) -> None:
    ns = run_python("read")
    assert (ns["api_key"], ns["db_user"], ns["db_password"]) == ("sk-live-123", "app", "db-pw")
    assert (ns["client_id"], ns["env_name"]) == ("partner-client", "OPENAI_API_KEY")


def test_load_env(way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(blocks()["dotenv-file"], encoding="utf-8")
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    try:
        ns = run_python("dotenv")
        assert ns["loaded"] == {"OPENAI_API_KEY": "sk-live-123", "DB_PASSWORD": "db-pw", "LOG_LEVEL": "debug"}
        assert ns["api_key"] == "sk-live-123"
    finally:
        for name in ENV_NAMES:
            os.environ.pop(name, None)


def test_helpers(agent: str) -> None:
    ns = run_python("helpers")
    assert ns["settings"] == {"api_key": "sk-live-123", "model": "gpt-4o"}
    assert ns["header"] == "Authorization: Bearer sk-live-123"


def test_keyring(way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring.core

    # The block sets keyring's process-wide backend; put back whatever was there.
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    ns = run_python("keyring")
    assert ns["token"] == "pypi-AgEIcHlwaS5vcmc"
    # The console block: each "$ " line runs in a shell, and its output is the lines under it.
    lines = blocks()["keyring-cli"].splitlines()
    command = lines[0].removeprefix("$ ")
    expected = "".join(line + "\n" for line in lines[1:])
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert (r.returncode, r.stdout) == (0, expected), r.stderr
