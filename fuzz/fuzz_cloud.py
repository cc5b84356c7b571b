"""Fuzz target: ``vault.sync.sync`` against a cloud whose every answer the fuzzer writes.

Trust boundary: the cloud. The real client (``ChatBotKitRemote``) talks through an
``httpx.MockTransport`` whose handler is fed from the fuzzer's bytes
(``atheris.FuzzedDataProvider``). Each request is first applied to an honest in-memory
cloud (``tests/fakecloud.py``, seeded with the reference world below), then answered with
one of: the honest answer; the honest answer with fields set to hostile values (bad
times, ids that break paths, kind flips, planted markers of ours, masked secrets, deep
nesting, NaN...), items dropped, duplicated or invented, cursors bent; another status
(redirects, 4xx, 5xx) with any body; raw bytes; 429/503 with any ``Retry-After``; a
network error; a lying ``Content-Length`` or a ``Content-Encoding``. When the bytes run
out, or after ``MAX_REQUESTS`` requests, the cloud turns honest, so every run ends.

The vault is a copy of a reference vault (fast KDF, on tmpfs) holding every kind of
record sync treats differently: shared values the cloud has, a personal value it must
never get, a value changed since the last sync, an unpushed draft, the API token, a
``cbkVaultLocalOnly`` secret, a record without a value, and one pulled from the cloud.

Invariants checked on every input:

* only documented ``vault.VaultError`` subclasses escape ``sync()``; anything else is a crash;
* the vault opens again from disk, every record reads and every value box opens;
* every acknowledged local write is intact: a record that is still there has the value it
  had; the records whose value exists only here (personal, changed, draft, token,
  local-only) are all still there, except that ``prefer="remote"`` may drop a linked one
  the cloud reports deleted, and one whose value a push delivered (the cloud answered 2xx)
  may be deleted when the cloud later reports it gone (both documented); any record sync
  added holds no value;
* no request ever carries the personal value, the local-only value or the API token in
  its body or URL, and every ``value`` sent is one the user put into a shared secret;
* a dry run leaves the vault file byte for byte as it was.

Each input runs two syncs against the same fuzzed cloud, with a local edit of every record in
between: the edits make the second sync push, so a value the first one's pulls let through
(a kind flip, a planted marker, an alias clash) would be caught leaving.

Every random source is seeded (record ids, nonces, the cloud's ids, sync's marker prefix and
fingerprint key, the vault's clock), so an input replays exactly, in any process.

Run: ``python fuzz/fuzz_cloud.py -max_total_time=60`` (see fuzz/README.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris
from _common import main, scratch_dir, write_seeds

with atheris.instrument_imports():
    import httpx

    import vault
    from vault._vault import raw_records
    from vault.sync import ChatBotKitRemote, sync
    from vault.sync import _run as sync_run

# The honest cloud the hostile one starts from (tests/ is on the path: _common puts the root there).
from tests import fakecloud
from tests.fakecloud import FakeCloud, Request

TOKEN = "sk-fuzz-token-7d1c0e"
PASSPHRASE = "fuzz passphrase"
FAST = vault.KdfParams(opslimit=1, memlimit=8192)
BASE_URL = "https://cbk.fuzz.invalid"
MARKER = "cbkVaultRef"
#: After this many requests the cloud answers honestly: every run converges and ends.
MAX_REQUESTS = 48

SHARED_1 = "shared-value-one"
SHARED_2 = "shared-value-two"
SHARED_3 = "shared-value-changed-here"
DRAFT = "draft-value-never-pushed"
PERSONAL = "PERSONAL-fuzz-canary-5b21"
LOCAL_ONLY = "LOCALONLY-fuzz-canary-9e4f"
#: Values the user put into shared secrets: the only ones a request may carry.
SENDABLE = frozenset({SHARED_1, SHARED_2, SHARED_3, DRAFT})
#: Never in any request body or URL.
NEVER_SENT = (PERSONAL.encode(), LOCAL_ONLY.encode(), TOKEN.encode())


def _request(request: httpx.Request) -> Request:
    """An httpx request as tests/fakecloud.py's ``handle`` takes it."""
    body: Any = json.loads(request.content) if request.content else fakecloud._NO_BODY
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Request(request.method, request.url.path, dict(request.url.params), headers, body)


class _Random:
    """A seeded stand-in for every random source the run touches (record ids, nonces, the cloud's
    ids, sync's marker prefix and fingerprint key), so an input replays exactly, in any process."""

    def __init__(self, seed: bytes) -> None:
        self._seed, self._n = seed, 0

    def __call__(self, n: int) -> bytes:
        self._n += 1
        return hashlib.shake_256(self._seed + self._n.to_bytes(8, "big")).digest(n)

    def token_bytes(self, n: int) -> bytes:
        return self(n)

    def token_hex(self, n: int) -> str:
        return self(n).hex()


class _Clock:
    """Milliseconds that move by one per reading, from a fixed start."""

    def __init__(self) -> None:
        self._now = 1_700_000_000_000

    def __call__(self) -> int:
        self._now += 1
        return self._now


class _DeterministicCloud(FakeCloud):
    """tests/fakecloud.py's cloud with ids from a seeded source instead of ``secrets``."""

    def __init__(self, *args: Any, rng: _Random, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rng = rng

    def _new_id(self) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        while True:
            raw = self._rng(24)
            rid = alphabet[raw[0] % 26] + "".join(alphabet[b % 36] for b in raw[1:])
            if rid not in self.secrets:
                return rid


class _World:
    """The reference vault's bytes, its records and the honest cloud it was synced with."""

    def __init__(self) -> None:
        self.dir = scratch_dir()
        path = self.dir / "reference.cbkv"
        rng = _Random(b"fuzz_cloud reference world")
        cloud = _DeterministicCloud(token=TOKEN, rng=rng)
        cloud.add(name="from the cloud", value="cloud-only-value", alias="cloud-alias", meta={"o": 1})
        saved = sync_run.secrets
        sync_run.secrets = rng  # type: ignore[assignment] # sync's marker prefix and fingerprint key
        try:
            self._build(path, cloud, rng)
        finally:
            sync_run.secrets = saved

    def _build(self, path: Path, cloud: FakeCloud, rng: _Random) -> None:
        with vault.init(path, PASSPHRASE, kdf=FAST, clock=_Clock(), _rng=rng) as v:
            ids = {
                "team": v.secret.create(name="team key", value=SHARED_1, alias="team-key").id,
                "api": v.secret.create(
                    name="api", type="oauth", value=SHARED_2, config={"clientId": "c", "clientSecret": "cs"}
                ).id,
                "personal": v.secret.create(name="my login", kind="personal", type="bearer", value=PERSONAL).id,
                "empty": v.secret.create(name="empty").id,
                "changed": v.secret.create(name="changed", value="old-shared-value").id,
            }
            handler = _Honest(cloud)
            with ChatBotKitRemote(TOKEN, BASE_URL, transport=httpx.MockTransport(handler)) as r:
                assert sync(v, r, concurrency=1).ok
            v.secret.update(ids["changed"], value=SHARED_3)
            ids["draft"] = v.secret.create(name="draft", value=DRAFT).id
            ids["token"] = v.secret.create(name="token", alias="chatbotkit-api-token", value=TOKEN).id
            ids["local"] = v.secret.create(name="kept here", value=LOCAL_ONLY, meta={"cbkVaultLocalOnly": True}).id
            ref = raw_records(v).setting("cbkSync")["ref"]
            self.values = {s.id: v.secret.fetch(s.id).value for s in v.secret.list(take=100)}
        self.ids = ids
        self.ref = ref
        self.bytes = path.read_bytes()
        self.cloud_secrets = copy.deepcopy(cloud.secrets)
        self.cloud_clock = cloud._clock
        #: Records whose value exists only here, and which of them a prefer="remote" may drop.
        self.precious = {ids[k] for k in ("personal", "changed", "draft", "token", "local")}
        self.droppable = {ids["personal"], ids["changed"]}
        remote_ids = sorted(cloud.secrets)
        local_ids = sorted(self.values)
        self.palette: list[Any] = [
            None, True, False, 0, -1, 1, 1.5, (1 << 63) - 1, 1 << 63, 10**30, 1e30,
            float("nan"), float("inf"), "", "x", "x" * 300, "../x", "a/b", "a b", "%2e", "\ud800", "\x85",
            "shared", "personal", "plain", "oauth", "template", "private", "public", "team",
            "********", [], {}, [1], {"clientSecret": "********"}, {"clientSecret": None},
            _deep(12), {"k": "v" * 70_000},
            *remote_ids, *local_ids, "UPPER", "team-key", "cloud-alias",
            *({MARKER: f"{ref}:{lid}"} for lid in local_ids),
            *(f"{ref}:{lid}" for lid in local_ids),
            {MARKER: "m" * 300}, {MARKER: 5}, {"cbkVaultLocalOnly": True},
        ]  # fmt: skip
        self.remote_ids = remote_ids
        markers = [{MARKER: f"{ref}:{lid}"} for lid in local_ids]
        stamps: list[Any] = [-1, 0, 1, 1.5, 1700000000000.0, (1 << 63) - 1, 1 << 63, 1e30, float("nan"), True, "1"]
        #: Per field, values that matter for it (valid neighbours first, then hostile ones), so the
        #: fuzzer reaches a kind flip or a planted marker far more often than from the whole palette.
        self.by_field: dict[str, list[Any]] = {
            "id": [*remote_ids, *local_ids, "planted000000000000000001", "../x", "", None, 5, "x" * 200],
            "kind": ["shared", "personal", "team", None, 1],
            "type": ["plain", "oauth", "basic", "reference", "nope", None],
            "visibility": ["private", "public", "protected", "nope", None],
            "alias": [None, "", "team-key", "cloud-alias", "chatbotkit-api-token", "UPPER", "x" * 200],
            "name": ["", "renamed", "\ud800", "x" * 2000, None, 3],
            "description": ["", "changed", "d" * (70 << 10), None],
            "blueprintId": [None, "bp", "x" * 200, 3],
            "meta": [None, {}, *markers, {MARKER: "m" * 300}, {MARKER: 5}, {"cbkVaultLocalOnly": True}, _deep(12), []],
            "config": [None, {}, {"clientSecret": "********"}, {"clientSecret": None}, {"k": "v" * 70_000}, []],
            "createdAt": stamps,
            "updatedAt": stamps,
            "value": [None, "pulled?", PERSONAL],
            "extra": [1, "x"],
        }


def _deep(n: int) -> Any:
    out: Any = 1
    for _ in range(n):
        out = {"d": out}
    return out


class _Honest:
    """A MockTransport handler answering from an in-memory honest cloud."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud

    def __call__(self, request: httpx.Request) -> httpx.Response:
        status, headers, payload = self.cloud.handle(_request(request))
        return httpx.Response(status, json=payload, headers=headers)


ITEM_FIELDS = (
    "id", "alias", "name", "description", "blueprintId", "kind", "type",
    "config", "visibility", "meta", "createdAt", "updatedAt", "value", "extra",
)  # fmt: skip
STATUSES = (200, 201, 204, 301, 302, 307, 400, 401, 403, 404, 409, 418, 429, 500, 502, 503, 504)
RETRY_AFTERS = ("0", "1", "0.5", "-1", "100000", "1e400", "inf", "nan", "junk", "Wed, 21 Oct 2999 07:28:00 GMT", "")


class _HostileCloud:
    """The fuzzed cloud: the honest answer first, then whatever the bytes say instead."""

    def __init__(self, world: _World, data: bytes, clock: list[float]) -> None:
        self.w = world
        self.fdp = atheris.FuzzedDataProvider(data)
        self.rng = _Random(b"fuzz_cloud input" + data)
        self.vault_clock = _Clock()
        self.honest = _DeterministicCloud(
            token=TOKEN, secrets=copy.deepcopy(world.cloud_secrets), _clock=world.cloud_clock, rng=self.rng
        )
        self.clock = clock
        self.count = 0
        self.sent: list[httpx.Request] = []
        self.modes: set[int] = set()
        #: Values a request carried and the cloud answered with a 2xx: from then on the cloud has
        #: acknowledged them, and a later "deleted in the cloud" may take the local copy (documented).
        self.delivered: set[str] = set()

    def pick(self, options: Any) -> Any:
        return options[self.fdp.ConsumeIntInRange(0, len(options) - 1)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self._respond(request)
        if 200 <= response.status_code < 300 and request.content:
            sent = json.loads(request.content)
            if isinstance(sent, dict) and isinstance(sent.get("value"), str):
                self.delivered.add(sent["value"])
        return response

    def _respond(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        self.clock[0] += 0.25
        self.sent.append(request)
        status, headers, payload = self.honest.handle(_request(request))
        fdp = self.fdp
        if self.count > MAX_REQUESTS or fdp.remaining_bytes() == 0:
            return httpx.Response(status, json=payload, headers=headers)
        mode = fdp.ConsumeIntInRange(0, 11)
        self.modes.add(mode)
        if mode <= 3:
            return httpx.Response(status, json=payload, headers=headers)
        if mode <= 6:
            return self.answer(status, self.mutate(payload), headers)
        if mode == 7:
            body = self.mutate(payload) if fdp.ConsumeBool() else {"message": "no", "code": self.pick(("X", "", "a b"))}
            return self.answer(self.pick(STATUSES), body, {"location": self.pick(("https://evil.invalid/", "/x"))})
        if mode == 8:
            raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 96))
            return httpx.Response(self.pick(STATUSES), stream=httpx.ByteStream(raw))
        if mode == 9:
            retry = {"retry-after": self.pick(RETRY_AFTERS)} if fdp.ConsumeBool() else {}
            return self.answer(self.pick((429, 503, 500)), {"message": "busy"}, retry)
        if mode == 10:
            error = self.pick((httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError))
            raise error("fuzzed network failure", request=request)
        lie = self.pick(({"content-length": "999999999"}, {"content-encoding": "gzip"}, {"content-encoding": "br"}))
        return self.answer(status, payload, {**headers, **lie})

    def answer(self, status: int, body: Any, headers: dict[str, str]) -> httpx.Response:
        try:
            data = json.dumps(body, allow_nan=True).encode()
        except (TypeError, ValueError, RecursionError):
            data = b"{}"
        # A stream, not content=: httpx would decode a fuzzed Content-Encoding right here, in the handler.
        base = {"content-type": "application/json", "content-length": str(len(data))}
        return httpx.Response(status, stream=httpx.ByteStream(data), headers={**base, **headers})

    def mutate(self, payload: Any) -> Any:
        """The honest payload with one to four hostile edits."""
        out = copy.deepcopy(payload)
        fdp = self.fdp
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            if not isinstance(out, dict):
                return out
            items = out.get("items")
            op = fdp.ConsumeIntInRange(0, 9)
            if not isinstance(items, list):
                self.edit(out, op)  # a fetched item, a create's {"id"}, a delete's {}
            elif op <= 4 and items:
                target = items[fdp.ConsumeIntInRange(0, len(items) - 1)]
                if isinstance(target, dict):
                    self.edit(target, op)
            elif op == 5 and items:
                del items[fdp.ConsumeIntInRange(0, len(items) - 1)]
            elif op == 6 and items:
                items.append(copy.deepcopy(items[fdp.ConsumeIntInRange(0, len(items) - 1)]))
            elif op == 7:
                row = self.honest.secrets.get(self.pick(self.w.remote_ids))
                planted = {k: v for k, v in (row or {}).items() if k != "value"}
                planted["id"] = f"planted{self.count:017d}"
                self.edit(planted, fdp.ConsumeIntInRange(0, 4))
                items.insert(fdp.ConsumeIntInRange(0, len(items)), planted)
            elif op == 8:
                out["cursor"] = self.pick([*self.w.by_field["id"], "\ud800", "x" * 2000])
            else:
                out[self.pick(("items", "cursor"))] = copy.deepcopy(self.pick(self.w.palette))
        return out

    def edit(self, target: dict[str, Any], op: int) -> None:
        """One edit of an item: 0 flips its kind, 1 moves its updatedAt, 2 drops a field, 3 sets a
        field to a value that matters for it, 4 sets one to anything from the palette."""
        if op == 0:
            target["kind"] = "shared" if target.get("kind") == "personal" else "personal"
            return
        if op == 1:
            stamp = target.get("updatedAt")
            target["updatedAt"] = (stamp if type(stamp) is int else 0) + self.fdp.ConsumeIntInRange(-2, 2)
            return
        key = self.pick(ITEM_FIELDS)
        if op == 2:
            target.pop(key, None)
        elif op == 3:
            target[key] = copy.deepcopy(self.pick(self.w.by_field[key]))
        else:
            target[key] = copy.deepcopy(self.pick(self.w.palette))


WORLD = _World()
_WORK = WORLD.dir / "work.cbkv"


def _fresh_vault() -> None:
    tmp = WORLD.dir / "work.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(WORLD.bytes)
    os.replace(tmp, _WORK)


def _check_requests(cloud: _HostileCloud) -> None:
    for request in cloud.sent:
        body = request.content
        url = str(request.url).encode()
        for canary in NEVER_SENT:
            assert canary not in body and canary not in url, "a value that must never leave was sent"
        if body:
            sent = json.loads(body)
            if isinstance(sent, dict) and sent.get("value") is not None:
                assert sent["value"] in SENDABLE, "a value the user did not put into a shared secret was sent"


def _check_vault(may_drop: bool, dry_run: bool, delivered: set[str]) -> None:
    if dry_run:
        assert _WORK.read_bytes() == WORLD.bytes, "a dry run wrote to the vault"
    with vault.open(_WORK, PASSPHRASE) as again:
        present: dict[str, str | None] = {}
        cursor = None
        while True:
            page = again.secret.list(take=100, cursor=cursor)
            for s in page:
                present[s.id] = again.secret.fetch(s.id).value  # every value box still opens
            if not page.items:
                break
            cursor = page.items[-1].id
    for sid, value in present.items():
        if sid in WORLD.values:
            assert value == WORLD.values[sid], "a pull changed a local value"
        else:
            assert value is None, "sync added a record holding a value"
    for sid in WORLD.precious:
        if sid not in present and WORLD.values[sid] not in delivered:
            assert may_drop and sid in WORLD.droppable, "a value that exists only locally was lost"


def one_input(data: bytes) -> None:
    _run(data)


def _run(data: bytes) -> _HostileCloud:
    """Two syncs against the same fuzzed cloud, with a local edit of every record in between
    (the edits are what make a push send values: a value let through by the first sync's pulls
    would leave in the second)."""
    fdp = atheris.FuzzedDataProvider(data[:4])
    direction = ("push", "pull", "both")[fdp.ConsumeIntInRange(0, 2)]
    prefer = (None, "local", "remote")[fdp.ConsumeIntInRange(0, 2)]
    dry_run = fdp.ConsumeIntInRange(0, 7) == 0
    second = (None, "local", "remote")[fdp.ConsumeIntInRange(0, 2)]
    _fresh_vault()
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    cloud = _HostileCloud(WORLD, data[4:], clock)
    remote = ChatBotKitRemote(
        TOKEN,
        BASE_URL,
        transport=httpx.MockTransport(cloud),
        sleep=sleep,
        clock=lambda: clock[0],
        max_backoff=2.0,
    )
    try:
        _sync(cloud, remote, direction, prefer, dry_run)
        _check_requests(cloud)
        _check_vault(prefer == "remote", dry_run, cloud.delivered)
        with vault.open(_WORK, PASSPHRASE, clock=cloud.vault_clock, _rng=cloud.rng) as v:
            for s in v.secret.list(take=100):
                v.secret.update(s.id, description="edited between two syncs")
        _sync(cloud, remote, "both", second, False)
        _check_requests(cloud)
        _check_vault("remote" in (prefer, second), False, cloud.delivered)
    finally:
        remote.close()
    return cloud


def _sync(cloud: _HostileCloud, remote: ChatBotKitRemote, direction: str, prefer: Any, dry_run: bool) -> None:
    try:
        with vault.open(_WORK, PASSPHRASE, clock=cloud.vault_clock, _rng=cloud.rng) as v:
            # One write at a time: an input must replay the same answers to the same requests, in
            # the same order (the concurrent path is tested in tests/test_sync_concurrency.py).
            sync(v, remote, direction=direction, prefer=prefer, dry_run=dry_run, concurrency=1)  # type: ignore[arg-type]
    except vault.VaultError:
        pass  # documented: the cloud may stop a sync, never damage the vault


def seeds() -> dict[str, bytes]:
    """For each answer mode, the first of a fixed random series of inputs whose run uses it
    (found by running them, so the seeds stay valid whatever FuzzedDataProvider's byte order),
    plus an all-honest run for each conflict policy."""
    import random

    found: dict[str, bytes] = {"honest": b"\x00\x00\x01\x00", "honest-remote": b"\x00\x02\x01\x02"}
    rng = random.Random(20261130)
    for _ in range(3000):
        blob = rng.randbytes(rng.randrange(4, 160))
        cloud = _run(blob)
        for mode in sorted(cloud.modes):
            name = "mode-honest" if mode <= 3 else f"mode-{mode}"
            found.setdefault(name, blob)
        if len(found) == 2 + 9:
            break
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-seeds"]:
        print(f"fuzz_cloud: {write_seeds('fuzz_cloud', seeds())} seeds")
    else:
        main("fuzz_cloud", one_input)
