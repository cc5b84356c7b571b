"""The sync planner: a pure function over (last-synced state, local records, remote records).

No I/O, no clock, no randomness: the runner (``_run.py``) reads the vault and the cloud,
turns them into the small value types below, calls :func:`plan`, and executes the
returned actions. Everything the planner compares is a *fingerprint* (a keyed hash
computed by the runner), never a value: the plan can be printed, logged and tested
without holding a secret.

What "changed" means (the cloud never returns ``value`` and masks
``config.clientSecret``, so only returned fields can be judged on the remote side):

* local changed  := the local fields fingerprint, value fingerprint or clientSecret
  fingerprint differs from the base (the state both sides had at the last sync);
* remote changed := the remote fields fingerprint (masked config, marker key removed)
  or the remote ``updatedAt`` differs from the base. ``updatedAt`` is the only trace a
  value-only change in the cloud leaves, so it counts as a remote change.

Conflict policy (``prefer``): ``None`` leaves both sides untouched and reports the
conflict; ``"local"`` makes the cloud match the vault; ``"remote"`` makes the vault
match the cloud's fields. No policy deletes a local value the cloud never received
unless ``prefer="remote"`` is asked for on a secret deleted in the cloud, and no plan
sends a value the user did not put into a shared secret: a kind the cloud changed over
a local value is a ``kind-changed`` conflict, and a value it turned shared is withheld.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..errors import InvalidRequestError

__all__ = [
    "Action",
    "Adopt",
    "Base",
    "Conflict",
    "CreateRemote",
    "DeleteLocal",
    "DeleteRemote",
    "Forget",
    "Link",
    "LocalRecord",
    "Plan",
    "PullNew",
    "PullUpdate",
    "Rebase",
    "RemoteRecord",
    "SyncState",
    "UpdateRemote",
    "plan",
    "value_only_local",
]

Direction = Literal["push", "pull", "both"]
Prefer = Literal["local", "remote"] | None

DIRECTIONS: Final = ("push", "pull", "both")
PREFERENCES: Final = (None, "local", "remote")


@dataclass(frozen=True, slots=True)
class Base:
    """What both sides held at the last sync, as fingerprints.

    ``value`` is the fingerprint of the local value (None: no value, or unknown);
    ``sent`` says whether the cloud received that value (False for personal secrets,
    which the cloud stores without one); ``updated_at`` is the cloud's ``updatedAt``
    (None: not known yet).
    """

    fields: str
    value: str | None
    secret: str | None
    sent: bool
    updated_at: int | None


@dataclass(frozen=True, slots=True)
class Link:
    """A local record's tie to a cloud secret. ``pending``: an update sent but not yet confirmed."""

    remote_id: str
    base: Base
    ref: str | None = None
    pending: Base | None = None


@dataclass(frozen=True, slots=True)
class LocalRecord:
    id: str
    fields: str
    value: str | None
    secret: str | None
    kind: str = "shared"
    alias: str | None = None
    name: str = ""
    link: Link | None = None
    #: Never pushed (the API-token secret, or meta ``cbkVaultLocalOnly: true``).
    local_only: bool = False
    #: Its value must never be sent: a personal value a pull turned shared (the cloud flipped the
    #: kind and ``prefer="remote"`` took it). Ends when the value changes or the secret is made personal.
    withheld: bool = False

    @property
    def has_value(self) -> bool:
        """Whether the local record holds a value (its fingerprint is set)."""
        return self.value is not None


@dataclass(frozen=True, slots=True)
class RemoteRecord:
    id: str
    fields: str
    updated_at: int
    alias: str | None = None
    name: str = ""
    ref: str | None = None
    created_at: int = 0
    #: The cloud's item as parsed (no value; clientSecret masked); the runner writes it locally.
    item: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: The cloud's kind: a flip over a local value is a conflict, never a silent pull.
    kind: str = "shared"


@dataclass(frozen=True, slots=True)
class SyncState:
    """``vault_ref`` prefixes this vault's markers; ``index`` maps remote id -> (local id, updatedAt)
    for every link that existed at the end of the last sync (a missing local record = a tombstone)."""

    vault_ref: str
    index: Mapping[str, tuple[str, int | None]] = field(default_factory=dict, hash=False)

    def marker(self, local_id: str) -> str:
        """The ``meta.cbkVaultRef`` marker a pushed copy of ``local_id`` carries in the cloud."""
        return f"{self.vault_ref}:{local_id}"


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRemote:
    local_id: str
    name: str = ""
    op: Literal["create-remote"] = "create-remote"


@dataclass(frozen=True, slots=True)
class UpdateRemote:
    local_id: str
    remote_id: str
    prior: Base
    send_value: bool
    ref: str | None = None
    name: str = ""
    op: Literal["update-remote"] = "update-remote"


@dataclass(frozen=True, slots=True)
class DeleteRemote:
    remote_id: str
    local_id: str
    name: str = ""
    op: Literal["delete-remote"] = "delete-remote"


@dataclass(frozen=True, slots=True)
class Adopt:
    """Link a local record to a cloud secret it already matches (marker or alias), writing only locally."""

    local_id: str
    remote: RemoteRecord
    base: Base
    op: Literal["adopt"] = "adopt"


@dataclass(frozen=True, slots=True)
class PullNew:
    remote: RemoteRecord
    #: False when one of this vault's markers names the cloud id as a local id: pulling the
    #: secret under that id would make it the owner of the marker in the next plan.
    keep_id: bool = True
    op: Literal["pull-new"] = "pull-new"


@dataclass(frozen=True, slots=True)
class PullUpdate:
    local_id: str
    remote: RemoteRecord
    prior: Base
    op: Literal["pull-update"] = "pull-update"


@dataclass(frozen=True, slots=True)
class DeleteLocal:
    local_id: str
    remote_id: str
    name: str = ""
    op: Literal["delete-local"] = "delete-local"


@dataclass(frozen=True, slots=True)
class Rebase:
    """Both sides already agree: record the new base (and drop a confirmed pending update)."""

    local_id: str
    remote_id: str
    base: Base
    ref: str | None = None
    op: Literal["rebase"] = "rebase"


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop a tombstone whose cloud secret is gone too."""

    remote_id: str
    op: Literal["forget"] = "forget"


Action = CreateRemote | UpdateRemote | DeleteRemote | Adopt | PullNew | PullUpdate | DeleteLocal | Rebase | Forget

#: The order the runner executes in: local bookkeeping first, then remote deletes (they free
#: aliases), updates, creates, then local writes from the cloud.
_ORDER: Final[dict[str, int]] = {
    "adopt": 0,
    "rebase": 0,
    "forget": 0,
    "delete-remote": 1,
    "update-remote": 2,
    "create-remote": 3,
    "delete-local": 4,
    "pull-update": 5,
    "pull-new": 6,
}

_REMOTE_WRITES: Final = frozenset({"create-remote", "update-remote", "delete-remote"})
_LOCAL_WRITES: Final = frozenset({"pull-new", "pull-update", "delete-local"})

ConflictReason = Literal[
    "both-changed",  # edited on both sides since the last sync
    "deleted-remotely",  # deleted in the cloud, edited locally (or holding a value the cloud never had)
    "deleted-locally",  # deleted locally, edited in the cloud (or unknown whether it was)
    "alias-taken",  # the same alias on an unlinked local secret and a different cloud secret
    "kind-changed",  # the cloud changed the kind (shared/personal) of a secret that holds a value here
    "link-shared",  # two or more local secrets are linked to one cloud secret (never settled by prefer)
]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A secret changed on both sides. ``resolution`` is the side that won, or None (left alone)."""

    reason: ConflictReason
    local_id: str | None
    remote_id: str | None
    name: str = ""
    resolution: Literal["local", "remote"] | None = None
    #: The fields that differ between the two sides (cloud names: ``description``, ``meta``...,
    #: and ``value`` when the vault's value changed since the last sync). Filled in by the runner,
    #: which sees the fields; the planner sees fingerprints only.
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    direction: Direction
    actions: tuple[Action, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def writes_remote(self) -> bool:
        """Whether applying the plan would change anything in the cloud."""
        return any(a.op in _REMOTE_WRITES for a in self.actions)


def value_only_local(record: LocalRecord, base: Base | None) -> bool:
    """True when the record holds a value the cloud never received (so deleting it would lose it)."""
    if not record.has_value:
        return False
    return base is None or not (base.sent and base.value == record.value)


def _local_changed(record: LocalRecord, base: Base) -> bool:
    """The vault's side moved on from the base: fields, value or clientSecret."""
    return record.fields != base.fields or record.value != base.value or record.secret != base.secret


def _send_value(record: LocalRecord, base: Base) -> bool:
    """Send ``value`` on update? A value only for shared secrets (the cloud 409s personal ones), only when
    the local value moved on from what the cloud has, and a clear (null) only when the cloud is
    known to hold our previous value: a pulled secret's unknown value is never wiped. A secret that
    became personal gets a null when the cloud holds the value it had while shared."""
    if record.kind != "shared":
        # Turned personal: the cloud still holds the value sent while it was shared. Clear it
        # (the cloud accepts null with personal); a value it never had needs no clearing.
        return base.sent and base.value is not None
    if record.has_value:
        # A withheld value came from a personal secret: the user never put it into a shared one.
        return not record.withheld and (record.value != base.value or not base.sent)
    return base.value is not None and base.sent


class _Planner:
    def __init__(
        self, state: SyncState, direction: Direction, prefer: Prefer, prefer_for: Mapping[str, Prefer] | None = None
    ) -> None:
        self.state = state
        self.push = direction in ("push", "both")
        self.pull = direction in ("pull", "both")
        self.prefer = prefer
        self.prefer_for: Mapping[str, Prefer] = prefer_for or {}
        self.actions: list[Action] = []
        self.conflicts: list[Conflict] = []
        self.marked_ids: frozenset[str] = frozenset()

    def conflict(
        self,
        reason: ConflictReason,
        local_id: str | None,
        remote_id: str | None,
        name: str,
        *,
        on_local: list[Action] | None = None,
        on_remote: list[Action] | None = None,
    ) -> None:
        """Record a conflict and, if ``prefer`` (or ``prefer_for`` this secret) picks a side this direction
        may write, its fix."""
        resolution: Literal["local", "remote"] | None = None
        side = self.prefer
        for key in (local_id, remote_id):
            if key is not None and key in self.prefer_for:
                side = self.prefer_for[key]
                break
        if side == "local" and on_local is not None and self.allowed(on_local):
            self.actions.extend(on_local)
            resolution = "local"
        elif side == "remote" and on_remote is not None and self.allowed(on_remote):
            self.actions.extend(on_remote)
            resolution = "remote"
        self.conflicts.append(Conflict(reason, local_id, remote_id, name, resolution))

    def allowed(self, actions: list[Action]) -> bool:
        """Cloud writes need push, vault data writes need pull; link bookkeeping is always allowed."""
        for a in actions:
            if a.op in _REMOTE_WRITES and not self.push:
                return False
            if a.op in _LOCAL_WRITES and not self.pull:
                return False
        return True

    def pair(self, rec: LocalRecord, link: Link, r: RemoteRecord) -> None:
        """A linked record whose cloud secret still exists."""
        base = link.base
        confirmed = False
        if link.pending is not None and r.fields == link.pending.fields:
            # Our last update reached the cloud (its fields are there) but the run stopped before
            # the base was saved: its updatedAt is ours. The value it carried is not confirmed,
            # so the old value fingerprint stays and a value change is simply sent again.
            base = Base(link.pending.fields, base.value, base.secret, base.sent, r.updated_at)
            confirmed = True
        local_changed = _local_changed(rec, base)
        remote_changed = r.fields != base.fields or r.updated_at != base.updated_at
        ref = r.ref if r.ref is not None else link.ref
        rebase = Rebase(rec.id, r.id, Base(r.fields, base.value, base.secret, base.sent, r.updated_at), ref)
        update = UpdateRemote(rec.id, r.id, base, _send_value(rec, base), ref, rec.name)
        pull = PullUpdate(rec.id, r, base)
        if not local_changed and not remote_changed:
            if confirmed or link.pending is not None:
                self.actions.append(rebase)
        elif local_changed and not remote_changed:
            if self.push:
                self.actions.append(update)
            elif link.pending is not None:
                self.actions.append(Rebase(rec.id, r.id, base, ref))
        elif remote_changed and not local_changed:
            if rec.has_value and r.kind != rec.kind:
                # Pulling the kind would turn a personal value into one a later push uploads
                # (or a shared one personal): only a person, or an explicit prefer, decides that.
                self.conflict("kind-changed", rec.id, r.id, rec.name or r.name, on_local=[update], on_remote=[pull])
            elif self.pull:
                self.actions.append(pull)
        elif rec.fields == r.fields and rec.value == base.value and rec.secret == base.secret:
            self.actions.append(rebase)  # both made the same change
        else:
            self.conflict("both-changed", rec.id, r.id, rec.name or r.name, on_local=[update], on_remote=[pull])

    def remote_gone(self, rec: LocalRecord, link: Link) -> None:
        """A linked record whose cloud secret was deleted."""
        base = link.base
        local_changed = _local_changed(rec, base)
        drop = DeleteLocal(rec.id, link.remote_id, rec.name)
        if not local_changed and not value_only_local(rec, base):
            if self.pull:
                self.actions.append(drop)
            return
        self.conflict(
            "deleted-remotely",
            rec.id,
            link.remote_id,
            rec.name,
            on_local=[CreateRemote(rec.id, rec.name)],
            on_remote=[drop],
        )

    def tombstone(self, remote_id: str, local_id: str, updated_at: int | None, r: RemoteRecord | None) -> None:
        """A cloud secret whose local record was deleted since the last sync."""
        if r is None:
            self.actions.append(Forget(remote_id))
            return
        delete = DeleteRemote(remote_id, local_id, r.name)
        if updated_at is not None and r.updated_at == updated_at:
            if self.push:
                self.actions.append(delete)
            return
        self.conflict("deleted-locally", local_id, remote_id, r.name, on_local=[delete], on_remote=[self.pull_new(r)])

    def pull_new(self, r: RemoteRecord) -> PullNew:
        """The action that copies a cloud secret into the vault, keeping its id when no marker claims it."""
        return PullNew(r, keep_id=r.id not in self.marked_ids)

    def run(self, local: Sequence[LocalRecord], remote: Sequence[RemoteRecord]) -> None:
        """Plan every pair of local and remote records (the whole planner, in one pass)."""
        state = self.state
        remote_by_id = {r.id: r for r in remote}
        local_by_id = {rec.id: rec for rec in local}
        linked: dict[str, LocalRecord] = {}
        shared: set[str] = set()
        for rec in local:
            if rec.link is not None and linked.setdefault(rec.link.remote_id, rec) is not rec:
                shared.add(rec.link.remote_id)
        claimed: set[str] = set(linked)

        # A marker naming one of our local records that is not (or no longer) linked to a live
        # cloud secret: a push created it and stopped before saving the link. Re-link, never re-create.
        prefix = state.vault_ref + ":"
        self.marked_ids = frozenset(
            r.ref[len(prefix) :] for r in remote if r.ref is not None and r.ref.startswith(prefix)
        )
        adopt: dict[str, RemoteRecord] = {}
        orphans: list[tuple[RemoteRecord, str]] = []
        for r in remote:
            if r.id in claimed or r.ref is None or not r.ref.startswith(prefix):
                continue
            lid = r.ref[len(prefix) :]
            owner = local_by_id.get(lid)
            if owner is None:
                if r.id not in state.index:
                    orphans.append((r, lid))
            elif owner.local_only:
                claimed.add(r.id)  # pushed before it was marked local-only: leave the cloud copy alone
            elif lid not in adopt and (
                owner.link is None or (owner.link.remote_id not in remote_by_id and owner.link.remote_id not in shared)
            ):
                adopt[lid] = r
                claimed.add(r.id)

        # Links an Adopt replaces: their cloud secret is gone, so their index entry must go too.
        relinked = {rec.link.remote_id for lid in adopt if (rec := local_by_id[lid]).link is not None}

        # Tombstones: links that existed at the last sync whose local record is gone.
        for rid, (lid, updated_at) in sorted(state.index.items()):
            if rid in claimed and rid not in relinked:
                continue
            claimed.add(rid)
            self.tombstone(rid, lid, updated_at, remote_by_id.get(rid))
        for r, lid in orphans:
            if r.id not in claimed:
                claimed.add(r.id)
                self.tombstone(r.id, lid, None, r)  # whether the cloud copy changed is unknown: ask

        # Same alias on an unlinked local secret and a cloud-only one: two secrets claim one name.
        # (A clash with a linked secret is left to the cloud's and the vault's own alias checks at
        # run time: the plan's updates and pulls may free the alias first; if not, it is reported.)
        remote_alias = {r.alias: r for r in remote if r.alias}
        pinned_alias = {rec.alias for rec in local if rec.alias and rec.local_only}
        for rec in local:
            link = rec.link
            if link is not None and link.remote_id in shared:
                # Two records on one cloud secret (a cloud that answered two creates with one id):
                # pairing either would overwrite the other with it, and one cloud delete would
                # delete both. Neither side is touched until the user unlinks one.
                self.conflict("link-shared", rec.id, link.remote_id, rec.name)
                continue
            if rec.local_only:
                continue
            if rec.id in adopt:
                r = adopt[rec.id]
                base = Base(r.fields, None, None, False, r.updated_at)
                self.actions.append(Adopt(rec.id, r, base))
                self.pair(rec, Link(r.id, base, r.ref), r)
            elif link is not None and link.remote_id in remote_by_id:
                # (A marker naming another of our records is not taken as a shared link: markers are
                # the cloud's word and change as records come and go, so a conflict on them would not
                # settle; fuzz_plan found a plan that differed after its own application.)
                if linked.get(link.remote_id) is rec:
                    self.pair(rec, link, remote_by_id[link.remote_id])
            elif link is not None:
                self.remote_gone(rec, link)
            else:
                other = remote_alias.get(rec.alias) if rec.alias else None
                if other is None or other.id in claimed:
                    if self.push:
                        self.actions.append(CreateRemote(rec.id, rec.name))
                else:
                    claimed.add(other.id)
                    base = Base(other.fields, None, None, False, other.updated_at)
                    adopt_action = Adopt(rec.id, other, base)
                    self.conflict(
                        "alias-taken",
                        rec.id,
                        other.id,
                        rec.name,
                        on_local=[
                            adopt_action,
                            UpdateRemote(rec.id, other.id, base, _send_value(rec, base), other.ref, rec.name),
                        ],
                        on_remote=[adopt_action, PullUpdate(rec.id, other, base)],
                    )

        for r in remote:
            if r.id in claimed:
                continue
            if r.alias and r.alias in pinned_alias:
                self.conflict("alias-taken", None, r.id, r.name)  # a local-only secret holds that alias
            elif self.pull:
                self.actions.append(self.pull_new(r))


def plan(
    state: SyncState,
    local: Sequence[LocalRecord],
    remote: Sequence[RemoteRecord],
    *,
    direction: Direction = "both",
    prefer: Prefer = None,
    prefer_for: Mapping[str, Prefer] | None = None,
) -> Plan:
    """What to do so both sides agree. Pure: equal inputs give equal plans.

    ``prefer_for`` maps a local or remote id to the side that wins that secret's conflict,
    over ``prefer``.

    ``direction="push"`` only writes to the cloud (plus local link bookkeeping),
    ``"pull"`` only writes to the vault, ``"both"`` does both. A secret that exists only
    in the cloud is pulled with no value and never overwritten or deleted by a push.
    """
    if direction not in DIRECTIONS:
        raise InvalidRequestError("direction must be push, pull or both")
    if prefer not in PREFERENCES:
        raise InvalidRequestError("prefer must be None, 'local' or 'remote'")
    if prefer_for is not None and (
        not isinstance(prefer_for, Mapping) or any(side not in ("local", "remote") for side in prefer_for.values())
    ):
        raise InvalidRequestError("prefer_for must map secret ids to 'local' or 'remote'")
    planner = _Planner(state, direction, prefer, prefer_for)
    planner.run(local, remote)
    actions = sorted(planner.actions, key=lambda a: _ORDER[a.op])  # stable: keeps Adopt before its follow-up
    return Plan(direction, tuple(actions), tuple(planner.conflicts))
