"""Versions, the trash and the access log, through the public API, the stand-in's seam and the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE, Clock
from vault import _format
from vault._api import SecretApi
from vault._vault import engine_of, raw_records

DAY = 86_400_000
GOLDEN = Path(__file__).parent / "golden"


# --- versions ------------------------------------------------------------------------------------


def test_every_update_keeps_the_previous_revision(v: vault.Vault) -> None:
    s = v.secret.create(name="key", value="v1", alias="key", meta={"n": 1})
    assert s.revision == 1
    v.secret.update(s.id, value="v2")
    v.secret.update(s.id, description="no value change")
    history = v.secret.history("@key")
    assert [h.revision for h in history] == [3, 2, 1]
    assert all(h.value is None for h in history)
    assert v.secret.fetch(s.id, revision=1).value == "v1"
    assert v.secret.fetch(s.id, revision=2).value == "v2"
    assert v.secret.fetch(s.id, revision=3).description == "no value change"
    # The cloud's item shape does not change.
    assert "revision" not in history[0].to_dict() and "revision" not in history[0].to_dict(reveal=True)
    with pytest.raises(vault.NotFoundError):
        v.secret.fetch(s.id, revision=9)
    with pytest.raises(vault.InvalidRequestError):
        v.secret.fetch(s.id, revision="1")  # type: ignore[arg-type]


def test_restore_makes_a_new_current_revision(v: vault.Vault) -> None:
    s = v.secret.create(name="key", value="v1", alias="a1", type="bearer")
    v.secret.update(s.id, value="v2", alias="a2", type="plain")
    restored = v.secret.restore(s.id, 1)
    assert restored.revision == 3
    got = v.secret.fetch("@a1")
    assert (got.value, got.type, got.alias, got.created_at) == ("v1", "bearer", "a1", s.created_at)
    assert [h.revision for h in v.secret.history(s.id)] == [3, 2, 1]
    with pytest.raises(vault.InvalidRequestError):
        v.secret.restore(s.id, 3)  # already current
    # A restored alias must be free.
    v.secret.update(s.id, alias="a3")
    v.secret.create(name="other", alias="a1")
    with pytest.raises(vault.ConflictError):
        v.secret.restore(s.id, 1)


def test_retention_is_applied_by_compaction(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v0")
    for i in range(1, 15):
        v.secret.update(s.id, value=f"v{i}")
    assert len(v.secret.history(s.id)) == 11  # the default keeps 10 past revisions (and reads say so at once)
    before = vault_path.stat().st_size
    v.set_retention(history=3)
    assert [h.revision for h in v.secret.history(s.id)] == [15, 14, 13, 12]
    v.compact()
    assert vault_path.stat().st_size < before
    with vault.open(vault_path, PASSPHRASE) as again:
        assert [h.revision for h in again.secret.history(s.id)] == [15, 14, 13, 12]
        assert again.secret.fetch(s.id, revision=12).value == "v11"
        assert again.retention() == vault.Retention(history=3)


def test_history_can_be_turned_off(v: vault.Vault, vault_path: Path) -> None:
    v.set_retention(history=0)
    s = v.secret.create(name="key", value="v0")
    v.secret.update(s.id, value="v1")
    assert [h.revision for h in v.secret.history(s.id)] == [2]
    with pytest.raises(vault.NotFoundError):
        v.secret.fetch(s.id, revision=1)
    v.compact()
    engine = engine_of(v)
    with engine.reading() as index:
        assert not index.history


def test_age_retention_and_trash_retention_by_compaction(vault_path: Path, clock: Clock) -> None:
    now = [1_800_000_000_000]
    clock.source = lambda: now[0]
    with vault.init(vault_path, PASSPHRASE, kdf=FAST, clock=clock) as v:
        v.set_retention(history_days=7, trash_days=2)
        s = v.secret.create(name="old", value="v1")
        v.secret.update(s.id, value="v2")  # revision 1 stops being current now
        gone = v.secret.create(name="gone")
        v.secret.delete(gone.id)
        now[0] += 3 * DAY
        assert [h.revision for h in v.secret.history(s.id)] == [2, 1]
        assert v.secret.list(deleted=True).items == []  # past the trash's 2 days: gone for reads
        with pytest.raises(vault.NotFoundError):
            v.secret.undelete(gone.id)
        now[0] += 5 * DAY
        assert [h.revision for h in v.secret.history(s.id)] == [2]
        v.compact()
    with vault.open(vault_path, PASSPHRASE, clock=clock) as v:
        with engine_of(v).reading() as index:
            assert not index.history and not index.trash
        assert v.secret.fetch(s.id).value == "v2"


# --- the trash -------------------------------------------------------------------------------------


def test_delete_goes_to_the_trash_and_undelete_brings_it_back(v: vault.Vault) -> None:
    s = v.secret.create(name="key", value="v1", alias="key")
    deleted = v.secret.delete("@key")
    assert deleted.id == s.id
    with pytest.raises(vault.NotFoundError):
        v.secret.fetch(s.id)
    with pytest.raises(vault.NotFoundError):
        v.secret.update(s.id, description="x")
    assert v.secret.list().items == [] and len(v) == 0
    trash = v.secret.list(deleted=True).items
    assert [t.id for t in trash] == [s.id] and trash[0].deleted_at is not None
    # Its alias is free meanwhile; taken, it comes back without one.
    other = v.secret.create(name="other", alias="key")
    back = v.secret.undelete(s.id)
    assert back.alias is None and back.revision == 2
    assert v.secret.fetch(s.id).value == "v1"
    assert v.secret.fetch("@key").id == other.id
    assert v.secret.list(deleted=True).items == []
    with pytest.raises(vault.NotFoundError):
        v.secret.undelete(s.id)


def test_purge_and_delete_purge_are_final(v: vault.Vault, vault_path: Path) -> None:
    a = v.secret.create(name="a", value="1")
    b = v.secret.create(name="b", value="2")
    v.secret.update(a.id, value="1b")
    v.secret.delete(a.id)
    v.secret.purge(a.id)
    v.secret.delete(b.id, purge=True)
    assert v.secret.list(deleted=True).items == []
    for sid in (a.id, b.id):
        with pytest.raises(vault.NotFoundError):
            v.secret.undelete(sid)
        with pytest.raises(vault.NotFoundError):
            v.secret.history(sid)
    v.compact()
    data = vault_path.read_bytes()
    with vault.open(vault_path, PASSPHRASE) as again:
        assert len(again) == 0 and again.secret.list(deleted=True).items == []
    assert data == vault_path.read_bytes()


def test_the_trash_and_history_are_invisible_to_the_stand_in_and_the_seam(v: vault.Vault) -> None:
    s = v.secret.create(name="key", type="jwt", value="v1", alias="key")
    v.secret.update(s.id, value="v2")
    v.secret.delete(s.id)
    api = SecretApi(v)
    for call in (api.fetch, api.verify, api.mint, api.revoke):
        with pytest.raises(vault.NotFoundError):
            call(s.id)
    assert api.list(api_query()) == {"items": []}
    raw = raw_records(v)
    assert raw.all() == []
    for seam in (raw.lookup, raw.fetch, raw.fetch_for_use):
        with pytest.raises(vault.NotFoundError):
            seam(s.id)
    with pytest.raises(vault.NotFoundError):
        raw.delete(s.id)


def api_query() -> object:
    from vault._api import ListQuery

    return ListQuery()


def test_sync_treats_a_trashed_secret_as_deleted(v: vault.Vault) -> None:
    pytest.importorskip("httpx")
    from tests.fakecloud import running
    from vault.sync import ChatBotKitRemote, sync

    with running() as cloud:
        s = v.secret.create(name="key", value="v1")
        kept = v.secret.create(name="kept", value="v2")
        with ChatBotKitRemote(base_url=cloud.url, token=cloud.token, sleep=lambda _s: None) as r:
            sync(v, r)
            assert {row["name"] for row in cloud.secrets.values()} == {"key", "kept"}
            v.secret.delete(s.id)  # to the trash
            v.secret.update(kept.id, value="v3")
            sync(v, r, direction="push")
            assert {row["name"] for row in cloud.secrets.values()} == {"kept"}
            # A deletion in the cloud reaches the vault as a trashed (recoverable) secret.
            rid = next(k for k, row in cloud.secrets.items() if row["name"] == "kept")
            del cloud.secrets[rid]
            sync(v, r, direction="pull")
        assert len(v) == 0
        assert {t.name for t in v.secret.list(deleted=True).items} == {"key", "kept"}
        assert v.secret.history(kept.id)[0].deleted_at is not None
        v.secret.undelete(kept.id)
        assert v.secret.fetch(kept.id).value == "v3"


# --- format versions ------------------------------------------------------------------------------


def _golden_copy(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copyfile(GOLDEN / name, copy)
    copy.chmod(0o600)
    return copy


def test_v1_read_only_use_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    copy = _golden_copy(tmp_path, "v1-log.cbkv")
    before = copy.read_bytes()
    expected = json.loads((GOLDEN / "v1-expected.json").read_text())["v1-log.cbkv"]
    with vault.open(copy, expected["passphrase"]) as v:
        got = [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")]
        assert got == expected["secrets"]
        # The v1 log's superseded records read as history (the rotated payment key).
        pay = v.secret.fetch("@payment")
        assert v.secret.fetch(pay.id, revision=pay.revision - 1).value == "sk_live_12345"
        assert len(v.access_log()) == len(got) + 2  # log-new, each value read (one secret has none), pay's past
    assert copy.read_bytes() == before
    assert before[8] == 1


def test_v1_written_is_upgraded_to_the_current_version(tmp_path: Path) -> None:
    copy = _golden_copy(tmp_path, "v1-log.cbkv")
    expected = json.loads((GOLDEN / "v1-expected.json").read_text())["v1-log.cbkv"]
    with vault.open(copy, expected["passphrase"]) as v:
        pay = v.secret.fetch("@payment")
        v.secret.delete(pay.id)  # the first write: the file is rewritten in the current version (3)
        assert copy.read_bytes()[8] == 3
    with vault.open(copy, expected["passphrase"]) as v:
        assert [t.id for t in v.secret.list(deleted=True)] == [pay.id]
        assert [h.revision for h in v.secret.history(pay.id)] == [pay.revision, pay.revision - 1]
        v.secret.undelete(pay.id)
        got = [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")]
        assert [g["value"] for g in got] == [s["value"] for s in expected["secrets"]]


def test_v2_golden_files_open_with_exact_contents(tmp_path: Path) -> None:
    expected = json.loads((GOLDEN / "v2-expected.json").read_text())
    for name, case in expected.items():
        copy = _golden_copy(tmp_path, name)
        assert copy.read_bytes()[8] == 2
        with vault.open(copy, case["passphrase"]) as v:
            got = [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")]
            assert got == case["secrets"], name
            history = {
                s.id: [[h.revision, v.secret.fetch(s.id, revision=h.revision).value] for h in v.secret.history(s.id)]
                for s in v.secret.list(order="asc")
            }
            assert history == case["history"], name
            assert [t.id for t in v.secret.list(deleted=True, order="asc")] == case["trash"], name
            assert v.retention().to_setting() == case["retention"], name


def test_v2_writer_still_writes_the_golden_bytes(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_v2", GOLDEN / "make_v2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_all(tmp_path)
    for name in json.loads((GOLDEN / "v2-expected.json").read_text()):
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name


# --- the access log --------------------------------------------------------------------------------


def test_every_value_read_is_logged(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v1", alias="key", type="bearer")
    meta_only = v.secret.create(name="no value")
    v.secret.fetch("@key")
    v.secret.fetch(meta_only.id)  # no value: nothing read
    raw_records(v).fetch(s.id)
    raw_records(v).fetch_for_use(s.id)
    SecretApi(v).verify(s.id)
    with vault.access_context("run", peer_pid=4242, peer_exe="/bin/agent"):
        v.secret.fetch(s.id)
    records = v.access_log()
    assert [r.operation for r in records] == ["log-new", "fetch", "fetch", "use", "use", "run"]
    assert all(r.secret_id == s.id and r.revision == 1 for r in records[1:])
    assert records[-1].peer_pid == 4242 and records[-1].peer_exe == "/bin/agent"
    assert all(r.pid == os.getpid() for r in records)
    assert [r.seq for r in records] == list(range(6))
    assert v.access_log("@key", since=records[2].at)[0].at >= records[2].at
    # Nothing in clear: no id, no operation name in the file.
    data = Path(str(vault_path) + ".access").read_bytes()
    assert s.id.encode() not in data and b"fetch" not in data and b"agent" not in data


def test_the_access_log_can_be_turned_off(v: vault.Vault) -> None:
    s = v.secret.create(name="key", value="v1")
    v.set_retention(access_log=False)
    v.secret.fetch(s.id)
    assert v.access_log() == []


def _log_file(vault_path: Path) -> Path:
    return Path(str(vault_path) + ".access")


def _frames(data: bytes) -> list[tuple[int, int]]:
    from vault._accesslog import HEADER_SIZE

    out, pos = [], HEADER_SIZE
    while pos < len(data):
        (length,) = _format.FRAME_HEAD.unpack_from(data, pos)[:1]
        end = pos + 8 + length + 32
        out.append((pos, end))
        pos = end
    return out


def test_a_removed_or_edited_access_record_is_detected(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v1")
    for _ in range(4):
        v.secret.fetch(s.id)
        v.access_log()  # writes the buffer: one frame per read here (batches have their own test)
    path = _log_file(vault_path)
    data = path.read_bytes()
    frames = _frames(data)
    assert len(frames) == 5
    edited = bytearray(data)
    edited[frames[2][0] + 40] ^= 1
    removed = data[: frames[2][0]] + data[frames[2][1] :]
    swapped = data[: frames[1][0]] + data[frames[2][0] : frames[2][1]] + data[frames[1][0] : frames[1][1]] + data[
        frames[3][0] :
    ]
    for bad in (bytes(edited), removed, swapped, data[:40] + bytes([data[40] ^ 1]) + data[41:]):
        path.write_bytes(bad)
        with pytest.raises(vault.CorruptVaultError):
            v.access_log()
    # A cut at a record boundary reads as fewer reads (the rollback class, as for the vault file).
    path.write_bytes(data[: frames[3][0]])
    assert len(v.access_log()) == 3
    # A torn last record (a crash mid-append) is ignored, and cut by the next append.
    path.write_bytes(data[: frames[4][0] + 30])
    assert len(v.access_log()) == 4
    engine_of(v).access.forget_after_fork()  # a fresh process's view
    v.secret.fetch(s.id)
    assert [r.seq for r in v.access_log()] == [0, 1, 2, 3, 4]


def test_a_damaged_access_log_is_set_aside_and_the_new_log_says_so(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v1")
    v.secret.fetch(s.id)
    path = _log_file(vault_path)
    data = bytearray(path.read_bytes())
    data[50] ^= 1  # the header
    path.write_bytes(bytes(data))
    engine_of(v).access.forget_after_fork()
    assert v.secret.fetch(s.id).value == "v1"  # reads go on
    assert [r.operation for r in v.access_log()] == ["log-reset", "fetch"]
    assert Path(str(vault_path) + ".access.damaged").read_bytes() == bytes(data)


def test_rotation_keeps_the_chain_and_bounds_the_size(
    v: vault.Vault, vault_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault import _accesslog

    monkeypatch.setattr(_accesslog, "SEGMENT_MAX", 2048)
    s = v.secret.create(name="key", value="v1")
    log = engine_of(v).access
    for _ in range(60):
        v.secret.fetch(s.id)
        log.flush()
        log.sync_background()  # the daemon thread's work, now
    records = v.access_log()
    assert [r.seq for r in records] == list(range(records[0].seq, 61))
    assert records[0].seq > 0  # older segments rotated out
    assert _log_file(vault_path).stat().st_size <= 2048 + 300
    old = Path(str(vault_path) + ".access.old")
    cut = old.read_bytes()
    old.write_bytes(cut[:-208])
    with pytest.raises(vault.CorruptVaultError):
        v.access_log()
    old.unlink()
    with pytest.raises(vault.CorruptVaultError):
        v.access_log()


def test_a_read_that_cannot_be_logged_does_not_happen(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v1")
    path = _log_file(vault_path)
    path.mkdir()  # not a regular file: the record cannot be written
    with pytest.raises(vault.StorageError):
        v.secret.fetch(s.id)
    path.rmdir()
    assert v.secret.fetch(s.id).value == "v1"


def test_rekey_reseals_the_access_log(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v1")
    v.secret.fetch(s.id)
    v.change_passphrase("another passphrase", rekey=True)
    v.secret.fetch(s.id)
    assert [r.operation for r in v.access_log()] == ["log-new", "fetch", "fetch"]
    with vault.open(vault_path, "another passphrase") as again:
        assert [r.seq for r in again.access_log()] == [0, 1, 2]


def test_several_processes_append_to_one_chain(v: vault.Vault, vault_path: Path) -> None:
    s = v.secret.create(name="key", value="v1")
    with vault.open(vault_path, PASSPHRASE) as other:
        for _ in range(3):
            v.secret.fetch(s.id)
            other.secret.fetch(s.id)
    code = f"import vault; v = vault.open({str(vault_path)!r}, {PASSPHRASE!r}); v.secret.fetch({s.id!r}); v.close()"
    subprocess.run([sys.executable, "-c", code], check=True)
    records = v.access_log()
    assert [r.seq for r in records] == list(range(8))
    assert records[-1].pid != os.getpid()


# --- the console script ------------------------------------------------------------------------------


def _cli(path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cbk-vault")
    env = {**os.environ, "CBK_VAULT_PATH": str(path), "CBK_VAULT_PASSPHRASE": PASSPHRASE}
    env.pop("CBK_VAULT_AGENT_SOCK", None)
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-c", "from vault.cli import main; main()", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_history_restore_trash_and_log(vault_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    assert _cli(vault_path, "create", "--name", "k", "--alias", "k", "--value-stdin", stdin="v1").returncode == 0
    assert _cli(vault_path, "update", "@k", "--value-stdin", stdin="v2").returncode == 0
    hist = json.loads(_cli(vault_path, "history", "@k", "--json").stdout)
    assert [i["revision"] for i in hist["items"]] == [2, 1]
    assert "revision" in _cli(vault_path, "history", "@k").stdout.splitlines()[0].lower()
    assert _cli(vault_path, "fetch", "@k", "--revision", "1", "--reveal").stdout == "v1\n"
    assert _cli(vault_path, "restore", "@k", "1").returncode == 0
    assert _cli(vault_path, "fetch", "@k", "--reveal").stdout == "v1\n"
    assert _cli(vault_path, "delete", "@k", "--yes").returncode == 0
    trash = json.loads(_cli(vault_path, "trash", "list", "--json").stdout)["items"]
    assert [t["name"] for t in trash] == ["k"] and trash[0]["deletedAt"]
    assert _cli(vault_path, "fetch", "@k").returncode == 1
    sid = trash[0]["id"]
    assert _cli(vault_path, "trash", "restore", sid).returncode == 0
    assert _cli(vault_path, "fetch", "@k", "--reveal").stdout == "v1\n"
    assert _cli(vault_path, "delete", "@k", "--yes").returncode == 0
    assert _cli(vault_path, "trash", "purge", sid, "--yes").returncode == 0
    assert json.loads(_cli(vault_path, "trash", "list", "--json").stdout)["items"] == []
    assert _cli(vault_path, "trash", "restore", sid).returncode == 1
    s2 = _cli(vault_path, "create", "--name", "p", "--value-stdin", stdin="x")
    assert s2.returncode == 0
    assert _cli(vault_path, "delete", "p", "--purge", "--yes").returncode == 0
    assert json.loads(_cli(vault_path, "trash", "list", "--json").stdout)["items"] == []
    log = json.loads(_cli(vault_path, "log", "--json").stdout)["items"]
    assert [r["operation"] for r in log] == ["log-new", "fetch", "fetch", "fetch"]
    assert {r["secretId"] for r in log[1:]} == {sid}
    assert json.loads(_cli(vault_path, "log", sid, "--since", "1h", "--json").stdout)["items"] == log[1:]
    assert "fetch" in _cli(vault_path, "log").stdout
    assert _cli(vault_path, "log", "--since", "yesterday-ish").returncode == 2


def test_console_script_run_is_logged_as_run(vault_path: Path) -> None:
    vault.init(vault_path, PASSPHRASE, kdf=FAST).close()
    _cli(vault_path, "create", "--name", "k", "--meta", "env=CBK_TEST_VALUE", "--value-stdin", stdin="v1")
    out = _cli(vault_path, "run", "--", sys.executable, "-c", "import os; print(os.environ['CBK_TEST_VALUE'])")
    assert out.stdout == "v1\n"
    with vault.open(vault_path, PASSPHRASE) as v:
        assert [r.operation for r in v.access_log()][-1] == "run"
