"""Sync against the cloud's settled rules (docs/FIDELITY.md), as tests/fakecloud.py now applies them.

The one that can silently break a synced agent: an update that leaves ``alias`` out **clears**
it (E1), so every update sync sends must carry ``alias``, even when it is None. Here the fake
cloud clears it as the platform does, and the bodies themselves are checked, so the test
fails if sync ever leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httpx")

import vault
from tests.fakecloud import FakeCloud, Request, running
from vault.sync import ChatBotKitRemote, SyncReport, sync


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with running() as c:
        yield c


def push(v: vault.Vault, cloud: FakeCloud) -> SyncReport:
    with ChatBotKitRemote(base_url=cloud.url, token=cloud.token, sleep=lambda _: None) as remote:
        report = sync(v, remote, direction="push")
    assert report.errors == () and report.conflicts == ()
    return report


def call(cloud: FakeCloud, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    headers = {"authorization": f"Bearer {cloud.token}", "content-type": "application/json"}
    return cloud.handle(Request(method, path, {}, headers, body))


def bodies(cloud: FakeCloud, action: str) -> list[dict[str, Any]]:
    return [r.body for r in cloud.log if r.method == "POST" and r.path.endswith(f"/{action}")]


def test_every_update_sync_sends_carries_the_alias_so_the_cloud_keeps_it(v: vault.Vault, cloud: FakeCloud) -> None:
    named = v.secret.create(name="OpenAI", alias="openai", type="bearer", value="sk-1")
    plain = v.secret.create(name="No alias", value="v")
    push(v, cloud)
    assert all("alias" in body for body in bodies(cloud, "create"))
    v.secret.update(named.id, description="rotated", value="sk-2")  # the alias itself is not touched
    v.secret.update(plain.id, description="also changed")
    report = push(v, cloud)
    assert len(report.updated_remote) == 2
    updates = bodies(cloud, "update")
    assert len(updates) == 2 and all("alias" in body for body in updates), updates
    assert sorted((b["alias"] for b in updates), key=str) == [None, "openai"]
    by_name = {row["name"]: row for row in cloud.secrets.values()}
    assert by_name["OpenAI"]["alias"] == "openai" and by_name["OpenAI"]["description"] == "rotated"
    assert by_name["No alias"]["alias"] is None


def test_the_fake_cloud_clears_an_alias_left_out_like_the_platform(cloud: FakeCloud) -> None:
    """The check above means something only if leaving alias out really clears it here."""
    sid = cloud.add(name="x", alias="keepme")
    call(cloud, "POST", f"/api/v1/secret/{sid}/update", {"name": "y"})
    assert cloud.secrets[sid]["alias"] is None
    status, _, body = call(cloud, "GET", "/api/v1/secret/@keepme/fetch")
    assert (status, body) == (404, {"message": "Not found", "code": "NOT_FOUND"})


def test_an_alias_changed_locally_is_pushed_and_one_removed_is_cleared(v: vault.Vault, cloud: FakeCloud) -> None:
    s = v.secret.create(name="svc", alias="old", value="v")
    push(v, cloud)
    v.secret.update(s.id, alias="new")
    push(v, cloud)
    assert [row["alias"] for row in cloud.secrets.values()] == ["new"]
    v.secret.update(s.id, alias=None)
    push(v, cloud)
    assert [row["alias"] for row in cloud.secrets.values()] == [None]


@pytest.mark.xfail(
    strict=True,
    reason="sync bug (vault/sync): the cloud drops, on update, a meta key that begins with a non-ASCII "
    "letter (FIDELITY D3); the next sync pulls that and deletes the key locally, silently",
)
def test_a_meta_key_the_cloud_drops_on_update_is_not_lost_locally(v: vault.Vault, cloud: FakeCloud) -> None:
    s = v.secret.create(name="x", meta={"émoji": 1, "plain": 2})
    push(v, cloud)
    v.secret.update(s.id, description="changed")
    push(v, cloud)
    with ChatBotKitRemote(base_url=cloud.url, token=cloud.token, sleep=lambda _: None) as remote:
        sync(v, remote, direction="both")
    assert v.secret.fetch(s.id).meta == {"émoji": 1, "plain": 2}
