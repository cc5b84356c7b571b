"""The access log's buffer (issue 15): what a fork, a crash, an exit and a failed write do to buffered
records, batches under tamper, the vault's clock, and each surface's operation name.

The processes these tests look at are the ones they start; timings are never asserted (a record
written by the daemon thread is waited for with a deadline far above FLUSH_DELAY).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE, Clock
from vault import _format
from vault._vault import engine_of

#: Run first in every child interpreter: the daemon thread then never writes within a test's
#: lifetime, so what a child leaves in the log is what its own count, close, exit or log read wrote.
_HOLD = "import vault._accesslog as _al; _al.FLUSH_DELAY = 3600.0\n"


def _child(code: str, vault_path: Path, sid: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import os, sys, vault\nPATH, PW, SID = {str(vault_path)!r}, {PASSPHRASE!r}, {sid!r}\n"
    return subprocess.run(
        [sys.executable, "-c", _HOLD + prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _fetches(v: vault.Vault) -> list[vault.AccessRecord]:
    return [r for r in v.access_log() if r.secret_id]


def test_a_forked_child_never_writes_the_parents_buffered_reads(v: vault.Vault, vault_path: Path) -> None:
    sid = v.secret.create(name="key", value="v1").id
    out = _child(
        """
        h = vault.open(PATH, PW)
        for _ in range(3):
            h.secret.fetch(SID)  # the first is written at once, the other two wait in the buffer
        child = os.fork()
        if child == 0:
            h.secret.fetch(SID)
            mine = [r for r in h.access_log() if r.pid == os.getpid()]  # writes the child's buffer
            h.close()
            os._exit(0 if len(mine) == 1 else 3)
        _, status = os.waitpid(child, 0)
        h.close()  # the parent's two buffered reads, written here, once
        print(os.getpid(), child, os.waitstatus_to_exitcode(status))
        """,
        vault_path,
        sid,
    )
    assert out.returncode == 0, out.stderr
    parent, child, status = map(int, out.stdout.split())
    assert status == 0
    records = v.access_log()
    assert [r.seq for r in records] == list(range(len(records)))
    assert sorted(r.pid for r in records if r.secret_id) == sorted([parent] * 3 + [child])


def test_a_crash_loses_only_buffered_reads_and_the_log_still_verifies(v: vault.Vault, vault_path: Path) -> None:
    sid = v.secret.create(name="key", value="v1").id
    out = _child(
        """
        import signal
        h = vault.open(PATH, PW)
        for _ in range(3):
            h.secret.fetch(SID)
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        vault_path,
        sid,
    )
    assert out.returncode == -9
    crashed = int(out.stdout)
    # The handle's first read was written before its value was returned; the two buffered are gone.
    assert [(r.operation, r.pid) for r in v.access_log()] == [("log-new", crashed), ("fetch", crashed)]
    v.secret.fetch(sid)
    assert [r.seq for r in v.access_log()] == [0, 1, 2]


def test_an_exit_without_close_writes_the_buffer(v: vault.Vault, vault_path: Path) -> None:
    sid = v.secret.create(name="key", value="v1").id
    out = _child(
        """
        h = vault.open(PATH, PW)
        for _ in range(5):
            h.secret.fetch(SID)
        print(os.getpid())  # no close: the interpreter's exit writes the buffer
        """,
        vault_path,
        sid,
    )
    assert out.returncode == 0, out.stderr
    assert [r.pid for r in _fetches(v)] == [int(out.stdout)] * 5


def test_the_daemon_thread_writes_a_long_lived_readers_buffer(v: vault.Vault, vault_path: Path) -> None:
    sid = v.secret.create(name="key", value="v1").id
    code = f"""
import os, sys, vault
h = vault.open({str(vault_path)!r}, {PASSPHRASE!r})
h.secret.fetch({sid!r})
h.secret.fetch({sid!r})  # buffered: only the daemon thread can write it before this process ends
print(os.getpid(), flush=True)
sys.stdin.readline()
os._exit(0)  # no close, no exit handlers
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        reader = int(proc.stdout.readline())
        deadline = time.monotonic() + 60  # a liveness bound, far above FLUSH_DELAY: not a timing claim
        while [r.pid for r in _fetches(v)] != [reader, reader] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.pid for r in _fetches(v)] == [reader, reader]
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(timeout=60)


def test_reads_from_many_threads_are_each_logged_once(v: vault.Vault) -> None:
    sid = v.secret.create(name="key", value="v1").id
    per, threads = 300, 4

    def reader() -> None:
        for _ in range(per):
            v.secret.fetch(sid)

    workers = [threading.Thread(target=reader) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    records = v.access_log()
    assert len([r for r in records if r.secret_id == sid]) == per * threads
    assert [r.seq for r in records] == list(range(len(records)))


def test_a_failed_write_keeps_the_buffer_and_refuses_reads_until_it_works(
    v: vault.Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = v.secret.create(name="key", value="v1").id
    v.secret.fetch(sid)  # written at once: the log works
    v.secret.fetch(sid)  # buffered
    real_pwrite = os.pwrite

    def failing(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(vault.StorageError):
        v.access_log()  # the buffer cannot be written: no log without this process's reads
    with pytest.raises(vault.StorageError):
        v.secret.fetch(sid)  # after a failed write, a read writes its record first, and is refused
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert v.secret.fetch(sid).value == "v1"
    # The buffered read survived the failure; the refused read left nothing.
    assert len(_fetches(v)) == 3


def test_a_batch_is_one_frame_whose_records_cannot_be_edited_dropped_or_reordered(
    v: vault.Vault, vault_path: Path
) -> None:
    from vault._accesslog import HEADER_SIZE

    sid = v.secret.create(name="key", value="v1").id
    for _ in range(6):
        v.secret.fetch(sid)
    assert len(v.access_log()) == 7
    path = Path(str(vault_path) + ".access")
    data = path.read_bytes()
    frames, pos = [], HEADER_SIZE
    while pos < len(data):
        (length,) = _format.FRAME_HEAD.unpack_from(data, pos)[:1]
        frames.append((pos, pos + 8 + length + 32))
        pos = frames[-1][1]
    # log-new, the first read (written at once), then the five buffered reads as one frame.
    assert len(frames) == 3
    start, end = frames[2]
    for offset in (start + 8, start + 40, end - 40, end - 1):
        bad = bytearray(data)
        bad[offset] ^= 1
        path.write_bytes(bytes(bad))
        with pytest.raises(vault.CorruptVaultError):
            v.access_log()
    # A whole frame cut off the end reads as fewer reads (the rollback class of SECURITY.md).
    path.write_bytes(data[:start])
    assert len(v.access_log()) == 2
    path.write_bytes(data)
    assert len(v.access_log()) == 7


def test_access_log_times_come_from_the_vaults_clock(v: vault.Vault, clock: Clock) -> None:
    sid = v.secret.create(name="key", value="v1").id
    start = 1_700_000_000_000
    clock.source = lambda: start
    v.secret.fetch(sid)
    clock.source = lambda: start + 3_600_000
    v.secret.fetch(sid)
    records = v.access_log()
    assert [r.at for r in records] == [start, start, start + 3_600_000]  # log-new too
    assert [r.at for r in v.access_log(since=dt.timedelta(minutes=30))] == [start + 3_600_000]
    assert len(v.access_log(since=start)) == 3


def test_every_surface_logs_its_own_operation(v: vault.Vault, vault_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("keyring")
    pytest.importorskip("dotenv")
    from vault.keyring import VaultKeyring

    sid = v.secret.create(name="key", value="v1", alias="k").id
    VaultKeyring(vault=v).set_password("svc", "alice", "pw")
    resolver = vault.ref_resolver(v)
    resolver("cbk://@k")
    vault.ref_resolver(v)("cbk://@k")
    vault.inject_refs("x={{ cbk://@k }}", vault.ref_resolver(v))
    vault.resolve_refs({"A": "cbk://@k"}, vault.ref_resolver(v))
    assert VaultKeyring(vault=v).get_password("svc", "alice") == "pw"
    assert VaultKeyring(vault=v).get_credential("svc", None) is not None
    with vault.access_context("deploy"):
        vault.inject_refs("{{ cbk://@k }}", vault.ref_resolver(v))  # the caller's name wins
    v.secret.fetch("@k")
    ops = [r.operation for r in v.access_log() if r.secret_id == sid]
    assert ops == ["read", "read", "inject", "resolve", "deploy", "fetch"]
    keyring_ops = [r.operation for r in v.access_log() if r.secret_id not in ("", sid)]
    assert keyring_ops == ["keyring", "keyring"]


def test_vault_read_and_load_env_log_their_own_operation(
    v: vault.Vault, vault_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("dotenv")
    sid = v.secret.create(name="key", value="v1", alias="k").id
    monkeypatch.setenv("CBK_VAULT_PATH", str(vault_path))
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("CBK_VAULT_AGENT_SOCK", str(run / "agent.sock"))  # no agent there
    monkeypatch.delenv("CBK_TEST_ACCESS_VAR", raising=False)
    assert vault.read("cbk://@k") == "v1"
    env = tmp_path / ".env"
    env.write_text("CBK_TEST_ACCESS_VAR=cbk://@k\n")
    vault.load_env(env)
    assert os.environ["CBK_TEST_ACCESS_VAR"] == "v1"
    assert [r.operation for r in v.access_log() if r.secret_id == sid] == ["read", "load-env"]


def _cli(path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cbk-vault")
    env = {**os.environ, "CBK_VAULT_PATH": str(path), "CBK_VAULT_PASSPHRASE": PASSPHRASE}
    env["CBK_VAULT_AGENT_SOCK"] = str(path.parent / "no-agent.sock")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-c", "from vault.cli import main; main()", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_read_inject_run_and_fetch_are_logged_by_name(vault_path: Path, tmp_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    made = _cli(vault_path, "create", "--name", "k", "--alias", "k", "--meta", "env=CBK_TEST_VALUE", "--value-stdin",
                stdin="v1")
    assert made.returncode == 0, made.stderr
    assert _cli(vault_path, "read", "cbk://@k").stdout == "v1\n"
    template = tmp_path / "t.tpl"
    template.write_text("key={{ cbk://@k }}\n")
    assert _cli(vault_path, "inject", "-i", str(template)).stdout == "key=v1\n"
    run = _cli(vault_path, "run", "--", sys.executable, "-c", "import os; print(os.environ['CBK_TEST_VALUE'])")
    assert run.stdout == "v1\n"
    assert _cli(vault_path, "fetch", "@k", "--reveal").stdout == "v1\n"
    with vault.open(vault_path, PASSPHRASE) as v:
        assert [r.operation for r in v.access_log() if r.secret_id] == ["read", "inject", "run", "fetch"]


# --- the stand-in's peer -------------------------------------------------------------------------------


def test_the_in_process_transport_logs_this_process_as_the_peer(v: vault.Vault) -> None:
    httpx = pytest.importorskip("httpx")
    import asyncio

    from vault.testing import transport

    sid = v.secret.create(name="key", type="bearer", value="tok").id

    async def use() -> None:
        async with httpx.AsyncClient(transport=transport(v, token="t"), base_url="http://127.0.0.1") as client:
            listed = await client.get("/api/v1/secret/list", headers={"Authorization": "Bearer t"})
            assert listed.status_code == 200
            answer = await client.post(
                f"/api/v1/secret/{sid}/verify", json={}, headers={"Authorization": "Bearer t"}
            )
            assert answer.json()["status"] == "authenticated"

    asyncio.run(use())
    (record,) = _fetches(v)
    assert (record.operation, record.pid, record.peer_pid) == ("use", os.getpid(), os.getpid())
    assert record.peer_exe == os.readlink(f"/proc/{os.getpid()}/exe")


_CLIENT = """
import json, os, sys, urllib.request
base, token, sid = sys.argv[1:4]
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
for _ in range(int(sys.argv[4])):  # urllib opens a connection per request
    request = urllib.request.Request(
        f"{base}/api/v1/secret/{sid}/verify", data=b"{}", method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    )
    with direct.open(request, timeout=60) as answer:
        assert json.load(answer)["status"] == "authenticated"
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the TCP peer is found through Linux's /proc")
def test_cbk_vault_serve_logs_the_tcp_clients_pid(vault_path: Path) -> None:
    pytest.importorskip("uvicorn")
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        sid = v.secret.create(name="key", type="bearer", value="tok").id
    exe = Path(sys.executable).with_name("cbk-vault")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from vault.cli import main; main()"]
    env = {**os.environ, "CBK_VAULT_PATH": str(vault_path), "CBK_VAULT_PASSPHRASE": PASSPHRASE}
    env["CBK_VAULT_AGENT_SOCK"] = str(vault_path.parent / "no-agent.sock")
    server = subprocess.Popen([*cmd, "serve", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              text=True)
    try:
        assert server.stdout is not None
        started = __import__("json").loads(server.stdout.readline())
        clients = []
        for count in (1, 2):
            client = subprocess.Popen(
                [sys.executable, "-c", _CLIENT, started["baseUrl"], started["token"], sid, str(count)]
            )
            assert client.wait(timeout=120) == 0
            clients.append(client.pid)
    finally:
        server.terminate()  # serve closes the vault on SIGTERM: its buffered records are written
        server.wait(timeout=60)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
    with vault.open(vault_path, PASSPHRASE) as v:
        reads = _fetches(v)
    assert [(r.operation, r.pid) for r in reads] == [("use", server.pid)] * 3
    assert [r.peer_pid for r in reads] == [clients[0], clients[1], clients[1]]
    assert all(r.peer_exe and Path(r.peer_exe).name.startswith("python") for r in reads)


def test_reads_buffered_before_another_handle_rekeys_never_set_the_resealed_log_aside(
    v: vault.Vault, vault_path: Path
) -> None:
    sid = v.secret.create(name="key", value="v1").id
    v.close()
    out = _child(
        """
        import subprocess
        h = vault.open(PATH, PW)
        h.secret.fetch(SID)  # written at once
        h.secret.fetch(SID)  # buffered under the old key
        # Another process re-keys (one of this process's handles would have flushed ours first).
        rekey = "import sys, vault; vault.open(*sys.argv[1:]).change_passphrase('a new passphrase', rekey=True)"
        subprocess.run([sys.executable, "-c", rekey, PATH, PW], check=True, timeout=120)
        h.close()  # the buffered read cannot be sealed under the new key: it is reported lost
        """,
        vault_path,
        sid,
    )
    assert out.returncode == 0, out.stderr
    assert "access records are lost" in out.stderr  # said, not silent
    with vault.open(vault_path, "a new passphrase") as again:
        assert [r.operation for r in again.access_log()] == ["log-new", "fetch"]
    assert not Path(str(vault_path) + ".access.damaged").exists()


def test_a_log_of_bare_record_frames_still_reads_and_continues(v: vault.Vault, vault_path: Path) -> None:
    # Frames written before records were batched hold one bare record: the format keeps them readable.
    from vault import _accesslog, _crypto

    sid = v.secret.create(name="key", value="v1").id
    keys = engine_of(v).access_keys()
    head, tag = _accesslog._header(keys, 0, 0, bytes(32))
    chunks = [head]
    for seq, (secret, op) in enumerate([("", "log-new"), (sid, "fetch")]):
        plain = _format.pad(_format.packb([seq, 1_700_000_000_000, secret, op, None, 4242, "/bin/old", None, None]), 64)
        sealed = _crypto.seal(keys.box, plain)
        body = _format.FRAME_HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed
        tag = _crypto.mac(keys.chain, tag + body)
        chunks.append(body + tag)
    Path(str(vault_path) + ".access").write_bytes(b"".join(chunks))
    v.secret.fetch(sid)
    v.secret.fetch(sid)
    records = v.access_log()
    assert [(r.seq, r.operation, r.pid) for r in records] == [
        (0, "log-new", 4242), (1, "fetch", 4242), (2, "fetch", os.getpid()), (3, "fetch", os.getpid())
    ]


# --- review 2: the peer lookup off the engine lock, a held flock, a re-key, a failed background write ---


def test_the_stand_in_finds_its_peer_before_the_engine_lock_is_taken(
    v: vault.Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lookup walks /proc (100+ ms with many descriptors): under the engine's mutex it stalls every
    # other thread of the process. It must run before the lock is taken, once per request.
    httpx = pytest.importorskip("httpx")
    import asyncio

    from vault import _asgi
    from vault.testing import transport

    sid = v.secret.create(name="key", type="bearer", value="tok").id
    mutex = engine_of(v)._mutex
    free: list[bool] = []

    def lookup() -> tuple[int | None, str | None]:
        got: list[bool] = []

        def probe() -> None:  # another thread: the RLock is reentrant for this one
            got.append(mutex.acquire(blocking=False))
            if got[0]:
                mutex.release()

        prober = threading.Thread(target=probe)
        prober.start()
        prober.join()
        free.append(got[0])
        return 4242, "/bin/peer"

    monkeypatch.setattr(_asgi, "_this_process", lookup)

    async def use() -> None:
        async with httpx.AsyncClient(transport=transport(v, token="t"), base_url="http://127.0.0.1") as client:
            answer = await client.post(f"/api/v1/secret/{sid}/verify", json={}, headers={"Authorization": "Bearer t"})
            assert answer.json()["status"] == "authenticated"

    asyncio.run(use())
    assert free == [True]
    (record,) = _fetches(v)
    assert (record.peer_pid, record.peer_exe) == (4242, "/bin/peer")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the TCP peer is found through Linux's /proc")
def test_a_tcp_peer_lookup_gives_up_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from vault import _peer

    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        local, remote = conn.getsockname(), conn.getpeername()
        assert _peer.tcp_peer(local, remote) == os.getpid()  # this process holds the client end
        with monkeypatch.context() as m:
            m.setattr(_peer, "MAX_DESCRIPTORS", 0)  # past the bound on descriptors read: unknown
            assert _peer.tcp_peer(local, remote) is None
        ticks = iter(range(0, 10**6, 10))  # a clock past the time bound at every look (no real timing)
        monkeypatch.setattr(_peer, "_clock", lambda: float(next(ticks)))
        assert _peer.tcp_peer(local, remote) is None
    finally:
        for s in (conn, client, server):
            s.close()


_HOLD_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def _hold_access_lock(vault_path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FLOCK, str(vault_path) + ".access"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=60)


def test_a_held_access_log_lock_fails_the_first_read_instead_of_hanging(v: vault.Vault, vault_path: Path) -> None:
    sid = v.secret.create(name="key", value="the-value").id
    v.secret.fetch(sid)  # the log exists
    holder = _hold_access_lock(vault_path)
    try:
        with vault.open(vault_path, PASSPHRASE, lock_timeout=0.2) as h:
            with pytest.raises(vault.LockTimeoutError) as caught:
                h.secret.fetch(sid)  # a read that cannot be recorded does not happen
            assert "the-value" not in str(caught.value)
    finally:
        _release(holder)
    assert len(_fetches(v)) == 1


def test_close_and_exit_give_up_on_a_held_access_log_lock_with_a_warning(
    v: vault.Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vault import _accesslog

    monkeypatch.setattr(_accesslog._FLUSHER, "flush_soon", lambda log: None)  # only close writes the buffer
    sid = v.secret.create(name="key", value="v1").id
    h = vault.open(vault_path, PASSPHRASE, lock_timeout=0.2)
    h.secret.fetch(sid)  # written
    h.secret.fetch(sid)  # buffered
    holder = _hold_access_lock(vault_path)
    try:
        with caplog.at_level("WARNING", logger="vault"):
            h.close()  # bounded by lock_timeout, not by the other process
        assert "1 buffered record(s) not written" in caplog.text
    finally:
        _release(holder)
    # The same at interpreter exit: the exit handler gives up, says so, and the process ends.
    code = _HOLD + textwrap.dedent(f"""
        import sys, vault
        h = vault.open({str(vault_path)!r}, {PASSPHRASE!r}, lock_timeout=0.2)
        h.secret.fetch({sid!r})  # written: the lock is free
        print("r1", flush=True)
        sys.stdin.readline()
        h.secret.fetch({sid!r})  # buffered; the exit handler finds the lock held
        """)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    holder = None
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "r1"
        holder = _hold_access_lock(vault_path)
        child.stdin.write("\n")
        child.stdin.flush()
        _, err = child.communicate(timeout=120)  # a liveness bound: before the fix the child never exits
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        if holder is not None:
            _release(holder)
    assert child.returncode == 0, err
    assert "1 buffered record(s) not written" in err


def test_a_rekey_by_another_handle_of_this_process_keeps_the_others_buffered_reads(
    v: vault.Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vault import _accesslog

    monkeypatch.setattr(_accesslog._FLUSHER, "flush_soon", lambda log: None)  # the daemon thread writes nothing
    sid = v.secret.create(name="key", value="v1").id
    for _ in range(6):
        v.secret.fetch(sid)  # the first written, five buffered
    with caplog.at_level("WARNING", logger="vault"):
        with vault.open(vault_path, PASSPHRASE) as other:
            other.change_passphrase("a new passphrase", rekey=True)
            records = [r for r in other.access_log() if r.secret_id == sid]
        v.close()
    assert [r.pid for r in records] == [os.getpid()] * 6
    assert "not written" not in caplog.text and "lost" not in caplog.text


def test_a_failed_background_write_is_retried_without_another_read(
    v: vault.Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault import _store

    sid = v.secret.create(name="key", value="v1").id
    v.secret.fetch(sid)  # written at once
    real = _store.AccessFile.append
    failed: list[int] = []

    def once(self: _store.AccessFile, data: bytes, at: int, *, cut: bool = False) -> None:
        if not failed:
            failed.append(1)  # the disk is full for one write: the daemon thread's
            raise vault.StorageError("No space left on device")
        real(self, data, at, cut=cut)

    monkeypatch.setattr(_store.AccessFile, "append", once)
    v.secret.fetch(sid)  # buffered; nothing reads or closes v after this
    with vault.open(vault_path, PASSPHRASE) as other:  # its log reads flush only its own (empty) buffer
        deadline = time.monotonic() + 60  # a liveness bound far above the retry delays, not a timing claim
        while len([r for r in other.access_log() if r.secret_id == sid]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert failed == [1]
        assert len([r for r in other.access_log() if r.secret_id == sid]) == 2
