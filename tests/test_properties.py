"""Property tests: the vault behaves like a dict of records, across reopen and compaction."""

from __future__ import annotations

import random
import string
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import vault
from tests.conftest import FAST, PASSPHRASE

text = st.text(max_size=40)
values = st.one_of(st.none(), st.text(max_size=300))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10))
meta = st.one_of(
    st.none(),
    st.dictionaries(st.text(alphabet=string.ascii_letters, min_size=1, max_size=6), json_leaf, max_size=4),
)
aliases = st.one_of(st.none(), st.text(alphabet="abc-_", min_size=1, max_size=3))


class VaultModel(RuleBasedStateMachine):
    """Random create/update/delete/batch/reopen/compact/passphrase steps against a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "m.cbkv"
        self.passphrase = PASSPHRASE
        # Seeded randomness: ids (and so list order and lookups) repeat when Hypothesis replays a case.
        self.rng = random.Random(0).randbytes
        self.v = vault.init(self.path, self.passphrase, kdf=FAST, _rng=self.rng)
        self.model: dict[str, dict[str, Any]] = {}

    def teardown(self) -> None:
        self.v.close()
        self.dir.cleanup()

    def _alias_free(self, alias: str | None, rid: str | None = None) -> bool:
        return alias is None or all(r["alias"] != alias for k, r in self.model.items() if k != rid)

    @rule(name=text, value=values, m=meta, alias=aliases, kind=st.sampled_from(["shared", "personal"]))
    def create(self, name: str, value: str | None, m: dict[str, Any] | None, alias: str | None, kind: str) -> None:
        if not self._alias_free(alias):
            try:
                self.v.secret.create(alias=alias)
            except vault.ConflictError:
                return
            raise AssertionError("duplicate alias accepted")
        s = self.v.secret.create(name=name, value=value, meta=m, alias=alias, kind=kind)
        self.model[s.id] = {"name": name, "value": value, "meta": m, "alias": alias, "kind": kind}

    @precondition(lambda self: self.model)
    @rule(data=st.data(), name=st.one_of(st.none(), text), value=st.one_of(st.just("keep"), values))
    def update(self, data: st.DataObject, name: str | None, value: str | None) -> None:
        rid = data.draw(st.sampled_from(sorted(self.model)))
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name
        if value != "keep":
            fields["value"] = value
        self.v.secret.update(rid, **fields)
        self.model[rid].update(fields)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.model)))
        self.v.secret.delete(rid)
        del self.model[rid]

    @rule(names=st.lists(text, max_size=5), fail=st.booleans())
    def batch(self, names: list[str], fail: bool) -> None:
        created: dict[str, dict[str, Any]] = {}
        try:
            with self.v.batch():
                for n in names:
                    s = self.v.secret.create(name=n, value=n)
                    created[s.id] = {"name": n, "value": n, "meta": None, "alias": None, "kind": "shared"}
                if fail:
                    raise RuntimeError("abort")
        except RuntimeError:
            return
        self.model.update(created)

    @rule()
    def reopen(self) -> None:
        self.v.close()
        self.v = vault.open(self.path, self.passphrase, _rng=self.rng)

    @rule()
    def compact(self) -> None:
        self.v.compact()

    @rule(new=st.text(min_size=1, max_size=8))
    def change_passphrase(self, new: str) -> None:
        self.v.change_passphrase(new)
        self.passphrase = new

    @invariant()
    def matches_model(self) -> None:
        assert len(self.v) == len(self.model)
        for rid, rec in self.model.items():
            s = self.v.secret.fetch(rid)
            assert (s.name, s.value, s.meta, s.alias, s.kind) == (
                rec["name"], rec["value"], rec["meta"], rec["alias"], rec["kind"],
            )
            if rec["alias"] is not None:
                assert self.v.secret.fetch("@" + rec["alias"]).id == rid
        if len(self.model) <= 100:
            listed = [s.id for s in self.v.secret.list(order="asc", take=100).items]
            assert sorted(listed) == sorted(self.model)


VaultModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestVaultModel = VaultModel.TestCase


@settings(max_examples=150, deadline=None)
@given(value=st.text(max_size=2000), m=meta, name=text, description=st.text(max_size=200))
def test_round_trip_through_the_file(
    tmp_path_factory: Any, value: str, m: Any, name: str, description: str
) -> None:
    path = tmp_path_factory.mktemp("rt") / "rt.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(name=name, description=description, value=value, meta=m)
    raw = path.read_bytes()
    if len(value) >= 8:
        assert value.encode() not in raw
    with vault.open(path, PASSPHRASE) as v:
        got = v.secret.fetch(s.id)
        assert (got.value, got.meta, got.name, got.description) == (value, m, name, description)


@settings(max_examples=50, deadline=None)
@given(
    a=st.text(string.printable, min_size=1, max_size=60),
    b=st.text(string.printable, min_size=1, max_size=60),
)
def test_value_lengths_are_bucketed(tmp_path_factory: Any, a: str, b: str) -> None:
    # Values up to ~200 bytes seal to the same length: the file does not reveal a key's exact length.
    sizes = []
    for value in (a, b):
        path = tmp_path_factory.mktemp("len") / "l.cbkv"
        with vault.init(path, PASSPHRASE, kdf=FAST) as v:
            v.secret.create(value=value)
        sizes.append(path.stat().st_size)
    assert sizes[0] == sizes[1]


def _json_tree(depth: int) -> st.SearchStrategy[Any]:
    """JSON values nested at most ``depth`` levels below their parent (tuples as msgpack's lists)."""
    leaf = st.one_of(json_leaf, st.floats(allow_nan=False, allow_infinity=False))
    if depth == 0:
        return leaf
    inner = _json_tree(depth - 1)
    return st.one_of(
        leaf,
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    )


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


_DEPTH = vault._format.MAX_DEPTH  # the format's own limit, not a copy of it
# The cloud's rule for a top-level meta key (not empty, no leading "_") is tested elsewhere.
_META_KEY = st.text(alphabet=string.ascii_letters, min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(m=st.dictionaries(_META_KEY, _json_tree(_DEPTH - 1), max_size=4))
def test_meta_within_the_depth_limit_is_stored_as_a_copy(tmp_path_factory: Any, m: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("js") / "js.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(name="n", meta=m)
        expected = _plain(m)
        m["added after create"] = 1  # the caller's object is not the vault's
        assert v.secret.fetch(s.id).meta == expected
    with vault.open(path, PASSPHRASE) as v:
        assert v.secret.fetch(s.id).meta == expected


@settings(max_examples=80, deadline=None)
@given(
    m=st.dictionaries(_META_KEY, _json_tree(2), min_size=1, max_size=3),
    bad=st.sampled_from(["nan", "inf", "int key", "bytes", "too deep", "set"]),
    data=st.data(),
)
def test_meta_that_is_not_json_is_refused_and_nothing_is_written(
    tmp_path_factory: Any, m: dict[str, Any], bad: str, data: st.DataObject
) -> None:
    poison: Any = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "int key": {1: "x"},
        "bytes": b"x",
        "set": {"x"},
        "too deep": "leaf",
    }[bad]
    if bad == "too deep":
        for _ in range(_DEPTH):
            poison = [poison]
    # Plant the poison at a random place in the tree.
    node: Any = m
    key: Any = data.draw(st.sampled_from(sorted(m)))
    while isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
        node = node[key]
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
    node[key] = poison
    path = tmp_path_factory.mktemp("bad") / "bad.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        size = path.stat().st_size
        try:
            v.secret.create(name="n", meta=m)
        except vault.InvalidRequestError as e:
            assert "meta" in str(e)
        else:
            raise AssertionError(f"{bad} was stored")
        assert path.stat().st_size == size
        assert len(v.secret.list()) == 0
