"""Concurrent sync against a hostile (or merely racing) cloud and vault, in memory.

Each test is a reviewer's reproducer turned into an assertion: a cloud that answers two creates
with one id, a value rewritten by another handle while the listing is in flight, a fatal error
from the round's own vault commit, and ``repr`` of what is in flight.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import vault
import vault._vault as vault_module
import vault.sync._run as run_module
from tests.conftest import PASSPHRASE
from vault.errors import RemoteNotFoundError, RemoteProtocolError, StorageError
from vault.sync import sync
from vault.sync._plan import Base, CreateRemote, Link, LocalRecord, RemoteRecord, SyncState, UpdateRemote, plan
from vault.sync._run import _Push, _Scanned

_ITEM_KEYS = ("name", "description", "kind", "type", "alias", "meta", "config", "visibility", "blueprintId")


class Cloud:
    """A thread-safe in-memory cloud that keeps values (the Remote protocol, nothing more)."""

    def __init__(self, token: str = "tok-123") -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.values: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.token = token
        self.on_list: Callable[[], None] | None = None
        self.calls: list[tuple[str, str]] = []
        self.stamp = itertools.count(1_700_000_000_000)

    def token_digest(self, digest: Callable[[str], str]) -> str:
        return digest(self.token)

    def is_token(self, value: str | None) -> bool:
        return bool(value) and value is not None and value.strip() == self.token

    def list_all(self) -> list[dict[str, Any]]:
        hook, self.on_list = self.on_list, None
        if hook is not None:
            hook()
        with self.lock:
            return [dict(i) for i in self.items.values()]

    def fetch(self, secret_id: str) -> dict[str, Any]:
        with self.lock:
            if secret_id not in self.items:
                raise RemoteNotFoundError("not found", code="NOT_FOUND", status=404)
            return dict(self.items[secret_id])

    def store(self, rid: str, body: Mapping[str, Any]) -> None:
        t = next(self.stamp)
        item = {k: body.get(k) for k in _ITEM_KEYS}
        item.update(id=rid, createdAt=self.items.get(rid, {}).get("createdAt", t), updatedAt=t)
        self.items[rid] = item
        if "value" in body:
            self.values[rid] = body["value"]

    def create(self, body: Mapping[str, Any], *, marker: str | None = None) -> str:
        with self.lock:
            rid = f"r{next(self.ids)}"
            self.store(rid, body)
            self.calls.append(("create", rid))
            return rid

    def update(self, secret_id: str, body: Mapping[str, Any]) -> str:
        with self.lock:
            if secret_id not in self.items:
                raise RemoteNotFoundError("not found", code="NOT_FOUND", status=404)
            self.store(secret_id, body)
            self.calls.append(("update", secret_id))
            return secret_id

    def delete(self, secret_id: str) -> None:
        with self.lock:
            if secret_id not in self.items:
                raise RemoteNotFoundError("not found", code="NOT_FOUND", status=404)
            del self.items[secret_id]
            self.values.pop(secret_id, None)
            self.calls.append(("delete", secret_id))


class OneId(Cloud):
    """Answers every create with the same id (each create overwrites the one secret)."""

    def create(self, body: Mapping[str, Any], *, marker: str | None = None) -> str:
        with self.lock:
            self.store("same", body)
            self.calls.append(("create", "same"))
            return "same"


def _links(v: vault.Vault) -> dict[str, str]:
    """Local id -> linked cloud id."""
    out: dict[str, str] = {}
    for sec, ext, _ in vault_module.raw_records(v).all():
        link = ext.get(run_module.EXT_KEY)
        if isinstance(link, dict) and isinstance(link.get("rid"), str):
            out[sec.id] = link["rid"]
    return out


# --- 1: one cloud id for two creates ----------------------------------------------------------


def test_a_create_answered_with_an_id_already_linked_is_refused_for_that_secret(v: vault.Vault) -> None:
    a = v.secret.create(name="a", value="A")
    b = v.secret.create(name="b", value="B")
    c = v.secret.create(name="c", value="C")
    cloud = OneId()
    first = sync(v, cloud, direction="push", concurrency=2)
    assert len(first.created_remote) == 1
    assert [e.code for e in first.errors] == [RemoteProtocolError.code] * 2  # the round went on
    assert {e.local_id for e in first.errors} | {first.created_remote[0].local_id} == {a.id, b.id, c.id}
    links = _links(v)
    assert list(links.values()) == ["same"]  # never two local records on one cloud id
    assert all("A" not in e.message and "B" not in e.message for e in first.errors)

    # The cloud's one secret holds the last create's body: to the next sync that is a cloud edit of
    # the one linked record (a pull, as for any cloud edit), and the other two are untouched. One
    # cloud delete then deletes that one record, never two.
    linked_id = next(iter(links))
    unlinked = {a.id: "a", b.id: "b", c.id: "c"}
    del unlinked[linked_id]
    fair = Cloud()
    fair.items, fair.values = cloud.items, cloud.values
    sync(v, fair)
    assert len(v.secret.list()) == 3
    assert all(v.secret.fetch(sid).name == name for sid, name in unlinked.items())
    assert list(_links(v).values()).count("same") == 1
    with fair.lock:
        del fair.items["same"]
    sync(v, fair)
    assert {s.id for s in v.secret.list()} == set(unlinked)


def test_a_create_answered_with_an_id_only_the_link_index_holds_is_refused(v: vault.Vault) -> None:
    a = v.secret.create(name="a", value="A")
    sync(v, OneId(), direction="push")
    v.secret.delete(a.id)  # its link lives on in the index only (a tombstone)
    d = v.secret.create(name="d", value="D")
    again = sync(v, OneId(), direction="push")  # an empty cloud that still answers "same"
    assert [(e.local_id, e.code) for e in again.errors] == [(d.id, RemoteProtocolError.code)]
    assert _links(v) == {}


def test_the_planner_flags_two_local_records_linked_to_one_cloud_id() -> None:
    base = Base("f", None, None, True, 1)
    link = Link("same", base, "vr:a")
    local = [
        LocalRecord("a", "f", None, None, name="a", link=link),
        LocalRecord("b", "g", None, None, name="b", link=link),
    ]
    remote = [RemoteRecord("same", "h", 2, name="x", ref="vr:b")]
    for direction in ("push", "pull", "both"):
        for prefer in (None, "local", "remote"):
            p = plan(SyncState("vr", {"same": ("a", 1)}), local, remote, direction=direction, prefer=prefer)
            assert p.actions == ()  # neither overwrites the other, and the cloud secret is not pulled as new
            assert {(c.reason, c.local_id) for c in p.conflicts} == {("link-shared", "a"), ("link-shared", "b")}
            assert all(c.resolution is None for c in p.conflicts)
            # Gone from the cloud: one delete there must not delete both here.
            gone = plan(SyncState("vr", {"same": ("a", 1)}), local, [], direction=direction, prefer=prefer)
            assert gone.actions == ()
            assert {c.reason for c in gone.conflicts} == {"link-shared"}


def test_two_records_on_one_cloud_id_stay_apart_in_a_real_sync(v: vault.Vault) -> None:
    a = v.secret.create(name="a", value="A")
    b = v.secret.create(name="b", value="B")
    cloud = Cloud()
    sync(v, cloud)
    raw = vault_module.raw_records(v)
    _, ext_a = raw.fetch(a.id)
    _, ext_b = raw.fetch(b.id)
    raw.put(b.id, {}, ext={**ext_b, run_module.EXT_KEY: ext_a[run_module.EXT_KEY]})  # b now claims a's cloud id
    report = sync(v, cloud, prefer="remote")
    assert {c.reason for c in report.conflicts} == {"link-shared"} and not report.ok
    assert sorted(s.name for s in v.secret.list()) == ["a", "b"]
    rid = _links(v)[a.id]
    with cloud.lock:
        del cloud.items[rid]
    sync(v, cloud, prefer="remote")
    assert sorted(s.name for s in v.secret.list()) == ["a", "b"]


# --- 2: a value rewritten while the listing is in flight ---------------------------------------


@pytest.mark.parametrize("last", ["W", "tok-123"])
def test_a_value_rewritten_during_the_listing_never_pairs_with_the_old_box(
    v: vault.Vault, vault_path: Path, last: str
) -> None:
    s = v.secret.create(name="db", kind="shared", value="Y")
    cloud = Cloud()
    rid = sync(v, cloud, direction="push").created_remote[0].remote_id
    assert rid is not None
    v.secret.update(s.id, value="Y2")
    sync(v, cloud, direction="push")  # the value is cached
    v.secret.update(s.id, value=last)  # changed since the last sync: this run decrypts it
    with vault.open(vault_path, PASSPHRASE) as other:

        def rewrite() -> None:  # runs while the listing is in flight: after the scan read the tags
            other.secret.update(s.id, value="Z")

        cloud.on_list = rewrite
        sync(v, cloud, direction="push")
    assert cloud.values[rid] == "Z"
    old = [h.revision for h in v.secret.history(s.id) if v.secret.fetch(s.id, revision=h.revision).value == last]
    v.secret.restore(s.id, old[-1])  # that box verbatim: its tag is the one the scan read
    report = sync(v, cloud, direction="push")
    if last == "W":
        assert [c.remote_id for c in report.updated_remote] == [rid]
        assert cloud.values[rid] == "W"
    else:  # the API token is never pushed, however it came back
        assert cloud.values[rid] == "Z"
        assert not report.updated_remote
    # The cache never pairs a tag with another box's value.
    raw = vault_module.raw_records(v)
    tags = raw.value_tags()
    for sec, ext, _ in raw.all():
        cached = run_module._value_cache(ext)
        if cached is not None and cached[0] == tags.get(sec.id):
            fp = run_module._Fingerprints(bytes.fromhex(raw.setting(run_module.CONFIG_SETTING)["key"]))
            assert cached[1] == fp.value(raw.fetch(sec.id)[0].value)


# --- 7: a fatal error from the round's own vault commit -----------------------------------------


class Gated(Cloud):
    """The first create answers at once; every later one waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.sent = 0
        self.count_lock = threading.Lock()

    def create(self, body: Mapping[str, Any], *, marker: str | None = None) -> str:
        with self.count_lock:
            self.sent += 1
            first = self.sent == 1
        if not first:
            assert self.gate.wait(30)
        return super().create(body, marker=marker)


def test_a_fatal_error_from_the_rounds_own_commit_sends_nothing_more(
    v: vault.Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(12):
        v.secret.create(name=f"s{i}", value="x")
    cloud = Gated()
    failed = threading.Event()
    real_batch = vault_module.Vault.batch

    @contextlib.contextmanager
    def failing_batch(self: vault.Vault) -> Iterator[None]:
        if threading.current_thread() is threading.main_thread():
            failed.set()
            raise StorageError("No space left on device")
        with real_batch(self):
            yield

    real_wait = concurrent.futures.wait

    def wait(fs: Any, timeout: float | None = None, return_when: str = "ALL_COMPLETED") -> Any:
        # The gate opens only once the main thread waits after the failed commit: by then the
        # stop must be raised, so no write still queued for the workers may go out.
        if failed.is_set():
            cloud.gate.set()
        return real_wait(fs, timeout=timeout, return_when=return_when)

    monkeypatch.setattr(vault_module.Vault, "batch", failing_batch)
    monkeypatch.setattr(run_module, "wait", wait)
    with pytest.raises(StorageError):
        sync(v, cloud, direction="push", concurrency=2)
    cloud.gate.set()
    # The first create, the one blocked on its worker, and at most one a worker took before the stop.
    assert cloud.sent <= 3


def test_a_fatal_error_while_preparing_sends_nothing_prepared_after_it(
    v: vault.Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(6):
        v.secret.create(name=f"s{i}", value="x")
    cloud = Cloud()
    real_prepare = run_module._Runner._prepare
    prepared: list[str] = []

    def prepare(self: run_module._Runner, a: Any) -> _Push:
        if len(prepared) == 3:
            raise StorageError("disk gone")
        prepared.append(a.local_id)
        return real_prepare(self, a)

    monkeypatch.setattr(run_module._Runner, "_prepare", prepare)
    with pytest.raises(StorageError):
        sync(v, cloud, direction="push", concurrency=2)
    assert cloud.calls == []  # a stop is a stop: not even the writes read before it


# --- 8: repr of what is in flight ---------------------------------------------------------------


def test_repr_of_in_flight_objects_never_holds_the_value(v: vault.Vault) -> None:
    value, csec = "sk-very-secret-value", "cs-very-secret"
    s = v.secret.create(name="n", kind="shared", value=value, config={"clientId": "id", "clientSecret": csec})
    sec, ext = vault_module.raw_records(v).fetch(s.id)
    body = run_module._body(sec, "vr:x", send_value=True)
    assert body["value"] == value  # what is sent is intact
    base = Base("f", "v", "s", True, 1)
    pushes = [
        _Push(CreateRemote(s.id, "n"), sec, ext, body, "vr:x", True),
        _Push(UpdateRemote(s.id, "r1", base, True, "vr:x", "n"), sec, ext, body, "vr:x", True, base),
    ]
    scanned = _Scanned(sec, ext, None, "f", None, None)
    for obj in [*pushes, scanned]:
        for text in (repr(obj), str(obj)):
            assert value not in text and csec not in text
    key = bytes(range(32))
    cfg = run_module._Config("ref", key)
    assert key.hex() not in repr(cfg) and repr(key) not in repr(cfg)
