"""Format version 3's checkpoint (docs/FORMAT.md §15): golden files, the same state as a full replay,
tamper, truncation and splicing, crash and upgrade.

A compacted version-3 file indexes its live records in CHECKPOINT ops and keeps each record packed
until it is used; the log after it (the tail) replays as before. Every test here goes through the
public API, except the full-replay oracle, which re-reads the file with the reader's own pieces
(every CHECKPOINT expanded into one PUT per record, all decoded at once).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vault
from tests._faults import FAST, PASSPHRASE, SeededRng, State, StepClock, dump, freeze, outcome, record_figure
from vault import _crypto, _format, _log
from vault._index import Index
from vault._vault import engine_of

GOLDEN = Path(__file__).parent / "golden"
LOG_START = _format.LOG_START


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Thousands of opens: tmpfs when there is one, so the loop measures the code, not the disk.
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=base, prefix="cbkv-ckpt-") as d:
        yield Path(d)


# --- reading the file with the reader's pieces ----------------------------------------------------


def _frames(path: Path, passphrase: str = PASSPHRASE) -> tuple[list[list[Any]], int]:
    """Every committed frame's ops, and the file's version (the test unlocks with the passphrase)."""
    from vault import _keys

    data = path.read_bytes()
    unlocked = _keys.unlock(data[:LOG_START], passphrase.encode())
    header = unlocked.keys.check_header(data[:LOG_START])
    tag = data[_format.HEADER_TAG_OFFSET : _format.HEADER_TAG_OFFSET + _crypto.TAG_SIZE]
    read = _log.read_log(unlocked.keys.keys, data, LOG_START, tag, header.epoch, 0)
    return read.frames, header.version


def _ops(path: Path, passphrase: str = PASSPHRASE) -> list[list[Any]]:
    frames, _ = _frames(path, passphrase)
    return [op for ops in frames for op in ops]


def _full_replay(path: Path, passphrase: str = PASSPHRASE) -> Index:
    """The oracle: the same log with every CHECKPOINT written out as PUTs, replayed op by op, all decoded."""
    index = Index()
    frames, version = _frames(path, passphrase)
    for ops in frames:
        expanded: list[list[Any]] = []
        for op in ops:
            if op[0] == _format.OP_CHECKPOINT:
                expanded += [[_format.OP_PUT, msgpack.unpackb(r, raw=False)] for r in op[5]]
            else:
                expanded.append(op)
        index.apply_logged(expanded, bulk=False, version=version)
    return index


def _index_state(index: Index) -> dict[str, Any]:
    """Everything an index holds, decoded: live records in list order, past revisions, trash, settings."""
    return {
        "live": [e.to_list() for e in index.iter_live()],
        "order": [list(k) for k in index.order if index.live(k)],
        "history": {rid: [e.to_list() for e in h] for rid, h in sorted(index.history.items())},
        "trash": {rid: [e.to_list(), at] for rid, (e, at) in sorted(index.trash.items())},
        "settings": index.settings,
        "aliases": dict(sorted(index.aliases.items())),
        "names": {k: sorted(v) if isinstance(v, set) else [v] for k, v in sorted(index.name_map().items())},
    }


def _opened_state(path: Path, passphrase: str = PASSPHRASE) -> dict[str, Any]:
    with vault.open(path, passphrase) as v, engine_of(v).reading() as index:
        return _index_state(index)


def _counts(path: Path, passphrase: str = PASSPHRASE) -> dict[int, int]:
    out: dict[int, int] = {}
    for op in _ops(path, passphrase):
        out[op[0]] = out.get(op[0], 0) + 1
    return out


# --- golden files -----------------------------------------------------------------------------------

EXPECTED: dict[str, Any] = json.loads((GOLDEN / "v3-expected.json").read_text())


def _golden_copy(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copyfile(GOLDEN / name, copy)
    copy.chmod(0o600)
    return copy


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_v3_golden_files_open_with_exact_contents(name: str, tmp_path: Path) -> None:
    copy = _golden_copy(tmp_path, name)
    case = EXPECTED[name]
    assert copy.read_bytes()[8] == 3
    assert _counts(copy, case["passphrase"]).get(_format.OP_CHECKPOINT, 0) >= 1, "the golden file has no checkpoint"
    with vault.open(copy, case["passphrase"]) as v:
        live = v.secret.list(order="asc", take=100)
        assert [v.secret.fetch(s.id).to_dict(reveal=True) for s in live] == case["secrets"]
        history = {
            s.id: [[h.revision, v.secret.fetch(s.id, revision=h.revision).value] for h in v.secret.history(s.id)]
            for s in live
        }
        assert history == case["history"]
        assert [t.id for t in v.secret.list(deleted=True, order="asc")] == case["trash"]
        assert v.retention().to_setting() == case["retention"]
        v.secret.create(name="still writable")
    with vault.open(copy, case["passphrase"]) as v:
        assert len(v) == len(case["secrets"]) + 1


def test_v3_writer_still_writes_the_golden_bytes(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_v3", GOLDEN / "make_v3.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_all(tmp_path)
    for name in EXPECTED:
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_v3_golden_files_equal_their_full_replay(name: str, tmp_path: Path) -> None:
    copy = _golden_copy(tmp_path, name)
    passphrase = EXPECTED[name]["passphrase"]
    assert _opened_state(copy, passphrase) == _index_state(_full_replay(copy, passphrase))


@pytest.mark.parametrize("name", ["v1-log.cbkv", "v2-log.cbkv", "v2-compacted.cbkv"])
def test_older_files_are_read_as_they_are_and_upgraded_to_v3_by_their_first_write(name: str, tmp_path: Path) -> None:
    expected = json.loads((GOLDEN / f"{name[:2]}-expected.json").read_text())[name]
    copy = _golden_copy(tmp_path, name)
    before = copy.read_bytes()
    with vault.open(copy, expected["passphrase"]) as v:
        got = [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")]
        assert got == expected["secrets"]
    assert copy.read_bytes() == before  # reading never changes an older file
    with vault.open(copy, expected["passphrase"]) as v:
        v.secret.create(name="the first write")
        after = dump(v)
    assert copy.read_bytes()[8] == 3
    assert _counts(copy, expected["passphrase"]).get(_format.OP_CHECKPOINT, 0) >= 1
    with vault.open(copy, expected["passphrase"]) as v:
        assert freeze(dump(v)) == freeze(after)


# --- checkpoint + tail is the full replay (property) -----------------------------------------------

names = st.sampled_from(["a", "b", "c", "", "dup"])
aliases = st.one_of(st.none(), st.sampled_from(["x", "y", "z"]))
step = st.one_of(
    st.tuples(st.just("create"), names, aliases, st.one_of(st.none(), st.text(max_size=20))),
    st.tuples(st.just("update"), st.integers(0, 50), aliases, st.one_of(st.none(), st.text(max_size=20))),
    st.tuples(st.just("trash"), st.integers(0, 50)),
    st.tuples(st.just("purge"), st.integers(0, 50)),
    st.tuples(st.just("undelete"), st.integers(0, 50)),
    st.tuples(st.just("compact")),
    st.tuples(st.just("retention"), st.sampled_from([0, 1, 3, None])),
)


def _run(v: vault.Vault, program: list[tuple[Any, ...]]) -> None:
    made: list[str] = []
    for op in program:
        kind = op[0]
        try:
            if kind == "create":
                made.append(
                    v.secret.create(name=op[1], alias=op[2], value=op[3], meta={"k": op[1]} if op[1] else None).id
                )
            elif kind == "compact":
                v.compact()
            elif kind == "retention":
                v.set_retention(history=op[1])
            elif made:
                rid = made[op[1] % len(made)]
                if kind == "update":
                    v.secret.update(rid, alias=op[2], value=op[3], description=f"u{op[1]}")
                elif kind == "trash":
                    v.secret.delete(rid)
                elif kind == "purge":
                    v.secret.delete(rid, purge=True)
                else:
                    v.secret.undelete(rid)
        except (vault.NotFoundError, vault.ConflictError, vault.InvalidRequestError):
            pass  # a step the state refuses (an alias taken, a secret gone): skipped, as a user would be


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=st.lists(step, min_size=1, max_size=30), seed=st.integers(0, 2**16))
def test_checkpoint_and_tail_open_to_the_state_of_a_full_replay(program: list[tuple[Any, ...]], seed: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.cbkv"
        with vault.init(path, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(seed)) as v:
            v.set_retention(history=None, history_days=None, trash_days=None)
            _run(v, program)
            with engine_of(v).reading() as index:
                writer = _index_state(index)
            seen = dump(v)
        opened = _opened_state(path)
        assert opened == writer, "a fresh open differs from the writer's own index"
        assert opened == _index_state(_full_replay(path)), "checkpoint + tail differs from the full replay"
        with vault.open(path, PASSPHRASE) as again:
            assert freeze(dump(again)) == freeze(seen)


def test_a_large_checkpoint_spans_frames_and_pages_the_same(tmp_path: Path) -> None:
    path = tmp_path / "big.cbkv"
    rnd = random.Random(3)
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(4)) as v:
        with v.batch():
            for i in range(9000):
                v.secret.create(name=f"s{i % 97}", value="".join(rnd.choices(string.ascii_letters, k=30)))
        v.compact()
        ids = [s.id for s in v.secret.list(order="asc", take=100)]
    counts = _counts(path)
    assert counts[_format.OP_CHECKPOINT] >= 3  # 4096 records per op at most
    with vault.open(path, PASSPHRASE) as v:
        assert len(v) == 9000
        assert [s.id for s in v.secret.list(order="asc", take=100)] == ids
        page = v.secret.list(order="desc", take=100, cursor=ids[50])
        assert [s.id for s in page.items] == list(reversed(ids[:50]))
        # (name) finds the oldest of the secrets sharing it, from the checkpoint's name column.
        assert v.secret.fetch("(s3)").id == ids[3]
    assert _opened_state(path) == _index_state(_full_replay(path))


def test_a_name_column_that_is_not_the_records_name_is_found_by_name() -> None:
    """A key-holding writer's bug (docs/FORMAT.md §15.2): the name map is built from the name column when a
    lookup by name first needs it, and every record found there is checked against the column."""
    entry = [
        "a" * 24, 1, 1_700_000_000_000, 1_700_000_000_000, "alpha", "", "shared", "plain", "private",
        None, None, None, None, 0, None, {},
    ]  # fmt: skip
    op = [_format.OP_CHECKPOINT, ["a" * 24], [entry[2]], ["not alpha"], [None], [_format.packb(entry)]]
    index = Index()
    index.apply_logged([op], bulk=True, version=3)
    index.resort()
    assert index.resolve("a" * 24).name == "alpha"  # by id: decoded and checked, but the name map is not built
    with pytest.raises(vault.CorruptVaultError, match="differs from its index"):
        index.resolve("(not alpha)")
    with pytest.raises(vault.NotFoundError):
        index.resolve("(alpha)")
    with pytest.raises(vault.CorruptVaultError, match="differs from its index"):
        index.get("a" * 24)  # once the name map is built, every decode checks the name too


def test_names_are_found_after_writes_that_precede_the_first_lookup_by_name(tmp_path: Path) -> None:
    """The name map of checkpoint records is built on the first lookup by name; writes made before it
    (which change the list order) must not disturb it (hypothesis found it sharing the order's list)."""
    path = tmp_path / "n.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        kept = v.secret.create(name="kept", value="k")
        gone = v.secret.create(name="gone")
        v.secret.create(name="")
        v.compact()
    with vault.open(path, PASSPHRASE) as v:
        v.secret.create(name="new")  # appended to the order the pending name column was built beside
        v.secret.create(name="")
        v.secret.delete(gone.id)
        assert v.secret.fetch("(kept)").id == kept.id
        assert v.secret.fetch("(new)").name == "new"
        with pytest.raises(vault.NotFoundError):
            v.secret.fetch("(gone)")
        v.compact()
    assert _opened_state(path) == _index_state(_full_replay(path))


def test_a_checkpoint_read_by_catch_up_that_takes_a_deleted_id_lists_it_once() -> None:
    """Catch-up (not a full load) applying a CHECKPOINT whose id was deleted earlier in the log (allowed,
    as for a PUT): the deleted row's stale sort key must not read as a second row of the new record."""
    first = ["a" * 24, 1, 5, 5, "n", "", "shared", "plain", "private", None, None, None, None, 0, None, {}]
    again = [*first[:2], 9, 9, *first[4:]]
    index = Index()
    index.apply_logged([[_format.OP_PUT, first]], bulk=False, version=3)
    index.apply_logged([[_format.OP_DELETE, "a" * 24]], bulk=False, version=3)
    index.apply_logged(
        [[_format.OP_CHECKPOINT, ["a" * 24], [9], ["n"], [None], [_format.packb(again)]]], bulk=False, version=3
    )
    assert [e.created_at for e in index.page(ascending=True, cursor=None, count=10)] == [9]
    assert list(index.order) == [(9, "a" * 24)]


# --- a key holder's (buggy) writer: what the deferred checks must catch (review of the checkpoint) ---


def _rewrite(path: Path, mutate: Any) -> None:
    """Re-seal and re-chain every frame with the file's own keys: what a key holder's buggy writer can write."""
    from vault import _keys

    data = path.read_bytes()
    unlocked = _keys.unlock(data[:LOG_START], PASSPHRASE.encode())
    header = unlocked.keys.check_header(data[:LOG_START])
    tag = data[_format.HEADER_TAG_OFFSET : _format.HEADER_TAG_OFFSET + _crypto.TAG_SIZE]
    frames = mutate(_log.read_log(unlocked.keys.keys, data, LOG_START, tag, header.epoch, 0).frames)
    out = [data[:LOG_START]]
    for seq, ops in enumerate(frames):
        frame, tag = _log.seal_frame(unlocked.keys.keys, tag, header.epoch, seq, ops)
        out.append(frame)
    path.write_bytes(b"".join(out))


def _three(tmp_path: Path) -> tuple[Path, list[str]]:
    """A compacted vault of three aliased secrets: one CHECKPOINT op, first frame."""
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        ids = [v.secret.create(name=f"s{i}", value=f"V{i}", alias=f"a{i}").id for i in range(3)]
        v.compact()
    return path, ids


def test_a_checkpoint_at_open_that_takes_a_deleted_id_lists_it_once_and_compacts(tmp_path: Path) -> None:
    """§15.2 lets a checkpoint take an id deleted earlier in the log. At open (a bulk load) the first
    checkpoint's column row of that id must not survive beside the second's: the record listed twice,
    its old name resolved to a corrupt record, and compaction wrote the id twice (a file that no longer opened)."""
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="keep", value="k")
        v.secret.create(name="r", value="r1", alias="x")
        v.compact()

    def mutate(frames: list[list[Any]]) -> list[list[Any]]:
        cp = frames[0][0]
        i = cp[3].index("r")
        rid = cp[1][i]
        e = msgpack.unpackb(cp[5][i], raw=False)
        e[2] = e[3] = e[2] + 1000
        e[4], e[9] = "r-again", "y"
        again = [_format.OP_CHECKPOINT, [rid], [e[2]], ["r-again"], ["y"], [_format.packb(e)]]
        return [*frames, [[_format.OP_DELETE, rid]], [again]]

    _rewrite(path, mutate)
    with vault.open(path, PASSPHRASE) as v:
        assert sorted(s.name for s in v.secret.list()) == ["keep", "r-again"]
        with pytest.raises(vault.NotFoundError):
            v.secret.fetch("(r)")
        with pytest.raises(vault.NotFoundError):
            v.secret.fetch("@x")
        assert v.secret.fetch("@y").name == "r-again"
        v.compact()
    with vault.open(path, PASSPHRASE) as v:
        assert sorted(s.name for s in v.secret.list()) == ["keep", "r-again"]
    assert _opened_state(path) == _index_state(_full_replay(path))


def test_the_checkpoint_writer_refuses_to_write_an_id_twice() -> None:
    """A writer must never produce what its reader refuses: an order holding an id's key twice (an index
    bug) stops compaction before anything is written."""
    entry = ["a" * 24, 1, 5, 5, "n", "", "shared", "plain", "private", None, None, None, None, 0, None, {}]
    index = Index()
    index.apply_logged(
        [[_format.OP_CHECKPOINT, ["a" * 24], [5], ["n"], [None], [_format.packb(entry)]]], bulk=False, version=3
    )
    index.order.append((6, "a" * 24))  # the bug being defended against
    with pytest.raises(AssertionError):
        list(index.compacted(0, version=3))


def test_a_change_to_a_record_whose_name_column_disagrees_commits_and_the_vault_still_opens(
    tmp_path: Path,
) -> None:
    """A name column that is not its record's name (a writer's bug): an update or a trash of that record
    commits (checking the column first would build the whole name map on a process's first write: ~50 ms
    at 100k, paid by every CLI command), and the next open does not compare the replaced record's name
    column, so the vault stays readable (§15.2)."""
    path, ids = _three(tmp_path)

    def mutate(frames: list[list[Any]]) -> list[list[Any]]:
        cp = frames[0][0]
        cp[3][cp[4].index("a0")] = "other"
        return frames

    _rewrite(path, mutate)
    with vault.open(path, PASSPHRASE) as v:
        v.secret.update(ids[0], description="d")
        assert v.secret.fetch(ids[0]).description == "d"
        v.secret.delete(ids[0])
        assert v.secret.fetch(ids[1]).name == "s1"
    with vault.open(path, PASSPHRASE) as v:
        assert [s.description for s in v.secret.list(deleted=True)] == ["d"]
        assert v.secret.fetch(ids[1]).name == "s1"
        assert v.secret.fetch(ids[2]).name == "s2"


def test_a_file_where_such_a_change_was_committed_still_opens(tmp_path: Path) -> None:
    """What an earlier writer committed (the name check was deferred): the replaced record's name column is
    not compared at open, since nothing finds it by that name (§15.2); its createdAt still is."""
    path, ids = _three(tmp_path)

    def mutate(frames: list[list[Any]]) -> list[list[Any]]:
        cp = frames[0][0]
        i = cp[4].index("a0")
        cp[3][i] = "other"
        e = msgpack.unpackb(cp[5][i], raw=False)
        e[1] += 1
        return [*frames, [[_format.OP_PUT, e]]]

    _rewrite(path, mutate)
    with vault.open(path, PASSPHRASE) as v:
        assert v.secret.fetch(ids[0]).name == "s0"
        assert v.secret.fetch("(s0)").id == ids[0]
        with pytest.raises(vault.NotFoundError):
            v.secret.fetch("(other)")
        assert v.secret.fetch(ids[1]).name == "s1"


def test_an_alias_column_that_its_record_does_not_carry_is_detected(tmp_path: Path) -> None:
    """§15.2: a decoded record's alias MUST equal its column, both ways: a column alias on a record with
    none was accepted (the record read as alias-less while ``@a0`` reported corruption)."""
    path, ids = _three(tmp_path)

    def mutate(frames: list[list[Any]]) -> list[list[Any]]:
        cp = frames[0][0]
        i = cp[4].index("a0")
        e = msgpack.unpackb(cp[5][i], raw=False)
        e[9] = None
        cp[5][i] = _format.packb(e)
        return frames

    _rewrite(path, mutate)
    with vault.open(path, PASSPHRASE) as v:
        with pytest.raises(vault.CorruptVaultError, match="differs from its index"):
            v.secret.fetch(ids[0])
        with pytest.raises(vault.CorruptVaultError, match="differs from its index"):
            v.secret.fetch("@a0")
        assert v.secret.fetch("@a1").id == ids[1]
        with pytest.raises(vault.CorruptVaultError):
            v.secret.purge(ids[0])  # a purge decodes the record to drop its alias: refused as corrupt
        v.compact()  # the packed record is copied as it is (§15.3), still refused when decoded
    with vault.open(path, PASSPHRASE) as v:
        with pytest.raises(vault.CorruptVaultError, match="differs from its index"):
            v.secret.fetch(ids[0])
        assert v.secret.fetch("@a2").id == ids[2]


@pytest.mark.parametrize(
    ("column", "value"),
    [(1, "A" * 24), (1, "a" * 129), (3, "n" * (_format.MAX_NAME + 1)), (4, "UPPER"), (4, "a" * 129)],
)
def test_checkpoint_columns_out_of_range_are_refused_at_open(column: int, value: str) -> None:
    """§15.2: columns hold what a record may hold (id, name and alias rules), checked when the op is read."""
    entry = ["a" * 24, 1, 5, 5, "n", "", "shared", "plain", "private", None, None, None, None, 0, None, {}]
    op: list[Any] = [_format.OP_CHECKPOINT, ["a" * 24], [5], ["n"], [None], [_format.packb(entry)]]
    op[column] = [value]
    index = Index()
    with pytest.raises(vault.CorruptVaultError, match="malformed checkpoint"):
        index.apply_logged([op], bulk=True, version=3)
    assert len(index) == 0


def test_a_checkpoint_over_its_record_limits_is_refused_before_it_is_indexed() -> None:
    """A hostile count is refused before a million ids are indexed: the per-op limit (§15.3's 4096) and
    MAX_RECORDS over the whole file."""
    n = _format.CHECKPOINT_MAX + 1
    ids = ["a" + format(i, "023x") for i in range(n)]
    op = [_format.OP_CHECKPOINT, ids, [0] * n, [""] * n, [None] * n, [b""] * n]
    with pytest.raises(vault.CorruptVaultError, match="malformed checkpoint"):
        Index().apply_logged([op], bulk=True, version=3)
    index = Index()
    index.lazy.update(dict.fromkeys(("b" + format(i, "023x") for i in range(_format.MAX_RECORDS)), b""))
    small = [_format.OP_CHECKPOINT, ids[:1], [0], [""], [None], [b""]]
    with pytest.raises(vault.CorruptVaultError, match="too many secrets"):
        index.apply_logged([small], bulk=True, version=3)
    assert ids[0] not in index.lazy


# --- tamper: every bit flip and truncation of a checkpoint + tail --------------------------------


def build_reference(path: Path) -> tuple[bytes, list[int], list[State]]:
    """A compacted v3 vault (settings + a checkpoint of three records) and three commits in its tail.

    Returns its bytes, the file size after each point a reader may see (index 0: the log cut just after
    the slots), and the state at each.
    """
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(77)) as v:
        a = v.secret.create(name="alpha", value="alpha-secret-1", alias="alpha", meta={"env": "prod"})
        b = v.secret.create(name="beta", value="beta-secret-1", type="bearer")
        v.secret.create(name="gamma", value="gamma-secret-1", kind="personal")
        v.set_retention(history=0)
        v.compact()
        empty: State = {}
        ends = [LOG_START, path.stat().st_size]
        states = [empty, dump(v)]
        v.secret.update(a.id, value="alpha-secret-2")
        ends.append(path.stat().st_size)
        states.append(dump(v))
        v.secret.delete(b.id)
        ends.append(path.stat().st_size)
        states.append(dump(v))
        v.secret.create(name="delta", value="delta-secret-1", alias="delta")
        ends.append(path.stat().st_size)
        states.append(dump(v))
    assert _counts(path) == {_format.OP_SETTING: 1, _format.OP_CHECKPOINT: 1, 1: 2, _format.OP_TRASH: 1}
    return path.read_bytes(), ends, states


def test_every_bit_flip_of_a_checkpoint_and_its_tail_is_rejected_or_harmless(scratch: Path) -> None:
    data, _ends, states = build_reference(scratch / "ref.cbkv")
    final = freeze(states[-1])
    target = scratch / "t.cbkv"
    errors: dict[str, int] = {}
    harmless: list[int] = []
    tried = 0
    for pos in range(len(data)):
        for mask in (1, 8, 128, 255):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            result = outcome(target, bytes(damaged))
            tried += 1
            if isinstance(result, vault.VaultError):
                assert isinstance(result, vault.CorruptVaultError), f"byte {pos} ^ {mask:#x}: {result!r}"
                errors[type(result).__name__] = errors.get(type(result).__name__, 0) + 1
            else:
                assert freeze(result) == final, f"byte {pos} ^ {mask:#x} gave altered data"
                harmless.append(pos)
    assert set(harmless) <= set(range(328, 584)), "a change outside the empty key slot went unnoticed"
    record_figure("bit_flips_checkpoint", tried, file_bytes=len(data), errors=errors, harmless=len(harmless))


def test_every_truncation_of_a_checkpoint_and_its_tail(scratch: Path) -> None:
    data, ends, states = build_reference(scratch / "ref.cbkv")
    target = scratch / "t.cbkv"
    for t in range(len(data)):
        result = outcome(target, data[:t])
        if t < LOG_START:
            assert isinstance(result, vault.CorruptVaultError), f"cut at {t}: {result!r}"
            continue
        assert not isinstance(result, vault.VaultError), f"cut at {t}: {result!r}"
        # A cut checkpoint reads as the log before it (an empty vault): the rollback class, never a mix.
        committed = max(k for k, end in enumerate(ends) if end <= t)
        assert freeze(result) == freeze(states[committed]), f"cut at {t}: not the state at point {committed}"
    record_figure("truncations_checkpoint", len(data), points=len(ends))


def _frame_spans(data: bytes) -> list[tuple[int, int]]:
    spans = []
    pos = LOG_START
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 8 + length + 32
        spans.append((pos, end))
        pos = end
    return spans


def test_a_swapped_or_stale_checkpoint_is_detected(scratch: Path) -> None:
    """Checkpoint frames are chained like any frame: one from another time, epoch or vault never reads."""
    path = scratch / "s.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(5)) as v:
        a = v.secret.create(name="alpha", value="alpha-1")
        v.compact()
        old = path.read_bytes()  # epoch 1: a checkpoint of alpha
        v.secret.create(name="beta", value="beta-1")
        v.secret.update(a.id, value="alpha-2")
        v.compact()
        new = path.read_bytes()  # epoch 2: a checkpoint of both
        v.secret.create(name="gamma", value="gamma-1")
        with_tail = path.read_bytes()
    other = scratch / "o.cbkv"
    with vault.init(other, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(6)) as v:
        v.secret.create(name="alpha", value="alpha-1")
        v.compact()
        foreign = other.read_bytes()

    def frames(data: bytes) -> list[bytes]:
        return [data[s:e] for s, e in _frame_spans(data)]

    tail = with_tail[len(new) :]
    cases = {
        # The stale checkpoint (epoch 1) under the current header and tail.
        "stale checkpoint, current tail": new[:LOG_START] + b"".join(frames(old)) + tail,
        # The current header with the old file's checkpoint only (a rollback of the records, not the header).
        "stale checkpoint alone": new[:LOG_START] + b"".join(frames(old)),
        # Another vault's checkpoint (same passphrase) under our header.
        "another vault's checkpoint": new[:LOG_START] + b"".join(frames(foreign)),
        # The tail moved onto the older checkpoint's file.
        "current tail on the stale file": old + tail,
    }
    for label, blob in cases.items():
        result = outcome(scratch / "t.cbkv", blob)
        assert isinstance(result, vault.CorruptVaultError), f"{label}: {result!r}"


# --- crash while the checkpoint is written -------------------------------------------------------


def test_a_crash_at_every_call_of_a_checkpoint_compaction_loses_nothing(tmp_path: Path) -> None:
    """The shared crash harness (tests/_faults.py) dies after every I/O call of a compaction that writes
    a checkpoint (and of the first write to a v2 file, which upgrades it), and checks every crash image."""
    from tests._faults import Died, FaultIO

    base = tmp_path / "base.cbkv"
    with vault.init(base, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(8), _version=2) as v:
        for i in range(5):
            v.secret.create(name=f"s{i}", value=f"v{i}")
        before = dump(v)
    dry = tmp_path / "dry"
    dry.mkdir()
    shutil.copyfile(base, dry / "base.cbkv")
    with vault.open(dry / "base.cbkv", PASSPHRASE, clock=StepClock(10**13), _rng=SeededRng(9)) as v:
        v.secret.create(name="upgrade", value="written by the upgrade")
        after = dump(v)
    allowed = {freeze(before), freeze(after)}
    points = images = 0
    n = 0
    while True:
        n += 1
        work = tmp_path / f"run{n}"
        work.mkdir()
        path = work / "base.cbkv"
        shutil.copyfile(base, path)
        io = FaultIO(die_at=n, directory=work, armed=False)
        v = vault.open(path, PASSPHRASE, clock=StepClock(10**13), _rng=SeededRng(9), _io=io)
        io.arm()
        try:
            v.secret.create(name="upgrade", value="written by the upgrade")  # v2 -> v3: a checkpoint
            v.compact()  # v3 -> v3: a checkpoint again
            v.close()
        except Died:
            io.bury()
        else:
            break
        points += 1
        for k, image in enumerate(io.images):
            where = tmp_path / f"img{n}-{k}"
            image.restore(where)
            with vault.open(where / "base.cbkv", PASSPHRASE) as got:
                assert freeze(dump(got)) in allowed, f"died after call {n}, image {image.kind}"
                got.secret.create(name="after the crash")
            images += 1
    assert points >= 8
    record_figure("crash_points_checkpoint", points, images=images)
