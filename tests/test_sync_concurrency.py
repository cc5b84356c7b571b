"""Sync with several cloud writes in flight, against the stand-in under uvicorn on loopback.

What docs/SYNC.md "Concurrency" promises: never more than ``concurrency`` requests at once,
every worker holding off while one sleeps out a 429, and a push killed at any point (SIGKILL,
four writes in flight) that a rerun finishes with no duplicate and no loss.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx

import vault
from tests.conftest import PASSPHRASE
from vault.sync import ChatBotKitRemote, SyncReport, sync
from vault.sync._client import MAX_CONCURRENCY
from vault.sync._run import DEFAULT_CONCURRENCY
from vault.testing import StandInServer, memory_vault, serve

MARKER = "cbkVaultRef"


@pytest.fixture
def server() -> Iterator[StandInServer]:
    with serve() as s:
        yield s


class Counting(httpx.BaseTransport):
    """Real HTTP to the stand-in, counting the requests in flight at once.

    The first writes are held until ``gather`` requests are in flight together (or 10 s pass),
    so a pool that can run that many at once is seen doing so; later ones pass straight on.
    """

    def __init__(self, gather: int = 1) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Condition()
        self._gather = gather
        self.in_flight = 0
        self.peak = 0
        self.started = 0
        self.answer: Any = None  # (request) -> httpx.Response | None: a scripted answer instead

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.in_flight += 1
            self.started += 1
            self.peak = max(self.peak, self.in_flight)
            if self._gather > 1 and request.method == "POST":  # a write: the listing goes alone
                self._lock.notify_all()
                self._lock.wait_for(lambda: self.in_flight >= self._gather, timeout=10)
                self._gather = 1
        try:
            scripted = self.answer(request) if self.answer is not None else None
            return scripted if scripted is not None else self._inner.handle_request(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        self._inner.close()


def remote(server: StandInServer, **kw: Any) -> ChatBotKitRemote:
    kw.setdefault("sleep", lambda _s: None)
    return ChatBotKitRemote(server.token, server.base_url, **kw)


def cloud_items(server: StandInServer) -> list[vault.Secret]:
    return [s for s, _, _ in vault._vault.raw_records(server.vault).all()]


def assert_one_copy_each(v: vault.Vault, server: StandInServer, ids: list[str]) -> None:
    """Every local secret is in the cloud exactly once, with its value; the vault is intact."""
    items = cloud_items(server)
    markers = [s.meta[MARKER].split(":")[1] for s in items]
    assert sorted(markers) == sorted(ids), "a duplicate or a loss in the cloud"
    by_marker = {s.meta[MARKER].split(":")[1]: s.id for s in items}
    for lid in ids:
        mine = v.secret.fetch(lid)
        want = mine.value if mine.kind == "shared" else None  # the cloud keeps no personal value
        assert server.vault.secret.fetch(by_marker[lid]).value == want
    assert sync(v, remote(server)) == SyncReport(direction="both")  # converged: nothing left to do


def test_the_default_is_small_and_out_of_range_is_refused(v: vault.Vault, server: StandInServer) -> None:
    assert DEFAULT_CONCURRENCY == 4
    for call in (sync, vault.Vault.sync):
        assert inspect.signature(call).parameters["concurrency"].default == DEFAULT_CONCURRENCY
    for bad in (0, MAX_CONCURRENCY + 1, 2.0, True):
        with pytest.raises(vault.InvalidRequestError):
            sync(v, remote(server), concurrency=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("concurrency", [1, 3, DEFAULT_CONCURRENCY])
def test_never_more_than_concurrency_requests_in_flight(
    v: vault.Vault, server: StandInServer, concurrency: int
) -> None:
    ids = [v.secret.create(name=f"s{i}", value=f"v{i}").id for i in range(24)]
    counting = Counting(gather=concurrency)
    with remote(server, transport=counting) as r:
        report = sync(v, r, direction="push", concurrency=concurrency)
    assert report.ok and len(report.created_remote) == 24
    assert counting.peak == concurrency  # reached (the first ones were held together) and never passed
    # Updates go the same way, each after its pending base is saved.
    for lid in ids:
        v.secret.update(lid, description="rotated", value="v2-" + lid)
    counting = Counting(gather=concurrency)
    with remote(server, transport=counting) as r:
        report = sync(v, r, direction="push", concurrency=concurrency)
    assert report.ok and len(report.updated_remote) == 24 and counting.peak == concurrency
    assert_one_copy_each(v, server, ids)


def test_429_with_retry_after_holds_every_worker_back(v: vault.Vault, server: StandInServer) -> None:
    ids = [v.secret.create(name=f"s{i}", value=f"v{i}").id for i in range(40)]
    counting = Counting()
    creates = [0]
    lock = threading.Lock()

    def throttle_the_tenth_create(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith("/create"):
            return None
        with lock:
            creates[0] += 1
            if creates[0] != 10:
                return None
        body = b'{"message":"Too many requests","code":"TOO_MANY_REQUESTS"}'
        return httpx.Response(429, headers={"retry-after": "3", "content-type": "application/json"}, content=body)

    counting.answer = throttle_the_tenth_create
    sent_while_held: list[int] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        # The worker told to wait sleeps here with the gate held. Meanwhile, with the gate
        # working, no other worker starts a request: at most those already past the gate when
        # it closed (concurrency - 1) reach the server. Without it, they would send dozens.
        slept.append(seconds)
        before = counting.started
        threading.Event().wait(0.5)
        sent_while_held.append(counting.started - before)

    with remote(server, transport=counting, sleep=sleep) as r:
        report = sync(v, r, direction="push", concurrency=4)
    assert report.ok and len(report.created_remote) == 40
    assert slept == [3.0]  # Retry-After, as the server asked, slept once for all the workers
    assert sent_while_held[0] <= 3
    assert_one_copy_each(v, server, ids)


_CHILD = """
import sys, vault
from vault.sync import ChatBotKitRemote, sync
path, passphrase, url, token = sys.argv[1:5]
with vault.open(path, passphrase) as v, ChatBotKitRemote(token, url) as r:
    sync(v, r, direction="push", concurrency=4)
print("finished")
"""


def test_a_concurrent_push_killed_at_any_point_resumes_with_no_duplicate_and_no_loss(
    v: vault.Vault, vault_path: Path
) -> None:
    """SIGKILL the syncing process right after the cloud stored its k-th create (before any answer),
    with three more writes in flight, again and again; the reruns never duplicate nor lose one."""
    ids = [v.secret.create(name=f"s{i}", value=f"value-{i}", meta={"i": str(i)}).id for i in range(60)]
    v.secret.update(ids[0], kind="personal")  # a personal value is never sent, whatever happens
    cloud = memory_vault()
    try:
        with StandInServer(cloud, token="sk-test-kill") as server:
            api = server.api
            real_create = api.create
            state: dict[str, Any] = {"n": 0, "kill_at": 0, "child": None}

            def create(body: object) -> dict[str, str]:
                out: dict[str, str] = real_create(body)
                state["n"] += 1
                if state["n"] == state["kill_at"] and state["child"] is not None:
                    os.kill(state["child"].pid, signal.SIGKILL)  # stored in the cloud, never answered
                return out

            api.create = create
            for kill_at in (1, 6, 17, 31, 45):
                state["kill_at"] = kill_at
                child = subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(vault_path), PASSPHRASE, server.base_url, server.token],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                state["child"] = child
                out, err = child.communicate(timeout=120)
                state["child"] = None
                assert child.returncode == -signal.SIGKILL, (kill_at, out, err)
                markers = [s.meta[MARKER] for s in cloud_items(server)]
                assert len(markers) == len(set(markers)), f"a duplicate after the kill at create {kill_at}"
                v.secret.fetch(ids[1])  # the vault still opens and reads (catches up with the child's frames)
            api.create = real_create
            report = sync(v, remote(server), direction="push", concurrency=4)
            assert report.ok
            assert_one_copy_each(v, server, ids)
            personal = next(s for s in cloud_items(server) if s.meta[MARKER].endswith(":" + ids[0]))
            assert server.vault.secret.fetch(personal.id).value is None
    finally:
        cloud.close()
    with vault.open(vault_path, PASSPHRASE) as again:
        assert [again.secret.fetch(i).value for i in ids] == [f"value-{i}" for i in range(60)]
