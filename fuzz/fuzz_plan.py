"""Fuzz target: the pure sync planner, ``vault.sync._plan.plan``, against the runner's model.

Fuzzer bytes are decoded with ``atheris.FuzzedDataProvider`` into a direction, a conflict
policy and a world: the last-synced state (the index of links, tombstones included), local
records (links with bases and pending updates, aliases, markers, local-only flags) and
remote records. The alphabets are small (three field fingerprints, two values, a handful of
ids and aliases) so collisions, stale links, orphaned markers and alias clashes are the
common case, and the worlds are bigger than the Hypothesis tests draw. Local ids, remote
ids and the aliases on each side are unique, as the vault and the cloud keep them.

The planner's documented invariants are asserted on every input, applying plans with the
in-memory model of the runner from ``tests/test_sync_plan.py`` (the same one the property
tests use):

* only documented ``VaultError`` subclasses escape (an invalid direction or policy is a
  typed ``InvalidRequestError``; a valid one never raises);
* planning is a pure function (equal inputs, equal plans);
* push never writes vault data, pull never writes the cloud;
* no action drops a value that exists only locally, unless ``prefer="remote"`` settles a
  ``deleted-remotely`` conflict, and after applying the plan every such value is still there;
* a push never updates or deletes a secret that exists only in the cloud;
* no update sends a withheld value (a personal value a pull turned shared), and a kind the cloud
  changed over a local value is pulled only when ``prefer="remote"`` settles that conflict;
* planning again after applying the plan gives no actions, and no settled conflict returns;
* a second ``both``/``prefer="local"`` run settles everything but the alias clashes only a
  person can (a cloud secret whose alias a local-only secret holds).

Run: ``python fuzz/fuzz_plan.py -max_total_time=60`` (see fuzz/README.md).
"""

from __future__ import annotations

import copy
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris
from _common import main, write_seeds

with atheris.instrument_imports():
    import vault
    from vault.sync import _plan
    from vault.sync._plan import (
        Base,
        DeleteLocal,
        DeleteRemote,
        Link,
        LocalRecord,
        PullUpdate,
        RemoteRecord,
        UpdateRemote,
    )

# After the instrumented import, so the model uses the same (instrumented) planner module.
from tests.test_sync_plan import REF, World, _only_local_values

DIRECTIONS = ("push", "pull", "both")
PREFERENCES = (None, "local", "remote")
FIELDS = ("f1", "f2", "f3")
VALUES = (None, "v1", "v2")
SECRETS = (None, "s1")
STAMPS = (1, 2, 3)
LOCAL_IDS = ("l1", "l2", "l3", "l4", "l5", "l6", "r1")
REMOTE_IDS = ("r1", "r2", "r3", "r4", "r5", "x9", "l1")
LINK_TARGETS = ("r1", "r2", "r3", "r4", "r5", "gone")
ALIASES = (None, "a", "b", "c", "d")
KINDS = ("shared", "personal")
MAX_RECORDS = 7


def _pick(fdp: Any, options: tuple[Any, ...]) -> Any:
    return options[fdp.ConsumeIntInRange(0, len(options) - 1)]


def _base(fdp: Any) -> Base:
    stamp = None if fdp.ConsumeBool() else _pick(fdp, STAMPS)
    return Base(_pick(fdp, FIELDS), _pick(fdp, VALUES), _pick(fdp, SECRETS), fdp.ConsumeBool(), stamp)


def decode(data: bytes) -> tuple[World, str, str | None]:
    fdp = atheris.FuzzedDataProvider(data)
    # Now and then a direction or policy the planner must refuse with a typed error.
    direction = _pick(fdp, (*DIRECTIONS, "sideways")) if fdp.ConsumeIntInRange(0, 15) == 0 else _pick(fdp, DIRECTIONS)
    prefer = _pick(fdp, (*PREFERENCES, "mine")) if fdp.ConsumeIntInRange(0, 15) == 0 else _pick(fdp, PREFERENCES)
    local: dict[str, LocalRecord] = {}
    used: set[str] = set()
    for _ in range(fdp.ConsumeIntInRange(0, MAX_RECORDS)):
        lid = _pick(fdp, LOCAL_IDS)
        alias = _pick(fdp, ALIASES)
        if alias in used:
            alias = None  # the vault keeps aliases unique
        link = None
        if fdp.ConsumeBool():
            ref = _pick(fdp, (None, f"{REF}:{lid}", "other:zz", f"{REF}:l9"))
            pending = _base(fdp) if fdp.ConsumeIntInRange(0, 3) == 0 else None
            link = Link(_pick(fdp, LINK_TARGETS), _base(fdp), ref, pending)
        rec = LocalRecord(
            lid,
            _pick(fdp, FIELDS),
            _pick(fdp, VALUES),
            _pick(fdp, SECRETS),
            _pick(fdp, ("shared", "personal")),
            alias,
            lid,
            link,
            fdp.ConsumeIntInRange(0, 4) == 0,
        )
        if lid in local:
            continue  # ids are unique in a vault
        if alias:
            used.add(alias)
        local[lid] = rec
    remote: dict[str, RemoteRecord] = {}
    used = set()
    for _ in range(fdp.ConsumeIntInRange(0, MAX_RECORDS)):
        rid = _pick(fdp, REMOTE_IDS)
        alias = _pick(fdp, ALIASES)
        if alias in used:
            alias = None
        ref = _pick(fdp, (None, "other:zz", *(f"{REF}:{lid}" for lid in ("l1", "l2", "l3", "l5", "l9"))))
        r = RemoteRecord(rid, _pick(fdp, FIELDS), _pick(fdp, STAMPS), alias, rid, ref)
        if rid in remote:
            continue
        if alias:
            used.add(alias)
        remote[rid] = r
    index: dict[str, tuple[str, int | None]] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 5)):
        rid = _pick(fdp, (*REMOTE_IDS, "gone"))
        index[rid] = (_pick(fdp, ("l1", "l2", "l3", "l9")), None if fdp.ConsumeBool() else _pick(fdp, STAMPS))
    # Drawn last, so older corpus inputs decode to the worlds they always did (shared, nothing held).
    for rid, r in remote.items():
        remote[rid] = replace(r, kind=_pick(fdp, KINDS))
    for lid, rec in local.items():
        if rec.kind == "shared" and rec.has_value and fdp.ConsumeIntInRange(0, 3) == 3:
            local[lid] = replace(rec, withheld=True)
    return World(local, remote, index), direction, prefer


def _remote_only(w: World) -> set[str]:
    """Cloud secrets the vault has no claim on: not linked, not in the index, no marker of ours, no alias clash."""
    linked = {rec.link.remote_id for rec in w.local.values() if rec.link}
    ours = {r.id for r in w.remote.values() if r.ref and r.ref.startswith(REF + ":")}
    alias_of_unlinked = {rec.alias for rec in w.local.values() if rec.link is None and rec.alias}
    return {
        rid
        for rid, r in w.remote.items()
        if rid not in linked and rid not in w.index and rid not in ours and r.alias not in alias_of_unlinked
    }


def check(w: World, direction: Any, prefer: Any) -> None:
    if direction not in DIRECTIONS or prefer not in PREFERENCES:
        try:
            w.plan(direction, prefer)
        except vault.InvalidRequestError:
            return
        raise AssertionError("an invalid direction or policy was accepted")
    first = w.plan(direction, prefer)
    assert first == w.plan(direction, prefer), "planning is not a pure function"
    if direction == "push":
        assert not any(a.op in ("pull-new", "pull-update", "delete-local") for a in first.actions)
    if direction == "pull":
        assert not first.writes_remote
    precious = _only_local_values(w)
    settled = {c.local_id for c in first.conflicts if c.resolution == "remote" and c.reason == "deleted-remotely"}
    for a in first.actions:
        if isinstance(a, DeleteLocal) and a.local_id in precious:
            assert prefer == "remote" and a.local_id in settled, "a value that exists only locally was dropped"
    settled_remote = {c.local_id for c in first.conflicts if c.resolution == "remote"}
    for a in first.actions:
        if isinstance(a, UpdateRemote):
            rec = w.local[a.local_id]
            assert not (a.send_value and rec.kind == "shared" and rec.withheld), "a withheld value was sent"
        if isinstance(a, PullUpdate) and w.local[a.local_id].has_value and w.local[a.local_id].kind != a.remote.kind:
            assert prefer == "remote" and a.local_id in settled_remote, "a kind flip was pulled over a value unasked"
    remote_only = _remote_only(w)
    for a in first.actions:
        if isinstance(a, (UpdateRemote, DeleteRemote)):
            assert a.remote_id not in remote_only, "a push wrote over a secret that exists only in the cloud"
    second_world = copy.deepcopy(w)
    w.apply(first)
    if prefer != "remote":
        for lid, value in precious.items():
            assert lid in w.local and w.local[lid].value == value, "a local-only value is gone after the plan"
    again = w.plan(direction, prefer)
    assert again.actions == (), "planning after applying the plan is not empty"
    assert all(c.resolution is None for c in again.conflicts), "a settled conflict came back"
    one = second_world.plan(direction, prefer)
    second_world.apply(one)
    two = second_world.plan("both", "local")
    second_world.apply(two)
    final = second_world.plan("both", None)
    assert final.actions == (), "a second both-way run left work"
    # link-shared (two records on one cloud secret) is, like a pinned alias, left for a person.
    assert all((c.reason == "alias-taken" and c.local_id is None) or c.reason == "link-shared" for c in final.conflicts)


def one_input(data: bytes) -> None:
    w, direction, prefer = decode(data)
    check(w, direction, prefer)


def seeds() -> dict[str, bytes]:
    """A few planner inputs: for each action type and conflict reason, the first of a fixed
    random series of byte strings whose world produces it (found by decoding, so the seeds
    stay valid inputs whatever FuzzedDataProvider's byte order is)."""
    wanted = {*(op for op in _plan._ORDER), "both-changed", "deleted-remotely", "deleted-locally", "alias-taken"}
    wanted |= {"kind-changed"}
    wanted |= {"invalid", "empty"}
    found: dict[str, bytes] = {}
    rng = random.Random(20260501)
    for _ in range(20000):
        blob = rng.randbytes(rng.randrange(0, 200))
        w, direction, prefer = decode(blob)
        if direction not in DIRECTIONS or prefer not in PREFERENCES:
            kinds = {"invalid"}
        else:
            p = w.plan(direction, prefer)
            kinds = {a.op for a in p.actions} | {c.reason for c in p.conflicts} | ({"empty"} if not w.local else set())
        for kind in sorted(kinds & (wanted - set(found))):
            found[kind] = blob
        if set(found) == wanted:
            break
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-seeds"]:
        print(f"fuzz_plan: {write_seeds('fuzz_plan', seeds())} seeds")
    else:
        main("fuzz_plan", one_input)
