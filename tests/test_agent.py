"""The unlock agent: unlock once, then the CLI and ``vault.open(path)`` work with no passphrase anywhere.

Every test runs its own agent on a socket in its own temporary directory
(``$CBK_VAULT_AGENT_SOCK``) and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from vault import _session

CLI = [sys.executable, "-m", "vault"]


@pytest.fixture
def sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    path = run / "agent.sock"
    monkeypatch.setenv(_session.AGENT_SOCKET_ENV, str(path))
    yield path
    with contextlib.suppress(vault.VaultError):
        pid = _session.request("hello", sock_path=path)["pid"]
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def made(tmp_path: Path) -> Path:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="OpenAI", alias="openai", type="bearer", value="sk-live-1", meta={"env": "OPENAI_KEY"})
    return path


def _env_without_passphrase() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CBK_VAULT_PASSPHRASE", "CBK_VAULT_NEW_PASSPHRASE")}


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env_without_passphrase(),
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def _wait_until(predicate: object, wait: float = 60.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_unlock_then_cli_and_python_need_no_passphrase(sock: Path, made: Path) -> None:
    with pytest.raises(vault.NotUnlockedError) as info:
        vault.open(made)
    assert "cbk-vault unlock" in info.value.message and info.value.code == "NOT_UNLOCKED"
    r = _cli("--path", str(made), "unlock", "--passphrase-fd", "0", stdin=PASSPHRASE + "\n")
    assert r.returncode == 0, r.stderr
    assert "Unlocked" in r.stdout and PASSPHRASE not in r.stdout + r.stderr
    # The CLI: no passphrase option, no variable, no terminal; it answers from the agent.
    r = _cli("--path", str(made), "fetch", "@openai", "--reveal")
    assert (r.returncode, r.stdout) == (0, "sk-live-1\n"), r.stderr
    r = _cli("--path", str(made), "create", "--name", "Added", "--value-stdin", stdin="v2")
    assert r.returncode == 0, r.stderr
    # Python: vault.open(path) with no passphrase.
    with vault.open(made) as v:
        assert v.secret.fetch("@openai").value == "sk-live-1"
        assert sorted(s.name for s in v.secret.list()) == ["Added", "OpenAI"]
        assert "unlock agent" in repr(v)
        with v.batch():
            v.secret.create(name="in a batch")
    r = _cli("status", "--json")
    assert r.returncode == 0 and str(made) in r.stdout
    # What was written through the agent is in the file.
    with vault.open(made, PASSPHRASE) as v:
        assert len(v) == 3


def test_lock_forgets_and_the_agent_exits(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    pid = _session.request("hello")["pid"]
    assert [h["path"] for h in _session.status()] == [str(made)]
    r = _cli("--path", str(made), "lock")
    assert r.returncode == 0 and "Locked" in r.stdout
    with pytest.raises(vault.NotUnlockedError):
        vault.open(made)
    assert _wait_until(lambda: not _alive(pid)), "the agent stayed up with nothing unlocked"
    assert not sock.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until its parent reaps it; it no longer serves.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_idle_timeout_locks(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE, idle=0.5)
    assert _wait_until(lambda: _session.status() == [])
    with pytest.raises(vault.NotUnlockedError):
        vault.open(made).secret.list()


def test_a_passphrase_change_locks_the_vault(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    v = vault.open(made)
    assert len(v) == 1
    with vault.open(made, PASSPHRASE) as direct:
        direct.change_passphrase("new passphrase", kdf=FAST)
    with pytest.raises(vault.NotUnlockedError) as info:
        v.secret.list()
    assert "key slots" in info.value.message
    v.close()
    assert _session.status() == []


def test_a_rekey_through_the_agent_locks_it_too(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    with vault.open(made) as v:
        v.change_passphrase("rekeyed", kdf=FAST, rekey=True)
    with pytest.raises(vault.NotUnlockedError):
        vault.open(made).secret.list()
    with vault.open(made, "rekeyed") as v:
        assert v.secret.fetch("@openai").value == "sk-live-1"


def test_another_user_cannot_connect(made: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child under another uid")
    # A socket whose parents another user may traverse (pytest's own temp root is 0700).
    run = Path(tempfile.mkdtemp(prefix="cbkv-peer-", dir="/tmp"))
    sock = run / "agent.sock"
    monkeypatch.setenv(_session.AGENT_SOCKET_ENV, str(sock))
    try:
        _peer_probe(made, sock)
    finally:
        with contextlib.suppress(vault.VaultError):
            os.kill(_session.request("hello", sock_path=sock)["pid"], signal.SIGKILL)
        shutil.rmtree(run, ignore_errors=True)


def _peer_probe(made: Path, sock: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print('refused', e.errno); raise SystemExit(0)\n"
        "try:\n    s.sendall(b'\\x00\\x00\\x00\\x0f{\"op\":\"status\"}')\n    print('answer', s.recv(100))\n"
        "except OSError as e:\n    print('closed', e.errno)\n"
    )

    def as_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    # The probe needs no vault code: any interpreter the other user may run.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the other user")

    # The directory is 0700: another user cannot even reach the socket ...
    r = subprocess.run(
        [python, "-c", probe, str(sock)], capture_output=True, text=True, preexec_fn=as_nobody, timeout=60
    )
    assert r.stdout.startswith("refused"), r.stdout + r.stderr
    # ... and with the directory opened up, the agent checks the peer's uid and says nothing.
    sock.parent.chmod(0o711)
    sock.chmod(0o666)
    try:
        r = subprocess.run(
            [python, "-c", probe, str(sock)], capture_output=True, text=True, preexec_fn=as_nobody, timeout=60
        )
    finally:
        sock.parent.chmod(0o700)
        sock.chmod(0o600)
    # Connected, and closed without a word.
    assert r.stdout.startswith("closed") or "answer b''" in r.stdout, r.stdout + r.stderr
    assert str(made) not in r.stdout


def test_a_stale_socket_is_replaced(sock: Path, made: Path) -> None:
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sock))  # a socket file nobody listens on: a dead agent's
    dead.close()
    assert sock.exists()
    _session.unlock(made, PASSPHRASE)
    with vault.open(made) as v:
        assert len(v) == 1


def test_the_agent_killed_mid_batch_loses_nothing_acknowledged(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    v = vault.open(made)
    v.secret.create(name="acknowledged")
    pid = _session.request("hello")["pid"]
    with pytest.raises(vault.VaultClosedError) as info, v.batch():
        v.secret.create(name="never committed")
        os.kill(pid, signal.SIGKILL)
        v.secret.create(name="after the kill")
    assert "went away" in info.value.message
    assert v.closed
    with vault.open(made, PASSPHRASE) as direct:
        assert sorted(s.name for s in direct.secret.list()) == ["OpenAI", "acknowledged"]


def test_a_vault_swapped_under_the_agent_is_refused(sock: Path, made: Path, tmp_path: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    other = tmp_path / "other.cbkv"
    with vault.init(other, PASSPHRASE, kdf=FAST) as o:
        o.secret.create(name="someone else's")
    os.replace(other, made)  # a different vault id at the same path
    with pytest.raises(vault.VaultError) as info:
        vault.open(made).secret.list()
    assert info.value.code in ("VAULT_CORRUPT", "NOT_UNLOCKED", "BAD_REQUEST")
    with vault.open(made, PASSPHRASE) as v:
        assert [s.name for s in v.secret.list()] == ["someone else's"]  # untouched by the old key


def test_a_client_cannot_use_a_file_it_could_not_open(sock: Path, made: Path, tmp_path: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"x")
    fd = os.open(decoy, os.O_RDWR)
    try:
        with pytest.raises(vault.InvalidRequestError):
            _session.request(
                "call", fds=[fd], path=str(made), target="secret", method="list", args=[], kwargs={}
            )
    finally:
        os.close(fd)
    # Read-only access to the vault file is enough to read, not to write.
    ro = os.open(made, os.O_RDONLY)
    try:
        assert _session.request("call", fds=[ro], path=str(made), target="vault", method="len", args=[], kwargs={})
        with pytest.raises(vault.InsecureFileError):
            _session.request(
                "call", fds=[ro], path=str(made), target="secret", method="create", args=[{"name": "x"}], kwargs={}
            )
    finally:
        os.close(ro)


def test_concurrent_writers_through_the_agent_all_land(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with vault.open(made) as v:
                for i in range(40):
                    v.secret.create(name=f"w{n}-{i}")
                with pytest.raises(vault.ConflictError):
                    v.secret.create(alias="openai")  # refused inside a group; the rest stands
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with vault.open(made, PASSPHRASE) as v:
        assert len(v) == 1 + 160


def test_no_passphrase_reaches_the_agent_process_environment(
    sock: Path, made: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", "must-not-travel")
    _session.unlock(made, PASSPHRASE)
    pid = _session.request("hello")["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"must-not-travel" not in environ and PASSPHRASE.encode() not in environ


def test_status_and_lock_without_an_agent_say_so(sock: Path) -> None:
    assert _session.status() == [] and _session.lock(everything=True) == []
    r = _cli("status")
    assert r.returncode == 0 and "No vault is unlocked" in r.stdout


def test_a_socket_in_a_directory_others_can_reach_is_never_used(sock: Path, made: Path) -> None:
    # In /tmp/runtime-<uid> (platformdirs' fallback) another user could plant a socket and collect
    # the passphrase `unlock` sends. The client checks the directory and the socket before sending.
    sock.parent.chmod(0o755)
    try:
        with pytest.raises(vault.InsecureFileError):
            _session.unlock(made, PASSPHRASE)
    finally:
        sock.parent.chmod(0o700)
    planted = socket.socket(socket.AF_UNIX)
    planted.bind(str(sock))
    planted.listen(1)
    try:
        if os.geteuid() == 0:
            os.chown(sock, 65534, 65534)
            with pytest.raises(vault.InsecureFileError):
                _session.unlock(made, PASSPHRASE)
    finally:
        planted.close()


def test_only_the_vault_api_can_be_called_even_inside_a_batch(sock: Path, made: Path) -> None:
    _session.unlock(made, PASSPHRASE)
    with vault.open(made) as v:
        backend_call = v.secret._backend.call  # type: ignore[attr-defined]
        for target, method in (("secret", "__setattr__"), ("raw", "_engine"), ("vault", "close")):
            with pytest.raises(vault.InvalidRequestError):
                backend_call(target, method, "x", 1)
        with v.batch():
            with pytest.raises(vault.InvalidRequestError):
                backend_call("secret", "__init__", None)
            v.secret.create(name="still fine")
    with vault.open(made, PASSPHRASE) as direct:
        assert len(direct) == 2
