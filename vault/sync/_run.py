"""Run a sync: read both sides, plan (pure), then apply the plan one secret at a time.

Crash safety, per action (each local write is one atomic vault commit):

* create in the cloud: POST create (carrying the marker ``meta.cbkVaultRef``), GET it
  back, then save the link in the record's ext map. A stop between the POST and the
  save leaves a cloud secret whose marker the next plan re-links (``Adopt``).
* update in the cloud: save the intended base as ``pending``, POST update, GET it
  back, save the new base. A stop in between is recognised next time because the
  cloud's fields equal the pending ones.
* a pull writes the record, its fields and its link in one commit.
* the link index (remote id -> local id, updatedAt) is rewritten once per run, at
  the end, even when the run stops early; it only feeds tombstone detection.

So the vault is consistent after any error, and running the sync again converges.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from .. import _format, _rules
from .._raw import RawRecords
from .._vault import raw_records
from ..errors import (
    InvalidRequestError,
    LockTimeoutError,
    NotFoundError,
    RemoteAuthError,
    RemoteNotFoundError,
    RemoteProtocolError,
    RemoteUnavailableError,
    StorageError,
    VaultError,
)
from ._client import MARKER_KEY, MAX_CONCURRENCY, TOKEN_ALIAS, remote_id_ok
from ._plan import (
    Action,
    Adopt,
    Base,
    Conflict,
    CreateRemote,
    DeleteLocal,
    DeleteRemote,
    Direction,
    Forget,
    Link,
    LocalRecord,
    Plan,
    Prefer,
    PullNew,
    PullUpdate,
    Rebase,
    RemoteRecord,
    SyncState,
    UpdateRemote,
    plan,
)

if TYPE_CHECKING:
    from .._records import Secret
    from .._vault import Vault

__all__ = ["Change", "Remote", "SyncIssue", "SyncReport", "sync"]

#: Vault setting: {"v": 1, "ref": <this vault's marker prefix>, "key": <hex key for fingerprints>}.
CONFIG_SETTING: Final = "cbkSync"
#: Vault setting: {remote id: [local id, updatedAt]} as of the end of the last sync.
INDEX_SETTING: Final = "cbkSyncIndex"
#: Key of a record's sync link inside its ext map.
EXT_KEY: Final = "cbkSync"
#: meta flag that keeps a local secret out of the cloud.
LOCAL_ONLY_META: Final = "cbkVaultLocalOnly"
#: Key, in a record's ext map, of the fingerprint of a value sync must never send: a personal
#: value that a pull turned shared (the cloud flipped the kind, ``prefer="remote"`` took it).
HOLD_KEY: Final = "cbkSyncHold"

#: Key, in a link, of the value cache ``[value tag, value fingerprint, stripped value's fingerprint]``:
#: the fingerprints of the value whose sealed box had that tag (``RawRecords.value_tags``). While the
#: box is unchanged, sync reuses them instead of decrypting the value (and logging the read) again.
VALUE_CACHE_KEY: Final = "vc"

#: The longest marker a link keeps. Ours are "<16 hex>:<local id>"; a longer one is not a marker
#: of any vault, and keeping it would let the cloud grow a record's link past the vault's limits.
_MAX_REF: Final = 256

#: Cloud writes run concurrently, a phase at a time; every other action is a local write.
_PUSHES: Final = frozenset({"delete-remote", "update-remote", "create-remote"})
#: Writes queued per worker (read ahead from the vault, not yet sent): workers never wait for a commit.
_QUEUED: Final = 4
#: ``sync(concurrency=...)``'s default: docs/SYNC.md, "Concurrency", says why 4.
DEFAULT_CONCURRENCY: Final = 4

_FATAL: Final = (RemoteAuthError, RemoteUnavailableError, RemoteProtocolError, StorageError, LockTimeoutError)

Progress = Callable[[int, int, str, str], None]


class Remote(Protocol):
    """What the runner needs from the cloud (``ChatBotKitRemote`` is the real one)."""

    def list_all(self) -> list[dict[str, Any]]:
        """Every secret in the workspace (all pages)."""

    def fetch(self, secret_id: str) -> dict[str, Any]:
        """One secret's item by id."""

    def create(self, body: Mapping[str, Any], *, marker: str | None = None) -> str:
        """Create a secret; ``marker`` lets a retried create find the first attempt. Returns the id."""

    def update(self, secret_id: str, body: Mapping[str, Any]) -> str:
        """Update a secret; returns its id."""

    def delete(self, secret_id: str) -> None:
        """Delete a secret."""


@dataclass(frozen=True, slots=True)
class Change:
    """One secret a sync changed (or, in a dry run, would change). Names are metadata, never values."""

    local_id: str | None
    remote_id: str | None
    name: str = ""


@dataclass(frozen=True, slots=True)
class SyncIssue:
    """One action that failed; the rest of the sync went on. ``code`` is the VaultError's code."""

    action: str
    local_id: str | None
    remote_id: str | None
    name: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync did (or would do, when ``dry_run``)."""

    created_remote: tuple[Change, ...] = ()
    updated_remote: tuple[Change, ...] = ()
    deleted_remote: tuple[Change, ...] = ()
    pulled: tuple[Change, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    errors: tuple[SyncIssue, ...] = ()
    deleted_local: tuple[Change, ...] = ()
    direction: Direction = "both"
    dry_run: bool = False
    plan: Plan | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """No errors and no conflict left unresolved."""
        return not self.errors and all(c.resolution is not None for c in self.conflicts)

    def to_dict(self) -> dict[str, Any]:
        def changes(items: tuple[Change, ...]) -> list[dict[str, Any]]:
            """The report as JSON data (camelCase keys), for ``--json``."""
            """The changes as JSON data."""
            return [{"localId": c.local_id, "remoteId": c.remote_id, "name": c.name} for c in items]

        return {
            "direction": self.direction,
            "dryRun": self.dry_run,
            "createdRemote": changes(self.created_remote),
            "updatedRemote": changes(self.updated_remote),
            "deletedRemote": changes(self.deleted_remote),
            "pulled": changes(self.pulled),
            "deletedLocal": changes(self.deleted_local),
            "conflicts": [
                {
                    "reason": c.reason,
                    "localId": c.local_id,
                    "remoteId": c.remote_id,
                    "name": c.name,
                    "resolution": c.resolution,
                    "fields": list(c.fields),
                }
                for c in self.conflicts
            ],
            "errors": [
                {
                    "action": e.action,
                    "localId": e.local_id,
                    "remoteId": e.remote_id,
                    "name": e.name,
                    "code": e.code,
                    "message": e.message,
                }
                for e in self.errors
            ],
        }


# --- fingerprints and field shapes -------------------------------------------------------------


#: The canonical JSON the fields fingerprint covers (its format is in every stored base: never change
#: it). One encoder for all: ``json.dumps`` with options builds a new one per call, a tenth of the
#: cost of fingerprinting 10,000 secrets.
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _Fingerprints:
    """Keyed BLAKE2b digests: comparisons need equality only, and a digest kept in the vault
    must not let anyone who sees it test guesses of a value (the key is sealed in the vault)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _digest(self, person: bytes, data: bytes) -> str:
        return hashlib.blake2b(data, key=self._key, person=person, digest_size=16).hexdigest()

    def fields(self, comparable: Mapping[str, Any]) -> str:
        """The fingerprint of the fields both sides can see."""
        try:
            text = _CANONICAL.encode(comparable)
        except (ValueError, RecursionError):
            # The vault refuses NaN/Infinity on write, but a file from an older writer may hold one.
            raise InvalidRequestError(
                f"secret {str(comparable.get('name'))[:64]!r} holds NaN or Infinity in meta or config, "
                "which JSON (and so the cloud) cannot carry"
            ) from None
        return self._digest(b"cbkv-sync-fields", text.encode("utf-8"))

    def value(self, value: str | None) -> str | None:
        """The fingerprint of a value (None when there is none)."""
        return None if value is None else self._digest(b"cbkv-sync-value", value.encode("utf-8"))

    def secret(self, config: Mapping[str, Any] | None) -> str | None:
        """The fingerprint of ``config.clientSecret`` (None when absent)."""
        if config is None or "clientSecret" not in config:
            return None
        return self._digest(b"cbkv-sync-csec", json.dumps(config["clientSecret"]).encode("utf-8"))


def _strip_marker(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    out = {k: v for k, v in meta.items() if k != MARKER_KEY}
    return out or (None if MARKER_KEY in meta else out)


# Every request field but the value: what both sides can see and compare.
_FIELDS: Final = tuple((wire, snake) for wire, snake in _rules.REQUEST_FIELDS.items() if snake != "value")


def _comparable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields both sides can see, in the cloud's response shape (config masked, no marker)."""
    out = {wire: fields[snake] for wire, snake in _FIELDS}
    out["meta"] = _strip_marker(fields["meta"]) or None
    out["config"] = _rules.mask_config(fields["config"])
    return out


def _secret_fields(sec: Secret) -> dict[str, Any]:
    return {snake: getattr(sec, snake) for _, snake in _FIELDS}


def _parse_item(
    item: object, fp: _Fingerprints, expect_id: str | None = None
) -> tuple[RemoteRecord, dict[str, Any]]:
    """A cloud item -> (RemoteRecord, snake_case fields as the vault would store them).

    Untrusted input: every field goes through the vault's own validation, the times through
    the reader's range, the id through the one remote-id rule, so nothing parsed here can
    make a write the reader would refuse. A malformed item stops the sync, because skipping
    it would make a linked secret look deleted. ``expect_id``: the id asked for (a fetch).
    """
    if not isinstance(item, Mapping):
        raise RemoteProtocolError("a cloud secret is not a JSON object")
    rid = item.get("id")
    if not remote_id_ok(rid):
        raise RemoteProtocolError("a cloud secret has no id, or one that is not a plain path segment")
    if expect_id is not None and rid != expect_id:
        raise RemoteProtocolError(f"fetching cloud secret {expect_id!r} returned another secret")
    fields: dict[str, Any] = {}
    try:
        for wire, snake in _FIELDS:
            raw = item.get(wire)
            if raw is None and snake in ("name", "description", "kind", "type", "visibility"):
                raw = _rules.DEFAULTS[snake]
            fields[snake] = _rules.check_field(snake, raw)
        created_at = _rules.check_timestamp("createdAt", item.get("createdAt"))
        updated_at = _rules.check_timestamp("updatedAt", item.get("updatedAt"))
    except InvalidRequestError as exc:
        raise RemoteProtocolError(f"cloud secret {rid!r} is malformed: {exc.message}") from None
    meta = fields["meta"]
    ref = meta.get(MARKER_KEY) if meta is not None else None
    fields["meta"] = _strip_marker(meta)
    record = RemoteRecord(
        id=rid,
        fields=fp.fields(_comparable(fields)),
        updated_at=updated_at,
        alias=fields["alias"],
        name=fields["name"],
        ref=ref if isinstance(ref, str) and len(ref) <= _MAX_REF else None,
        created_at=created_at,
        item=fields,
        kind=fields["kind"],
    )
    return record, fields


def _listing(items: object) -> list[Mapping[str, Any]]:
    """The remote's listing, checked for the shape the planner relies on (any ``Remote`` may be hostile)."""
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise RemoteProtocolError("the cloud's listing is not a list of secrets")
    ids = [i.get("id") for i in items if isinstance(i.get("id"), str)]
    if len(set(ids)) != len(ids):
        raise RemoteProtocolError("the cloud's listing holds one secret twice")
    return items


def _check_capacity(p: Plan, held: int) -> None:
    """Refuse, before the first write, a pull that would take the vault past its record cap.

    The engine refuses the one record too many anyway; this makes a hostile (or huge) listing
    fail as one clean error instead of a million small commits and then a wall of per-secret ones.
    """
    pulls = sum(1 for a in p.actions if a.op == "pull-new")
    drops = sum(1 for a in p.actions if a.op == "delete-local")
    if pulls and held + pulls - drops > _format.MAX_RECORDS:
        raise RemoteProtocolError(
            f"the cloud lists {pulls} secrets the vault does not have; with the {held} it holds, "
            f"that is more than the {_format.MAX_RECORDS} a vault can hold"
        )


def _base_to_json(base: Base) -> list[Any]:
    return [base.fields, base.value, base.secret, base.sent, base.updated_at]


def _base_from_json(raw: Any) -> Base | None:
    if type(raw) is not list or len(raw) != 5:
        return None
    f, v, s, sent, u = raw
    if type(f) is not str or type(sent) is not bool:
        return None
    if not (v is None or type(v) is str) or not (s is None or type(s) is str) or not (u is None or type(u) is int):
        return None
    return Base(f, v, s, sent, u)


def _link_to_json(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {"rid": link.remote_id, "base": _base_to_json(link.base)}
    if link.ref is not None:
        out["ref"] = link.ref
    if link.pending is not None:
        out["pend"] = _base_to_json(link.pending)
    return out


def _link_from_json(raw: Any) -> Link | None:
    # The ext map is sealed in the vault and written only by us; anything odd is treated as
    # "not linked", and the marker in the cloud re-links it instead of creating a duplicate.
    if type(raw) is not dict or type(raw.get("rid")) is not str:
        return None
    base = _base_from_json(raw.get("base"))
    if base is None:
        return None
    ref = raw.get("ref")
    pending = _base_from_json(raw["pend"]) if "pend" in raw else None
    return Link(raw["rid"], base, ref if type(ref) is str else None, pending)


# --- vault-side state ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Config:
    ref: str
    # Out of repr: the fingerprint key is sealed in the vault so no fingerprint can test guesses.
    key: bytes = field(repr=False)


def _load_config(v: Vault) -> tuple[_Config, bool]:
    """The vault's sync configuration, and whether it is new (made now, not stored yet)."""
    raw = raw_records(v).setting(CONFIG_SETTING)
    if type(raw) is dict and type(raw.get("ref")) is str and type(raw.get("key")) is str:
        try:
            key = bytes.fromhex(raw["key"])
        except ValueError:
            key = b""
        if len(key) == 32:
            return _Config(raw["ref"], key), False
    return _Config(secrets.token_hex(8), secrets.token_bytes(32)), True


def _store_config(v: Vault, cfg: _Config) -> None:
    raw_records(v).set_setting(CONFIG_SETTING, {"v": 1, "ref": cfg.ref, "key": cfg.key.hex()})


def _load_index(v: Vault) -> dict[str, tuple[str, int | None]]:
    raw = raw_records(v).setting(INDEX_SETTING) or {}
    out: dict[str, tuple[str, int | None]] = {}
    if type(raw) is dict:
        for rid, entry in raw.items():
            if type(entry) is list and len(entry) == 2 and type(entry[0]) is str:
                u = entry[1] if type(entry[1]) is int else None
                out[rid] = (entry[0], u)
    return out


def _held(ext: Mapping[str, Any], kind: str, value_fp: str | None) -> bool:
    """Is this value held back? Only while the secret is shared and still holds the very value that was held."""
    return kind == "shared" and value_fp is not None and ext.get(HOLD_KEY) == value_fp


def _with_hold(ext: Mapping[str, Any], kind: str, value_fp: str | None, *, hold: bool = False) -> dict[str, Any]:
    """``ext`` with the hold kept (or, with ``hold``, set) while it applies, and dropped once it does not.

    The hold ends when the value changes (the user put a new one in) or when a sync sees the
    secret personal (the user decided its kind again); it never ends by itself.
    """
    out = {k: v for k, v in ext.items() if k != HOLD_KEY}
    if kind == "shared" and value_fp is not None and (hold or ext.get(HOLD_KEY) == value_fp):
        out[HOLD_KEY] = value_fp
    return out


def _is_local_only(sec: Secret) -> bool:
    return sec.alias == TOKEN_ALIAS or (sec.meta is not None and sec.meta.get(LOCAL_ONLY_META) is True)


def _token_check(remote: Remote) -> tuple[Callable[[str | None], bool], str | None]:
    """How to recognise the API token in the vault: by value, and by the record it came from.

    The token must never be pushed as a secret value, and ``ChatBotKitRemote(token_secret=...)``
    reads it from any identifier, not only ``@chatbotkit-api-token``. Other ``Remote``s may not
    know a token: then nothing matches.
    """
    is_token = getattr(remote, "is_token", None)
    source = getattr(remote, "token_record_id", None)
    check: Callable[[str | None], bool] = is_token if callable(is_token) else (lambda _value: False)
    return check, source if isinstance(source, str) else None


#: What ``RawRecords.all()`` answers: (metadata, extension map, holds a value).
_Records = list[tuple["Secret", dict[str, Any], bool]]
#: Local id -> (value tag, value fingerprint, stripped value's fingerprint), as of this run's start.
_ValueCache = dict[str, tuple[str, str, str]]


def _value_cache(ext: Mapping[str, Any]) -> tuple[str, str, str] | None:
    link = ext.get(EXT_KEY)
    raw = link.get(VALUE_CACHE_KEY) if type(link) is dict else None
    if type(raw) is list and len(raw) == 3 and all(type(x) is str for x in raw):
        return raw[0], raw[1], raw[2]
    return None


def _token_digest(remote: Remote, fp: _Fingerprints) -> str | None:
    """The value fingerprint of the stripped token (None: this remote cannot tell; values are then
    always decrypted, to be checked with ``is_token``)."""
    digest = getattr(remote, "token_digest", None)
    if not callable(digest):
        return None
    out = digest(fp.value)
    return out if isinstance(out, str) else None


@dataclass(frozen=True, slots=True)
class _Scanned:
    """One local record as read before the listing is in: everything but a value to decrypt."""

    # Out of repr (like ``_Push``'s): the config is unmasked here, and a repr may reach a log.
    sec: Secret = field(repr=False)
    ext: dict[str, Any] = field(repr=False)
    link: Link | None
    fields: str
    #: (tag, value fingerprint, stripped value's fingerprint) when the value need not be decrypted.
    kept: tuple[str, str, str] | None
    #: The sealed box's tag (None: no value).
    tag: str | None


def _scan_local(v: Vault, fp: _Fingerprints, records: _Records, token_fp: str | None) -> list[_Scanned]:
    """The vault's side, fingerprinted without opening any value (it runs while the listing does).

    A value's fingerprint comes from its link's cache while its sealed box is unchanged (its tag
    is the one kept), and only when the remote can say whether a fingerprint is the token's;
    any other value is left for ``_local_records`` to decrypt, once the cloud has answered.
    """
    tags = raw_records(v).value_tags()
    out: list[_Scanned] = []
    for sec, ext, has_value in records:
        tag = tags.get(sec.id) if has_value else None
        kept = _value_cache(ext) if tag is not None and token_fp is not None else None
        if kept is not None and kept[0] != tag:
            kept = None
        fields = fp.fields(_comparable(_secret_fields(sec)))
        out.append(_Scanned(sec, ext, _link_from_json(ext.get(EXT_KEY)), fields, kept, tag))
    return out


def _local_records(
    v: Vault,
    fp: _Fingerprints,
    scanned: Sequence[_Scanned],
    is_token: Callable[[str | None], bool],
    token_record: str | None,
    token_fp: str | None,
) -> tuple[list[LocalRecord], _ValueCache]:
    """The vault's side as the planner sees it, and the value cache for the links this run writes.

    Only values whose box changed since the last sync are decrypted: a no-change sync of
    10,000 secrets opens (and logs the read of) no value at all.
    """
    raw = raw_records(v)
    cache: _ValueCache = {}
    out: list[LocalRecord] = []
    for item in scanned:
        sec, kept, tag = item.sec, item.kept, item.tag
        value_fp: str | None = None
        holds_token = sec.id == token_record
        if kept is not None:
            value_fp = kept[1]
            holds_token = holds_token or kept[2] == token_fp
            cache[sec.id] = kept
        elif tag is not None:
            # The tag kept beside the fingerprint is the one read with this value, not the scan's:
            # another handle may have rewritten the value since the scan, and the scan's tag
            # would then vouch, in every later run, for a value its box does not hold.
            full, _, box_tag = raw.fetch_tagged(sec.id)
            value_fp = fp.value(full.value)
            holds_token = holds_token or is_token(full.value)
            if full.value is not None and value_fp is not None and box_tag is not None:
                cache[sec.id] = (box_tag, value_fp, fp.value(full.value.strip()) or "")
        out.append(
            LocalRecord(
                id=sec.id,
                fields=item.fields,
                value=value_fp,
                secret=fp.secret(sec.config),
                kind=sec.kind,
                alias=sec.alias,
                name=sec.name,
                link=item.link,
                local_only=holds_token or _is_local_only(sec),
                withheld=_held(item.ext, sec.kind, value_fp),
            )
        )
    return out, cache


def _remote_side(remote: Remote, fp: _Fingerprints) -> list[RemoteRecord]:
    """The cloud's listing, parsed and checked a page at a time as the pages come in.

    No raw answer outlives its page (a 10k listing is ~15 MB of JSON objects), and the
    parsing overlaps the wait for the next page. A ``Remote`` without ``list_pages`` is
    listed whole, as before.
    """
    pages = getattr(remote, "list_pages", None)
    source: Iterable[object] = pages() if callable(pages) else (remote.list_all(),)
    out: list[RemoteRecord] = []
    seen: set[str] = set()
    for page in source:
        for item in _listing(page):
            record = _parse_item(item, fp)[0]
            if record.id in seen:
                raise RemoteProtocolError("the cloud's listing holds one secret twice")
            seen.add(record.id)
            out.append(record)
    return out


def _confirm_missing(remote: Remote, listed: Sequence[RemoteRecord], known: set[str]) -> list[Mapping[str, Any]]:
    """Fetch every secret the vault knows by remote id that the listing did not return.

    The cloud's cursor is the last item's id: when that row is deleted between two page
    requests, the next page comes back empty and the listing ends early. Every later secret
    would then look deleted in the cloud, and a pull would delete its local copy. So absence
    from a listing is only a hint: a secret counts as gone when its own fetch answers 404.
    """
    out: list[Mapping[str, Any]] = []
    for rid in sorted(known - {r.id for r in listed}):
        try:
            item = remote.fetch(rid)
        except RemoteNotFoundError:
            continue
        if not isinstance(item, Mapping) or item.get("id") != rid:
            raise RemoteProtocolError(f"fetching cloud secret {rid[:64]!r} returned another secret")
        out.append(item)
    return out


# --- the runner ------------------------------------------------------------------------------


class _NotSent(Exception):
    """A queued write dropped because the phase was stopping (a fatal error elsewhere)."""


@dataclass(slots=True)
class _Push:
    """One cloud write in flight: what the main thread read and will send, what a worker got back.

    Workers only talk to the cloud; every vault read and write stays on the main thread, so
    the vault never sees two threads of one sync at once (and a local write never waits on
    the network).
    """

    action: CreateRemote | UpdateRemote | DeleteRemote
    # Out of repr: the body holds the value and the unmasked config, and a repr ends up in
    # tracebacks, debuggers and logs. ``sec`` hides its value itself, but not its config.
    sec: Secret | None = field(default=None, repr=False)
    ext: dict[str, Any] = field(default_factory=dict, repr=False)
    body: dict[str, Any] = field(default_factory=dict, repr=False)
    marker: str | None = None
    send_value: bool = False
    #: The base an update will have once confirmed (saved as ``pend`` before it is sent).
    intended: Base | None = None
    #: The worker's answer: the cloud id (a create) and the cloud's ``updatedAt`` after the write.
    remote_id: str | None = None
    updated_at: int | None = None


class _Runner:
    def __init__(
        self,
        v: Vault,
        remote: Remote,
        fp: _Fingerprints,
        cfg: _Config,
        progress: Progress | None,
        concurrency: int = 1,
    ) -> None:
        self.vault = v
        self.raw: RawRecords = raw_records(v)
        self.remote = remote
        self.fp = fp
        self.cfg = cfg
        self.progress = progress
        self.concurrency = concurrency
        self.done: dict[str, list[Change]] = {
            k: [] for k in ("created_remote", "updated_remote", "deleted_remote", "pulled", "deleted_local")
        }
        self.errors: list[SyncIssue] = []
        self.dropped: set[str] = set()
        self.local_ids: set[str] = set()
        self.value_cache: _ValueCache = {}
        #: Every cloud id a local record is linked to (or the link index names): a create the cloud
        #: answers with one of these is refused, or two records would share one cloud secret.
        self.claimed: set[str] = set()
        self._started = 0
        self._total = 0

    # --- cloud writes: prepared and recorded on this thread, sent by workers ------------------

    def _prepare(self, a: CreateRemote | UpdateRemote | DeleteRemote) -> _Push:
        """Read what the write needs from the vault (main thread)."""
        if isinstance(a, DeleteRemote):
            return _Push(a)
        sec, ext = self.raw.fetch(a.local_id)
        if isinstance(a, CreateRemote):
            marker = f"{self.cfg.ref}:{sec.id}"
            send_value = sec.kind == "shared" and sec.value is not None and not self._withheld(sec, ext)
            return _Push(a, sec, ext, _body(sec, marker, send_value=send_value), marker, send_value)
        # The planner already withholds; checked again here, where the value is in hand.
        send_value = a.send_value and not self._withheld(sec, ext)
        intended = self._pushed_base(sec, send_value, a.prior, None)
        return _Push(a, sec, ext, _body(sec, a.ref, send_value=send_value), a.ref, send_value, intended)

    def _send(self, push: _Push) -> None:
        """The network half of one write (a worker thread): no vault access here."""
        a = push.action
        if isinstance(a, DeleteRemote):
            with contextlib.suppress(RemoteNotFoundError):  # already gone: the goal is reached
                self.remote.delete(a.remote_id)
            return
        if isinstance(a, CreateRemote):
            rid = self.remote.create(push.body, marker=push.marker)
            if not remote_id_ok(rid):
                raise RemoteProtocolError("the cloud answered a create with an id that is not a plain path segment")
        else:
            rid = a.remote_id
            self.remote.update(rid, push.body)
        record, _ = _parse_item(self.remote.fetch(rid), self.fp, expect_id=rid)
        push.remote_id, push.updated_at = rid, record.updated_at

    def _work(self, push: _Push, stop: threading.Event) -> None:
        """A worker's job: one write, unless a fatal error already stopped the phase.

        The worker that meets a fatal error raises the flag itself, so no write queued behind
        it (on any worker) is sent once it is known that the sync is stopping.
        """
        if stop.is_set():
            raise _NotSent
        try:
            self._send(push)
        except VaultError as exc:
            if isinstance(exc, _FATAL):
                stop.set()
            raise
        except BaseException:
            stop.set()
            raise

    def _save_pending(self, push: _Push) -> None:
        """Before an update is sent: the base it will have, so a stop after it lands is recognised."""
        a = push.action
        assert isinstance(a, UpdateRemote) and push.sec is not None and push.intended is not None
        self._save_link(push.sec, push.ext, Link(a.remote_id, a.prior, a.ref, pending=push.intended))

    def _finish(self, push: _Push) -> tuple[str, Change, str | None]:
        """After the cloud confirmed a write: its link (main thread, inside the round's one commit).

        Returns the report list, the change, and a cloud id the link index may forget.
        """
        a = push.action
        if isinstance(a, DeleteRemote):
            return "deleted_remote", Change(a.local_id, a.remote_id, a.name), a.remote_id
        sec = push.sec
        assert sec is not None and push.remote_id is not None
        if isinstance(a, CreateRemote):
            rid = push.remote_id
            base = self._pushed_base(sec, push.send_value, None, push.updated_at)
            self._save_link(sec, push.ext, Link(rid, base, push.marker))
            old = _link_from_json(push.ext.get(EXT_KEY))
            # Re-created after a delete in the cloud: the old id is history.
            gone = old.remote_id if old is not None and old.remote_id != rid else None
            return "created_remote", Change(sec.id, rid, sec.name), gone
        assert push.intended is not None
        sec2, ext2 = self.raw.fetch(a.local_id)
        self._save_link(sec2, ext2, Link(a.remote_id, replace(push.intended, updated_at=push.updated_at), a.ref))
        return "updated_remote", Change(sec.id, a.remote_id, sec.name), None

    def _claim(self, push: _Push) -> bool:
        """Take the cloud id a confirmed create got, unless it is already linked (main thread).

        Ids are unique in the cloud; one answered twice (in this round, or already in a link
        or the index) is a broken or hostile cloud. Linking it would tie two records to one
        cloud secret: the next pull would overwrite one with the other, one cloud delete would
        delete both. Refused for this secret only: the rest of the round goes on.
        """
        rid = push.remote_id
        if not isinstance(push.action, CreateRemote) or rid is None:
            return True
        if rid in self.claimed:
            exc = RemoteProtocolError(
                f"the cloud answered a create with id {rid[:64]!r}, already linked to another secret"
            )
            self._issue(push.action, exc)
            return False
        self.claimed.add(rid)
        return True

    @staticmethod
    def _halt(stop: threading.Event, running: Mapping[Future[None], _Push]) -> None:
        """A fatal error: no write not yet started may go out. The flag stops those a worker
        picks up next; cancelling drops the rest from the pool's queue at once."""
        stop.set()
        for f in running:
            f.cancel()  # only those no worker has started: the rest finish and are recorded

    def _record(self, finished: Sequence[_Push], pending: Sequence[_Push]) -> list[_Push]:
        """One vault commit (one fsync) for a round: the links of the writes the cloud confirmed,
        and the pending bases of the updates about to be sent. Returns the updates that may go.

        Batching is safe because each piece stays recoverable on its own: a create whose link
        is lost in a crash is re-linked by its marker, an update whose final base is lost is
        confirmed by its pending one, and no update is sent before its pending base is durable.
        """
        if not finished and not pending:
            return []
        confirmed: list[tuple[str, Change, str | None]] = []
        ready: list[_Push] = []
        with self.vault.batch():
            for push in finished:
                try:
                    confirmed.append(self._finish(push))
                except _FATAL:
                    raise
                except VaultError as exc:
                    self._issue(push.action, exc)
            for push in pending:
                try:
                    self._save_pending(push)
                except _FATAL:
                    raise
                except VaultError as exc:
                    self._issue(push.action, exc)
                else:
                    ready.append(push)
        # Reported only once durable: a failed commit leaves nothing claimed that was not kept.
        for kind, change, gone in confirmed:
            self.done[kind].append(change)
            if gone is not None:
                self.dropped.add(gone)
        return ready

    def _pick(self, queue: deque[Action], busy: set[str]) -> Action | None:
        """The next action whose secret has no write in flight (the plan holds at most one per
        secret and phase, but two writes to one secret must never race)."""
        for i, a in enumerate(itertools.islice(queue, 64)):
            if not busy.intersection(k for k in _action_ids(a) if k is not None):
                del queue[i]
                return a
        return None

    def push(self, actions: Sequence[Action]) -> None:
        """One phase of cloud writes (deletes, updates or creates), ``concurrency`` at a time.

        The main thread reads the vault, writes the links (one commit per round) and hands
        the HTTP to at most ``concurrency`` workers. A fatal error stops new writes; those in
        flight finish (each within its call's budget) and are recorded before it is raised.
        """
        queue: deque[Action] = deque(actions)
        running: dict[Future[None], _Push] = {}
        busy: set[str] = set()
        finished: list[_Push] = []
        fatal: BaseException | None = None
        # The pool's threads bound the requests in flight. More writes than that are queued for
        # them, so a worker that finishes starts the next at once instead of waiting for this
        # thread, which may be in an fsync; the queue is short, so little is read ahead.
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cbk-vault-sync")
        depth = self.concurrency * _QUEUED
        stop = threading.Event()
        interrupted = False
        try:
            while True:
                starting: list[_Push] = []
                updates: list[_Push] = []
                while fatal is None and queue and len(running) + len(starting) + len(updates) < depth:
                    a = self._pick(queue, busy)
                    if a is None:
                        break
                    self._tick(a)
                    assert isinstance(a, (CreateRemote, UpdateRemote, DeleteRemote))
                    try:
                        prepared = self._prepare(a)
                    except _FATAL as exc:
                        fatal = exc
                        break
                    except VaultError as exc:
                        self._issue(a, exc)
                        continue
                    busy.update(k for k in _action_ids(a) if k is not None)
                    (updates if isinstance(a, UpdateRemote) else starting).append(prepared)
                if fatal is not None:
                    # A fatal error while preparing: what was read before it is not sent either,
                    # and no pending base is saved (an update must not go); confirmed writes are recorded.
                    self._halt(stop, running)
                    starting, updates = [], []
                # Creates and deletes need nothing durable first: off they go, and the commit
                # below overlaps their round trips.
                for p in starting:
                    running[pool.submit(self._work, p, stop)] = p
                try:
                    ready = self._record(finished, updates)
                except Exception as exc:  # raised below, once the writes in flight are in
                    fatal = fatal or exc
                    ready = []
                    # The vault cannot record: nothing queued may go out (SYNC.md, "a stop is a stop").
                    self._halt(stop, running)
                finished = []
                sent = {id(p) for p in ready}
                for p in updates:
                    if id(p) not in sent:  # its pending base was not saved: it must not go
                        busy.difference_update(k for k in _action_ids(p.action) if k is not None)
                for p in ready:
                    running[pool.submit(self._work, p, stop)] = p
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    p = running.pop(f)
                    busy.difference_update(k for k in _action_ids(p.action) if k is not None)
                    if f.cancelled():
                        continue  # queued behind a fatal error, never sent
                    try:
                        f.result()
                    except _NotSent:
                        continue
                    except _FATAL as exc:
                        fatal = fatal or exc
                    except VaultError as exc:
                        self._issue(p.action, exc)
                    except BaseException as exc:  # a bug: stop, but record what the cloud confirmed
                        fatal = fatal or exc
                    else:
                        if self._claim(p):
                            finished.append(p)
                if fatal is not None:
                    self._halt(stop, running)
        except BaseException:
            # Ctrl-C (or a failure of ours): the writes in flight may land or not; their markers
            # and pending bases make the next run recognise them. Do not wait for the network.
            interrupted = True
            pool.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(VaultError):
                self._record(finished, [])
            raise
        finally:
            if not interrupted:
                pool.shutdown(wait=True)
        if fatal is not None:
            raise fatal

    def _tick(self, action: Action) -> None:
        if self.progress is not None:
            self.progress(self._started, self._total, action.op, _action_name(action))
        self._started += 1

    def _issue(self, action: Action, exc: VaultError) -> None:
        local_id, remote_id = _action_ids(action)
        self.errors.append(SyncIssue(action.op, local_id, remote_id, _action_name(action), exc.code, exc.message))

    def delete_local(self, a: DeleteLocal) -> None:
        """Delete the local copy of a secret deleted in the cloud."""
        with contextlib.suppress(NotFoundError):
            self.raw.delete(a.local_id)
        self.dropped.add(a.remote_id)
        self.done["deleted_local"].append(Change(a.local_id, a.remote_id, a.name))

    def pull_new(self, a: PullNew) -> None:
        """Copy a cloud secret into the vault, with its link."""
        r = a.remote
        keep = a.keep_id and _format.ID_RE.fullmatch(r.id) is not None and r.id not in self.local_ids
        fields = dict(r.item)
        base = Base(r.fields, None, self.fp.secret(fields["config"]), True, r.updated_at)
        ext = {EXT_KEY: _link_to_json(Link(r.id, base, r.ref))}
        # A cloud id the vault cannot take becomes a fresh local id from the vault's own generator.
        lid = self.raw.put(r.id if keep else None, fields, created_at=r.created_at, updated_at=r.updated_at, ext=ext).id
        self.local_ids.add(lid)
        self.done["pulled"].append(Change(lid, r.id, r.name))

    def pull_update(self, a: PullUpdate) -> None:
        """Apply the cloud's change to the linked local secret (the local value stays)."""
        r = a.remote
        sec, ext = self.raw.fetch(a.local_id)
        fields = dict(r.item)
        fields["config"] = _rules.unmask_config(sec.config, fields["config"])
        value_fp = self.fp.value(sec.value)
        sent = value_fp is None or (a.prior.sent and value_fp == a.prior.value)
        base = Base(r.fields, value_fp, self.fp.secret(fields["config"]), sent, r.updated_at)
        # A personal value the cloud's kind turns shared was never put into a shared secret by
        # the user: hold it back from every later push (planned: kind-changed, alias-taken).
        flipped = value_fp is not None and sec.kind != "shared" and fields["kind"] == "shared"
        ext = _with_hold(ext, fields["kind"], value_fp, hold=flipped)
        ext[EXT_KEY] = self._link_json(a.local_id, Link(r.id, base, r.ref), value_fp)
        self.raw.put(a.local_id, fields, updated_at=r.updated_at, ext=ext)
        self.done["pulled"].append(Change(a.local_id, r.id, r.name))

    def adopt(self, a: Adopt) -> None:
        """Link a local secret to the cloud copy an interrupted create left behind."""
        sec, ext = self.raw.fetch(a.local_id)
        self._save_link(sec, ext, Link(a.remote.id, a.base, a.remote.ref))

    def rebase(self, a: Rebase) -> None:
        """Record that both sides already agree (a new base, nothing sent)."""
        sec, ext = self.raw.fetch(a.local_id)
        self._save_link(sec, ext, Link(a.remote_id, a.base, a.ref))

    def forget(self, a: Forget) -> None:
        """Drop a link whose both sides are gone."""
        self.dropped.add(a.remote_id)

    # helpers

    def _withheld(self, sec: Secret, ext: Mapping[str, Any]) -> bool:
        return _held(ext, sec.kind, self.fp.value(sec.value))

    def _pushed_base(self, sec: Secret, send_value: bool, prior: Base | None, updated_at: int | None) -> Base:
        value_fp = self.fp.value(sec.value)
        if value_fp is None:
            sent = True
        elif sec.kind != "shared":
            sent = False  # the cloud keeps no value for personal secrets
        else:
            sent = send_value or (prior is not None and prior.sent and prior.value == value_fp)
        fields_fp = self.fp.fields(_comparable(_secret_fields(sec)))
        return Base(fields_fp, value_fp, self.fp.secret(sec.config), sent, updated_at)

    def _save_link(self, sec: Secret, ext: dict[str, Any], link: Link) -> None:
        value_fp = self.fp.value(sec.value)
        kept = _with_hold(ext, sec.kind, value_fp)
        self.raw.put(sec.id, {}, ext={**kept, EXT_KEY: self._link_json(sec.id, link, value_fp)})

    def _link_json(self, local_id: str, link: Link, value_fp: str | None) -> dict[str, Any]:
        """The link as stored, with the value cache when the value is still the one this run
        fingerprinted at its start (its box then still has that tag: a link write never reseals it)."""
        out = _link_to_json(link)
        cached = self.value_cache.get(local_id)
        if cached is not None and value_fp is not None and cached[1] == value_fp:
            out[VALUE_CACHE_KEY] = list(cached)
        return out

    def execute(self, p: Plan) -> None:
        """Apply every action of the plan; per-secret failures are collected, fatal ones raised.

        Phases run in the plan's order (local bookkeeping, cloud deletes, updates, creates, then
        local writes from the cloud), each finished before the next starts: a delete frees an
        alias an update or a create may need. Within a cloud phase, writes run concurrently.
        """
        handlers: dict[str, Callable[[Any], None]] = {
            "delete-local": self.delete_local,
            "pull-new": self.pull_new,
            "pull-update": self.pull_update,
            "adopt": self.adopt,
            "rebase": self.rebase,
            "forget": self.forget,
        }
        self._total = len(p.actions)
        for op, group in itertools.groupby(p.actions, key=lambda a: a.op if a.op in _PUSHES else "local"):
            actions = list(group)
            if op in _PUSHES:
                self.push(actions)
                continue
            for action in actions:
                self._tick(action)
                try:
                    handlers[action.op](action)
                except _FATAL:
                    raise
                except VaultError as exc:
                    self._issue(action, exc)
        if self.progress is not None:
            self.progress(self._total, self._total, "done", "")

    def save_index(self, old: Mapping[str, tuple[str, int | None]], records: _Records | None = None) -> None:
        """Rewrite the link index (remote id -> local id) once, at the end of a run.

        ``records``: the vault as read at the start, when the run wrote nothing since.
        """
        new: dict[str, list[Any]] = {}
        for sec, ext, _ in self.raw.all() if records is None else records:
            link = _link_from_json(ext.get(EXT_KEY))
            if link is not None:
                new[link.remote_id] = [sec.id, link.base.updated_at]
        for rid, (lid, u) in old.items():
            if rid not in new and rid not in self.dropped:
                new[rid] = [lid, u]  # a tombstone not settled yet
        if new != {rid: [lid, u] for rid, (lid, u) in old.items()}:
            self.raw.set_setting(INDEX_SETTING, new)


def _body(sec: Secret, ref: str | None, *, send_value: bool) -> dict[str, Any]:
    """The create/update body: every field, always (an update that leaves ``alias`` out clears it)."""
    meta = _strip_marker(sec.meta)
    if ref is not None:
        meta = {**(meta or {}), MARKER_KEY: ref}
    body = {wire: getattr(sec, snake) for wire, snake in _FIELDS}
    # Always sent, None included: the cloud clears the alias of an update that leaves it out
    # (the platform's Joi default, docs/FIDELITY.md E1). tests/test_sync_cloud_rules.py checks it.
    body["alias"] = sec.alias
    body["meta"] = meta
    if send_value:
        # Personal: only ever a null, clearing what the cloud kept from when it was shared.
        body["value"] = sec.value if sec.kind == "shared" else None
    return body


def _action_ids(a: Action) -> tuple[str | None, str | None]:
    if isinstance(a, (PullNew,)):
        return None, a.remote.id
    if isinstance(a, (PullUpdate, Adopt)):
        return a.local_id, a.remote.id
    if isinstance(a, Forget):
        return None, a.remote_id
    if isinstance(a, CreateRemote):
        return a.local_id, None
    return a.local_id, a.remote_id


def _action_name(a: Action) -> str:
    if isinstance(a, (PullNew, PullUpdate, Adopt)):
        return a.remote.name
    return getattr(a, "name", "")


def _report(p: Plan, done: Mapping[str, Sequence[Change]], errors: Sequence[SyncIssue], dry_run: bool) -> SyncReport:
    return SyncReport(
        created_remote=tuple(done["created_remote"]),
        updated_remote=tuple(done["updated_remote"]),
        deleted_remote=tuple(done["deleted_remote"]),
        pulled=tuple(done["pulled"]),
        conflicts=p.conflicts,
        errors=tuple(errors),
        deleted_local=tuple(done["deleted_local"]),
        direction=p.direction,
        dry_run=dry_run,
        plan=p,
    )


def _planned(p: Plan) -> dict[str, list[Change]]:
    keys: dict[str, str] = {
        "create-remote": "created_remote",
        "update-remote": "updated_remote",
        "delete-remote": "deleted_remote",
        "pull-new": "pulled",
        "pull-update": "pulled",
        "delete-local": "deleted_local",
    }
    out: dict[str, list[Change]] = {k: [] for k in set(keys.values())}
    for a in p.actions:
        if a.op in keys:
            local_id, remote_id = _action_ids(a)
            out[keys[a.op]].append(Change(local_id, remote_id, _action_name(a)))
    return out


def _with_fields(
    v: Vault, conflicts: Sequence[Conflict], local: Sequence[LocalRecord], remote: Sequence[RemoteRecord]
) -> tuple[Conflict, ...]:
    """Each conflict with the fields that differ between the two sides (names only, never contents)."""
    if not conflicts:
        return ()
    secrets_by_id = {sec.id: sec for sec, _, _ in raw_records(v).all()}
    records = {rec.id: rec for rec in local}
    remote_by_id = {r.id: r for r in remote}
    out: list[Conflict] = []
    for c in conflicts:
        sec = secrets_by_id.get(c.local_id or "")
        r = remote_by_id.get(c.remote_id or "")
        if sec is None or r is None:
            out.append(c)  # one side is gone: the reason says so
            continue
        mine, theirs = _comparable(_secret_fields(sec)), _comparable(dict(r.item))
        names = [wire for wire in mine if mine[wire] != theirs.get(wire)]
        rec = records.get(sec.id)
        if rec is not None and rec.has_value and (rec.link is None or rec.link.base.value != rec.value):
            names.append("value")
        out.append(replace(c, fields=tuple(names)))
    return tuple(out)


def sync(
    v: Vault,
    remote: Remote,
    *,
    direction: Literal["push", "pull", "both"] = "both",
    dry_run: bool = False,
    prefer: Prefer = None,
    progress: Progress | None = None,
    prefer_for: Mapping[str, Prefer] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> SyncReport:
    """Bring the vault and the cloud together; see docs/SYNC.md for the rules.

    ``dry_run`` reads both sides and returns what would happen, writing nothing anywhere.
    ``prefer`` settles conflicts ("local" or "remote"); by default they are reported and
    both sides are left as they are; ``prefer_for`` ({local or remote id: side}) settles single
    secrets, over ``prefer``. Each conflict names the fields that differ. Per-secret failures
    land in ``SyncReport.errors`` and the rest goes on; an auth failure, an unreachable cloud or a malformed response
    stops the sync with a ``RemoteError`` (what was done so far is saved).

    ``concurrency`` (1..16, default 4) is how many cloud writes may be in flight at once; all
    of them hold off together when the cloud answers 429. The vault is read and written by
    the calling thread only. ``remote`` must then be safe to call from several threads
    (``ChatBotKitRemote`` is); pass 1 for a remote that is not.
    """
    if type(concurrency) is not int or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidRequestError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}")
    if direction not in ("push", "pull", "both"):
        raise InvalidRequestError("direction must be push, pull or both")
    if dry_run not in (True, False):
        raise InvalidRequestError("dry_run must be a bool")
    # The cloud first: a wrong token or an unreachable cloud must leave the vault untouched. The
    # listing is mostly waiting on the cloud, so the vault's side is read and fingerprinted
    # meanwhile: reads only, and no value is decrypted before the listing has succeeded.
    lister = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cbk-vault-list")
    try:
        cfg, fresh = _load_config(v)
        fp = _Fingerprints(cfg.key)
        listed = lister.submit(_remote_side, remote, fp)
        records = raw_records(v).all()  # one snapshot: links, the local side, and an unchanged index
        index = _load_index(v)
        token_fp = _token_digest(remote, fp)
        scanned = _scan_local(v, fp, records, token_fp)
        remote_records = listed.result()
    except BaseException:
        lister.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not wait on the network
        raise
    lister.shutdown()
    known = set(index) | {s.link.remote_id for s in scanned if s.link is not None}
    remote_records += [_parse_item(item, fp)[0] for item in _confirm_missing(remote, remote_records, known)]
    local_records, value_cache = _local_records(v, fp, scanned, *_token_check(remote), token_fp)
    del scanned
    p = plan(
        SyncState(cfg.ref, index),
        local_records,
        remote_records,
        direction=direction,
        prefer=prefer,
        prefer_for=prefer_for,
    )
    p = replace(p, conflicts=_with_fields(v, p.conflicts, local_records, remote_records))
    _check_capacity(p, len(local_records))
    if dry_run:
        return _report(p, _planned(p), (), True)
    if fresh:
        # Stored only now: whatever the cloud answered has been checked, and nothing was written before.
        _store_config(v, cfg)
    runner = _Runner(v, remote, fp, cfg, progress, concurrency)
    runner.local_ids = {rec.id for rec in local_records}
    runner.value_cache = value_cache
    # A create's id must be new: not linked, not in the index, not a secret the cloud already listed.
    runner.claimed = set(index) | {r.id for r in remote_records}
    runner.claimed.update(rec.link.remote_id for rec in local_records if rec.link is not None)
    if not p.actions:
        runner.save_index(index, records)  # nothing written: the snapshot is the vault as it is
        return _report(p, runner.done, runner.errors, False)
    try:
        runner.execute(p)
    except BaseException:
        # Keep what is known about links, but never let a second failure hide the first.
        with contextlib.suppress(VaultError):
            runner.save_index(index)
        raise
    runner.save_index(index)
    return _report(p, runner.done, runner.errors, False)
