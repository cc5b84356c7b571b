"""Property tests of the pure sync planner, against an in-memory model of the runner.

The model applies each action the way vault/sync/_run.py does (same base bookkeeping),
on fingerprints only, so Hypothesis can explore thousands of (state, local, remote)
combinations in a second: small alphabets make collisions (same fields, same alias,
markers, stale links, pending updates, tombstones) common.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vault.sync._plan import (
    Adopt,
    Base,
    CreateRemote,
    DeleteLocal,
    DeleteRemote,
    Forget,
    Link,
    LocalRecord,
    Plan,
    PullNew,
    PullUpdate,
    Rebase,
    RemoteRecord,
    SyncState,
    UpdateRemote,
    plan,
    value_only_local,
)

REF = "vr"
DIRECTIONS = ("push", "pull", "both")
FIELDS = st.sampled_from(["f1", "f2", "f3"])
VALUES = st.sampled_from([None, "v1", "v2"])
SECRETS = st.sampled_from([None, "s1"])
STAMPS = st.sampled_from([1, 2, 3])
KINDS = st.sampled_from(["shared", "personal"])


@dataclass
class World:
    local: dict[str, LocalRecord]
    remote: dict[str, RemoteRecord]
    index: dict[str, tuple[str, int | None]]
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def state(self) -> SyncState:
        return SyncState(REF, dict(self.index))

    def plan(self, direction: Any, prefer: Any = None) -> Plan:
        local, remote = list(self.local.values()), list(self.remote.values())
        return plan(self.state(), local, remote, direction=direction, prefer=prefer)

    def pushed_base(self, rec: LocalRecord, send_value: bool, prior: Base | None, u: int) -> Base:
        if rec.value is None:
            sent = True
        elif rec.kind != "shared" or rec.withheld:
            sent = False
        else:
            sent = send_value or (prior is not None and prior.sent and prior.value == rec.value)
        return Base(rec.fields, rec.value, rec.secret, sent, u)

    def apply(self, p: Plan) -> None:
        dropped: set[str] = set()
        for a in p.actions:
            if isinstance(a, CreateRemote):
                rec = self.local[a.local_id]
                rid = f"new{next(self.ids)}"
                u = next(self.clock)
                ref = f"{REF}:{rec.id}"
                self.remote[rid] = RemoteRecord(rid, rec.fields, u, rec.alias, rec.name, ref, kind=rec.kind)
                base = self.pushed_base(rec, rec.kind == "shared" and rec.has_value and not rec.withheld, None, u)
                if rec.link is not None:
                    dropped.add(rec.link.remote_id)
                self.local[rec.id] = replace(rec, link=Link(rid, base, f"{REF}:{rec.id}"))
            elif isinstance(a, UpdateRemote):
                rec = self.local[a.local_id]
                u = next(self.clock)
                r = self.remote[a.remote_id]
                self.remote[a.remote_id] = replace(
                    r, fields=rec.fields, alias=rec.alias, updated_at=u, ref=a.ref, kind=rec.kind
                )
                base = self.pushed_base(rec, a.send_value, a.prior, u)
                self.local[rec.id] = replace(rec, link=Link(a.remote_id, base, a.ref))
            elif isinstance(a, DeleteRemote):
                self.remote.pop(a.remote_id, None)
                dropped.add(a.remote_id)
            elif isinstance(a, DeleteLocal):
                self.local.pop(a.local_id, None)
                dropped.add(a.remote_id)
            elif isinstance(a, Adopt):
                rec = self.local[a.local_id]
                self.local[rec.id] = replace(rec, link=Link(a.remote.id, a.base, a.remote.ref))
            elif isinstance(a, Rebase):
                rec = self.local[a.local_id]
                self.local[rec.id] = replace(rec, link=Link(a.remote_id, a.base, a.ref))
            elif isinstance(a, PullNew):
                r = a.remote
                lid = r.id if a.keep_id and r.id not in self.local else f"pulled{next(self.ids)}"
                base = Base(r.fields, None, None, True, r.updated_at)
                link = Link(r.id, base, r.ref)
                self.local[lid] = LocalRecord(lid, r.fields, None, None, r.kind, r.alias, r.name, link)
            elif isinstance(a, PullUpdate):
                rec, r = self.local[a.local_id], a.remote
                sent = rec.value is None or (a.prior.sent and a.prior.value == rec.value)
                base = Base(r.fields, rec.value, rec.secret, sent, r.updated_at)
                # The runner's hold: a value a pull turned from personal to shared is never sent.
                flipped = rec.has_value and rec.kind != "shared" and r.kind == "shared"
                withheld = r.kind == "shared" and rec.has_value and (rec.withheld or flipped)
                self.local[rec.id] = replace(
                    rec, fields=r.fields, alias=r.alias, kind=r.kind, withheld=withheld, link=Link(r.id, base, r.ref)
                )
            elif isinstance(a, Forget):
                dropped.add(a.remote_id)
            else:  # pragma: no cover - every action type is handled above
                raise AssertionError(a)
        # The runner's index rewrite: every live link, plus tombstones not settled.
        new = {rec.link.remote_id: (rec.id, rec.link.base.updated_at) for rec in self.local.values() if rec.link}
        for rid, entry in self.index.items():
            if rid not in new and rid not in dropped:
                new[rid] = entry
        self.index = new


@st.composite
def bases(draw: st.DrawFn) -> Base:
    return Base(draw(FIELDS), draw(VALUES), draw(SECRETS), draw(st.booleans()), draw(st.none() | STAMPS))


@st.composite
def worlds(draw: st.DrawFn) -> World:
    lids = draw(st.lists(st.sampled_from(["l1", "l2", "l3", "l4", "r1"]), unique=True, max_size=5))
    rids = draw(st.lists(st.sampled_from(["r1", "r2", "r3", "r4", "x9"]), unique=True, max_size=5))
    aliases = st.sampled_from([None, "a", "b", "c"])
    local: dict[str, LocalRecord] = {}
    used: set[str] = set()
    for lid in lids:
        alias = draw(aliases)
        if alias in used:
            alias = None  # the vault keeps aliases unique
        if alias:
            used.add(alias)
        link = None
        if draw(st.booleans()):
            rid = draw(st.sampled_from(["r1", "r2", "r3", "r4", "gone"]))
            ref = draw(st.sampled_from([None, f"{REF}:{lid}", "other:zz"]))
            link = Link(rid, draw(bases()), ref, draw(st.none() | bases()))
        value, kind = draw(VALUES), draw(KINDS)
        local[lid] = LocalRecord(
            lid,
            draw(FIELDS),
            value,
            draw(SECRETS),
            kind,
            alias,
            lid,
            link,
            draw(st.booleans()) and draw(st.booleans()),  # local_only, now and then
            # A value a pull turned shared, held back (only a shared record holding a value has one).
            kind == "shared" and value is not None and draw(st.booleans()),
        )
    remote: dict[str, RemoteRecord] = {}
    used = set()
    for rid in rids:
        alias = draw(aliases)
        if alias in used:
            alias = None
        if alias:
            used.add(alias)
        ref = draw(st.sampled_from([None, "other:zz", *(f"{REF}:{lid}" for lid in ["l1", "l2", "l5"])]))
        remote[rid] = RemoteRecord(rid, draw(FIELDS), draw(STAMPS), alias, rid, ref, kind=draw(KINDS))
    index: dict[str, tuple[str, int | None]] = {}
    for rid in draw(st.lists(st.sampled_from(["r1", "r2", "r3", "r4", "x9", "gone"]), unique=True, max_size=4)):
        index[rid] = (draw(st.sampled_from(["l1", "l2", "l9"])), draw(st.none() | STAMPS))
    return World(local, remote, index)


DIRECTION = st.sampled_from(DIRECTIONS)
PREFER = st.sampled_from([None, "local", "remote"])


@settings(max_examples=300, deadline=None)
@given(worlds(), DIRECTION, PREFER)
def test_running_the_plan_then_planning_again_gives_an_empty_plan(w: World, direction: Any, prefer: Any) -> None:
    first = w.plan(direction, prefer)
    w.apply(first)
    second = w.plan(direction, prefer)
    assert second.actions == (), (first, second)
    # What is left are conflicts nobody settled; settled ones do not come back.
    assert all(c.resolution is None for c in second.conflicts)


@settings(max_examples=300, deadline=None)
@given(worlds(), DIRECTION, PREFER)
def test_a_second_run_settles_everything_a_both_way_sync_can(w: World, direction: Any, prefer: Any) -> None:
    w.apply(w.plan(direction, prefer))
    w.apply(w.plan("both", "local"))
    final = w.plan("both", None)
    assert final.actions == ()
    # Only a person can settle a cloud secret whose alias a local-only secret holds, or two local
    # secrets linked to one cloud secret (either side winning would overwrite or delete the other).
    assert all((c.reason == "alias-taken" and c.local_id is None) or c.reason == "link-shared" for c in final.conflicts)


def _only_local_values(w: World) -> dict[str, str | None]:
    out = {}
    for rec in w.local.values():
        base = rec.link.base if rec.link is not None else None
        if value_only_local(rec, base):
            out[rec.id] = rec.value
    return out


@settings(max_examples=300, deadline=None)
@given(worlds(), DIRECTION, st.sampled_from([None, "local"]))
def test_no_input_drops_a_value_that_exists_only_locally(w: World, direction: Any, prefer: Any) -> None:
    precious = _only_local_values(w)
    p = w.plan(direction, prefer)
    assert not any(isinstance(a, DeleteLocal) and a.local_id in precious for a in p.actions)
    w.apply(p)
    for lid, value in precious.items():
        assert lid in w.local and w.local[lid].value == value


@settings(max_examples=300, deadline=None)
@given(worlds(), DIRECTION)
def test_only_an_explicit_prefer_remote_on_a_conflict_drops_a_local_only_value(w: World, direction: Any) -> None:
    precious = _only_local_values(w)
    p = w.plan(direction, "remote")
    settled = {c.local_id for c in p.conflicts if c.resolution == "remote" and c.reason == "deleted-remotely"}
    for a in p.actions:
        if isinstance(a, DeleteLocal) and a.local_id in precious:
            assert a.local_id in settled


@settings(max_examples=300, deadline=None)
@given(worlds(), DIRECTION, PREFER)
def test_push_never_writes_over_or_deletes_a_remote_only_secret(w: World, direction: Any, prefer: Any) -> None:
    # Remote-only: not linked, not in the index, no marker of ours.
    linked = {rec.link.remote_id for rec in w.local.values() if rec.link}
    ours = {r.id for r in w.remote.values() if r.ref and r.ref.startswith(REF + ":")}
    alias_of_unlinked = {rec.alias for rec in w.local.values() if rec.link is None and rec.alias}
    remote_only = {
        rid
        for rid, r in w.remote.items()
        if rid not in linked and rid not in w.index and rid not in ours and r.alias not in alias_of_unlinked
    }
    p = w.plan(direction, prefer)
    for a in p.actions:
        if isinstance(a, (UpdateRemote, DeleteRemote)):
            assert a.remote_id not in remote_only


@settings(max_examples=300, deadline=None)
@given(worlds(), DIRECTION, PREFER)
def test_no_plan_sends_a_withheld_value_or_pulls_a_kind_flip_over_a_value(
    w: World, direction: Any, prefer: Any
) -> None:
    p = w.plan(direction, prefer)
    settled = {c.local_id for c in p.conflicts if c.resolution == "remote"}
    for a in p.actions:
        if isinstance(a, UpdateRemote):
            rec = w.local[a.local_id]
            assert not (a.send_value and rec.kind == "shared" and rec.withheld), "a withheld value was sent"
        if isinstance(a, PullUpdate):
            rec = w.local[a.local_id]
            if rec.has_value and rec.kind != a.remote.kind:
                assert prefer == "remote" and rec.id in settled, "a kind flip was pulled over a value unasked"
    w.apply(p)
    for a in w.plan("both", "local").actions:
        if isinstance(a, UpdateRemote):
            rec = w.local[a.local_id]
            assert not (a.send_value and rec.kind == "shared" and rec.withheld), "a withheld value was sent"


@settings(max_examples=150, deadline=None)
@given(worlds(), PREFER)
def test_push_only_never_writes_vault_data_and_pull_only_never_writes_the_cloud(w: World, prefer: Any) -> None:
    assert not any(isinstance(a, (PullNew, PullUpdate, DeleteLocal)) for a in w.plan("push", prefer).actions)
    assert not w.plan("pull", prefer).writes_remote


def test_a_plan_is_a_pure_function_of_its_inputs() -> None:
    rec = LocalRecord("l1", "f1", "v1", None)
    r = RemoteRecord("r1", "f2", 5)
    a = plan(SyncState(REF), [rec], [r])
    b = plan(SyncState(REF), [rec], [r])
    assert a == b and [x.op for x in a.actions] == ["create-remote", "pull-new"]


def test_personal_secrets_never_send_a_value() -> None:
    base = Base("f1", "v1", None, False, 1)
    rec = LocalRecord("l1", "f2", "v2", None, "personal", link=Link("r1", base))
    (a,) = plan(SyncState(REF), [rec], [RemoteRecord("r1", "f1", 1)]).actions
    assert isinstance(a, UpdateRemote) and a.send_value is False


def test_a_kind_flip_from_the_cloud_over_a_value_is_a_conflict() -> None:
    base = Base("f1", "v1", None, False, 1)
    rec = LocalRecord("l1", "f1", "v1", None, "personal", link=Link("r1", base))
    flipped = RemoteRecord("r1", "f2", 2, kind="shared")
    p = plan(SyncState(REF), [rec], [flipped])
    assert p.actions == () and [(c.reason, c.resolution) for c in p.conflicts] == [("kind-changed", None)]
    (fix,) = plan(SyncState(REF), [rec], [flipped], prefer="local").actions
    assert isinstance(fix, UpdateRemote) and fix.send_value is False  # the personal kind goes back, no value
    (pull,) = plan(SyncState(REF), [rec], [flipped], prefer="remote").actions
    assert isinstance(pull, PullUpdate)
    # Without a value there is nothing to leak: an ordinary pull.
    empty = LocalRecord("l1", "f1", None, None, "personal", link=Link("r1", Base("f1", None, None, True, 1)))
    (pull,) = plan(SyncState(REF), [empty], [flipped]).actions
    assert isinstance(pull, PullUpdate)


def test_a_withheld_value_is_never_sent() -> None:
    base = Base("f1", "v1", None, False, 1)
    rec = LocalRecord("l1", "f2", "v1", None, "shared", link=Link("r1", base), withheld=True)
    (a,) = plan(SyncState(REF), [rec], [RemoteRecord("r1", "f1", 1)]).actions
    assert isinstance(a, UpdateRemote) and a.send_value is False


def test_an_unknown_cloud_value_is_never_cleared() -> None:
    # A pulled secret: the vault has no value and never had one; editing its name must not send value=null.
    pulled = Base("f1", None, None, True, 1)
    rec = LocalRecord("l1", "f2", None, None, link=Link("r1", pulled))
    (a,) = plan(SyncState(REF), [rec], [RemoteRecord("r1", "f1", 1)]).actions
    assert isinstance(a, UpdateRemote) and a.send_value is False
    # ... but a value the cloud got from us and that was cleared here is cleared there too.
    ours = Base("f1", "v1", None, True, 1)
    rec = LocalRecord("l1", "f1", None, None, link=Link("r1", ours))
    (a,) = plan(SyncState(REF), [rec], [RemoteRecord("r1", "f1", 1)]).actions
    assert isinstance(a, UpdateRemote) and a.send_value is True


def test_a_confirmed_pending_update_is_not_a_conflict() -> None:
    # The update reached the cloud (its fields are there, updatedAt moved), the base was not saved.
    base = Base("f1", "v1", None, True, 1)
    pending = Base("f2", "v2", None, True, None)
    rec = LocalRecord("l1", "f2", "v2", None, link=Link("r1", base, pending=pending))
    p = plan(SyncState(REF), [rec], [RemoteRecord("r1", "f2", 7)])
    assert p.conflicts == ()
    (a,) = p.actions
    assert isinstance(a, UpdateRemote) and a.send_value  # the value is not confirmed: send it again


def test_bad_arguments_are_typed_errors() -> None:
    import pytest

    import vault

    with pytest.raises(vault.InvalidRequestError):
        plan(SyncState(REF), [], [], direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(vault.InvalidRequestError):
        plan(SyncState(REF), [], [], prefer="mine")  # type: ignore[arg-type]
