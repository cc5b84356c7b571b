"""The secret resource through the public API: create, fetch, list, update, delete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vault
from tests.conftest import CLOUD_ITEM_KEYS, FAST, PASSPHRASE, Clock
from vault._store import IO
from vault._vault import engine_of

ID = re.compile(r"^[a-z][a-z0-9]{23}$")


def test_create_defaults_match_the_cloud(v: vault.Vault) -> None:
    s = v.secret.create()
    assert ID.match(s.id)
    assert (s.name, s.description, s.kind, s.type, s.visibility) == ("", "", "shared", "plain", "private")
    assert s.alias is None and s.meta is None and s.config is None and s.blueprint_id is None
    assert s.value is None
    assert s.created_at == s.updated_at and s.created_at > 1_600_000_000_000  # epoch milliseconds


def test_create_accepts_camelcase_request_and_snake_case_kwargs(v: vault.Vault) -> None:
    a = v.secret.create({"name": "A", "blueprintId": "bp1", "type": "bearer"})
    b = v.secret.create(name="B", blueprint_id="bp2", kind="personal", value="tok")
    assert a.blueprint_id == "bp1" and a.type == "bearer"
    assert b.blueprint_id == "bp2" and b.kind == "personal"
    # A personal secret keeps its owner's value locally (the cloud rule applies on sync).
    assert v.secret.fetch(b.id).value == "tok"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "password"}, "type"),
        ({"kind": "team"}, "kind"),
        ({"visibility": "secret"}, "visibility"),
        ({"alias": "Upper"}, "alias"),
        ({"alias": "x" * 129}, "alias"),
        ({"name": 5}, "name"),
        ({"value": b"bytes"}, "value"),
        ({"meta": "notamap"}, "meta"),
        ({"meta": {"_private": 1}}, "meta"),
        ({"config": [1, 2]}, "config"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_rejected_with_a_typed_error(v: vault.Vault, fields: dict[str, object], message: str) -> None:
    with pytest.raises(vault.InvalidRequestError) as info:
        v.secret.create(fields)
    assert info.value.code == "BAD_REQUEST"
    assert isinstance(info.value, ValueError)
    assert message in str(info.value).lower()  # the cloud's alias pattern message says "Alias"
    assert len(v) == 0


def test_unknown_snake_case_kwarg_and_duplicate_field(v: vault.Vault) -> None:
    with pytest.raises(vault.InvalidRequestError):
        v.secret.create(blueprintId="x")
    with pytest.raises(vault.InvalidRequestError):
        v.secret.create({"name": "a"}, name="b")


def test_error_messages_never_contain_the_value(v: vault.Vault) -> None:
    marker = "sk_live_MARKER_91f3"
    with pytest.raises(vault.InvalidRequestError) as info:
        v.secret.create(value=marker, type="nope")
    assert marker not in str(info.value) and marker not in repr(info.value)


def test_fetch_by_id_alias_and_name(v: vault.Vault) -> None:
    s = v.secret.create(name="PaymentAPIKey", alias="pay", value="sk_live_12345")
    for ident in (s.id, "@pay", "(PaymentAPIKey)"):
        got = v.secret.fetch(ident)
        assert got.id == s.id and got.value == "sk_live_12345"
    for missing in ("@nope", "(nope)", "zzzzzzzzzzzzzzzzzzzzzzzz", "@@pay", "@user@pay"):
        with pytest.raises(vault.NotFoundError) as info:
            v.secret.fetch(missing)
        assert info.value.code == "NOT_FOUND" and isinstance(info.value, KeyError)


def test_name_lookup_takes_the_oldest_of_duplicates(v: vault.Vault, clock: Clock) -> None:
    clock.source = iter(range(10, 100)).__next__
    first = v.secret.create(name="dup")
    v.secret.create(name="dup")
    assert v.secret.fetch("(dup)").id == first.id


def test_alias_must_be_unique_and_empty_clears(v: vault.Vault) -> None:
    a = v.secret.create(alias="one")
    with pytest.raises(vault.ConflictError) as info:
        v.secret.create(alias="one")
    assert info.value.code == "CONFLICT"
    b = v.secret.create(alias="")
    assert b.alias is None
    v.secret.update(a.id, alias="")
    assert v.secret.fetch(a.id).alias is None
    v.secret.update(b.id, alias="one")  # freed by the update above
    assert v.secret.fetch("@one").id == b.id


def test_list_never_decrypts_and_items_have_no_value(v: vault.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        v.secret.create(name=f"s{i}", value=f"v{i}")

    def boom(*args: object) -> None:
        raise AssertionError("list decrypted a value")

    monkeypatch.setattr(engine_of(v), "open_value", boom)
    page = v.secret.list()
    assert [s.value for s in page.items] == [None, None, None]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_250_secrets_no_duplicates_or_gaps(v: vault.Vault, clock: Clock, order: str) -> None:
    ticks = iter(range(1_700_000_000_000, 1_700_000_000_000 + 1000, 3))
    clock.source = lambda: next(ticks)
    with v.batch():
        ids = [v.secret.create(name=f"s{i}").id for i in range(250)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = v.secret.list(order=order, take=20, cursor=cursor)
        if not page.items:
            assert page.cursor is None
            assert "cursor" not in page.to_dict()
            break
        pages += 1
        seen += [s.id for s in page.items]
        assert page.cursor == page.items[-1].id
        cursor = page.cursor
    assert pages == 13
    assert seen == (ids if order == "asc" else ids[::-1])


def test_sort_is_created_at_then_id(v: vault.Vault, clock: Clock) -> None:
    clock.source = lambda: 1_700_000_000_000  # every secret in the same millisecond
    ids = [v.secret.create().id for _ in range(30)]
    assert [s.id for s in v.secret.list(order="asc").items] == sorted(ids)
    assert [s.id for s in v.secret.list().items] == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("take", "expected"), [(0, 100), (None, 100), ("abc", 100), (-5, 1), (1, 1), (150, 100), ("7", 7)]
)
def test_take_is_clamped_like_the_cloud(v: vault.Vault, take: object, expected: int) -> None:
    with v.batch():
        for _ in range(120):
            v.secret.create()
    assert len(v.secret.list(take=take).items) == expected  # type: ignore[arg-type]


def test_unknown_order_means_desc_and_unknown_cursor_is_empty(v: vault.Vault, clock: Clock) -> None:
    clock.source = iter(range(10, 100)).__next__
    a, b = v.secret.create(), v.secret.create()
    assert [s.id for s in v.secret.list(order="sideways").items] == [b.id, a.id]
    assert v.secret.list(cursor="nosuchcursor").items == []


def test_cursor_of_a_deleted_item_keeps_paging(v: vault.Vault, clock: Clock) -> None:
    clock.source = iter(range(10, 100)).__next__
    ids = [v.secret.create().id for _ in range(5)]
    page = v.secret.list(order="asc", take=2)
    v.secret.delete(page.cursor)  # type: ignore[arg-type]
    rest = v.secret.list(order="asc", take=10, cursor=page.cursor)
    assert [s.id for s in rest.items] == ids[2:]


def test_list_request_mapping_and_meta_filter(v: vault.Vault) -> None:
    v.secret.create(name="a", meta={"env": "prod", "team": "x", "on": True, "n": 5, "deep": {"k": "v"}})
    v.secret.create(name="b", meta={"env": "prod", "team": "y", "on": False})
    v.secret.create(name="c", meta={"env": "dev"})
    v.secret.create(name="d")

    def names(**kw: object) -> list[str]:
        return sorted(s.name for s in v.secret.list(**kw).items)  # type: ignore[arg-type]

    assert names(meta={"env": "prod"}) == ["a", "b"]
    assert names(meta={"env": "prod", "team": "y"}) == ["b"]
    assert names(meta={"on": "true"}) == ["a"]
    assert names(meta={"on": False}) == ["b"]
    assert names(meta={"n": "5"}) == names(meta={"n": 5}) == []  # a stored number is not the text "5" (G13)
    assert names(meta={"deep.k": "v"}) == ["a"]
    assert names(meta={"env": "none"}) == []
    assert sorted(s.name for s in v.secret.list({"meta": {"env": "dev"}, "take": 5})) == ["c"]
    with pytest.raises(vault.InvalidRequestError):
        v.secret.list({"colour": "red"})


def test_update_changes_only_given_fields(v: vault.Vault) -> None:
    s = v.secret.create(name="n", description="d", type="bearer", alias="al", value="old", meta={"a": 1})
    u = v.secret.update(s.id, description="new")
    assert (u.name, u.description, u.type, u.alias, u.meta) == ("n", "new", "bearer", "al", {"a": 1})
    assert u.updated_at >= s.updated_at and u.created_at == s.created_at
    assert v.secret.fetch(s.id).value == "old"
    v.secret.update("@al", {"value": "new"})
    assert v.secret.fetch(s.id).value == "new"
    v.secret.update(s.id, value=None)
    assert v.secret.fetch(s.id).value is None


def test_update_meta_replace_merge_and_key_filtering(v: vault.Vault) -> None:
    s = v.secret.create(meta={"a": 1, "b": 2})
    assert v.secret.update(s.id, meta={"c": 3}).meta == {"c": 3}
    merged = v.secret.update(s.id, meta={"$update": {"d": 4, "c": 30, "_hidden": 1, "-x": 2}}).meta
    assert merged == {"c": 30, "d": 4}
    assert v.secret.update(s.id, meta={"-x": 1, "émoji": 2, "ok": 1}).meta == {"ok": 1}
    with pytest.raises(vault.InvalidRequestError):
        v.secret.update(s.id, meta={"_x": 1, "ok": 2})  # the meta schema runs on update too (D1)
    assert v.secret.fetch(s.id).meta == {"ok": 1}
    assert v.secret.update(s.id, meta=None).meta is None


def test_config_replaces_and_masked_client_secret_is_kept(v: vault.Vault) -> None:
    s = v.secret.create(type="oauth", config={"clientId": "id", "clientSecret": "cs_SECRET", "scope": "a"})
    assert s.to_dict()["config"] == {"clientId": "id", "clientSecret": "********", "scope": "a"}
    assert "cs_SECRET" not in repr(s)
    u = v.secret.update(s.id, config={"clientId": "id2", "clientSecret": "********"})
    assert u.config == {"clientId": "id2", "clientSecret": "cs_SECRET"}
    u = v.secret.update(s.id, config={"clientId": "id3"})
    assert u.config == {"clientId": "id3"}
    u = v.secret.update(s.id, config={"clientSecret": "********"})
    assert u.config == {}
    empty = v.secret.create(config={"clientSecret": ""})
    assert empty.to_dict()["config"] == {"clientSecret": None}


def test_delete_returns_the_secret_and_then_it_is_gone(v: vault.Vault) -> None:
    s = v.secret.create(name="x", alias="x", value="v")
    d = v.secret.delete("@x")
    assert d.id == s.id and d.value is None
    for ident in (s.id, "@x", "(x)"):
        with pytest.raises(vault.NotFoundError):
            v.secret.fetch(ident)
    with pytest.raises(vault.NotFoundError):
        v.secret.delete(s.id)
    assert v.secret.create(alias="x").alias == "x"  # the alias is free again


def test_secret_repr_str_and_pickle_hide_the_value(v: vault.Vault) -> None:
    import pickle

    s = v.secret.create(name="n", value="sk_live_MARKER")
    got = v.secret.fetch(s.id)
    for text in (repr(got), str(got), f"{got}", repr(v.secret.list())):
        assert "sk_live_MARKER" not in text
    assert "<hidden>" in repr(got)
    with pytest.raises(TypeError):
        pickle.dumps(got)
    assert got.to_dict(reveal=True)["value"] == "sk_live_MARKER"
    assert "value" not in got.to_dict()


def test_to_dict_is_the_cloud_shape(v: vault.Vault) -> None:
    s = v.secret.create(name="n", blueprint_id="bp")
    assert set(s.to_dict()) == CLOUD_ITEM_KEYS


def test_returned_meta_is_a_copy(v: vault.Vault) -> None:
    s = v.secret.create(meta={"a": {"b": 1}})
    assert s.meta is not None
    s.meta["a"]["b"] = 2
    assert v.secret.fetch(s.id).meta == {"a": {"b": 1}}


def test_reopen_persists_everything(vault_path: Path) -> None:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(name="n", alias="a", value="val", meta={"m": [1, 2]}, config={"schema": "Token"})
        v.secret.update(s.id, description="d")
        gone = v.secret.create(name="gone")
        v.secret.delete(gone.id)
        before = v.secret.fetch(s.id)
    with vault.open(vault_path, PASSPHRASE) as v:
        assert len(v) == 1
        assert v.secret.fetch(s.id) == before


def test_batch_commits_all_or_nothing(v: vault.Vault, vault_path: Path) -> None:
    with v.batch():
        a = v.secret.create(name="a")
        v.secret.update(a.id, name="a2")
        assert v.secret.fetch(a.id).name == "a2"  # reads see the batch's own writes
    with pytest.raises(RuntimeError), v.batch():
        v.secret.create(name="b")
        v.secret.delete(a.id)
        raise RuntimeError("abort")
    assert [s.name for s in v.secret.list()] == ["a2"]
    with vault.open(vault_path, PASSPHRASE) as other:
        assert [s.name for s in other.secret.list()] == ["a2"]


def test_batch_is_one_append_and_one_fsync(vault_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    io = IO()
    v = vault.init(vault_path, PASSPHRASE, kdf=FAST, _io=io)
    orig_sync = io.fdatasync
    monkeypatch.setattr(io, "fdatasync", lambda fd: (calls.append("sync"), orig_sync(fd))[1])
    with v, v.batch():
        for i in range(100):
            v.secret.create(name=f"s{i}", value="x")
    assert calls == ["sync"]


def test_failed_validation_inside_batch_rolls_back_the_batch(v: vault.Vault) -> None:
    with pytest.raises(vault.ConflictError), v.batch():
        v.secret.create(alias="same")
        v.secret.create(alias="same")
    assert len(v) == 0


def test_closed_vault_refuses_calls(vault_path: Path) -> None:
    v = vault.init(vault_path, PASSPHRASE, kdf=FAST)
    v.close()
    v.close()  # idempotent
    assert v.closed
    with pytest.raises(vault.VaultClosedError):
        v.secret.list()
    with pytest.raises(vault.VaultClosedError):
        v.secret.create()


def test_paging_stays_exact_across_many_deletes_and_undone_batches(v: vault.Vault, clock: Clock) -> None:
    # Deleted rows leave stale keys in the sort index until it is pruned; paging must never show them.
    clock.source = iter(range(1_000, 1_000_000, 7)).__next__
    with v.batch():
        ids = [v.secret.create(name=f"s{i}").id for i in range(3000)]
    doomed = set(ids[::2])
    for rid in ids[::2][:1500]:
        v.secret.delete(rid)
    try:
        with v.batch():
            v.secret.delete(ids[1])
            v.secret.delete(ids[3])
            raise RuntimeError("undo these deletes")
    except RuntimeError:
        pass
    alive = [rid for rid in ids if rid not in doomed]
    for order, expected in (("asc", alive), ("desc", alive[::-1])):
        seen: list[str] = []
        cursor = None
        while True:
            page = v.secret.list(order=order, take=100, cursor=cursor)
            if not page.items:
                break
            seen += [s.id for s in page.items]
            cursor = page.cursor
        assert seen == expected
    v.compact()
    assert [s.id for s in v.secret.list(order="asc", take=5)] == alive[:5]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_meta_and_config_refuse_values_json_cannot_spell(v: vault.Vault, bad: float) -> None:
    for field in ("meta", "config"):
        with pytest.raises(vault.InvalidRequestError, match=field):
            v.secret.create({field: {"x": [1, {"y": bad}]}})
    assert v.secret.create(meta={"ok": 1.5}).meta == {"ok": 1.5}


def test_create_hands_back_the_value_it_stored(v: vault.Vault) -> None:
    # A created secret whose .value read None looked as if nothing was stored.
    s = v.secret.create(name="k", value="sk-stored")
    assert s.value == "sk-stored" and "sk-stored" not in repr(s)
    assert v.secret.create(name="no value").value is None
    assert [x.value for x in v.secret.list()] == [None, None]  # list still never decrypts


def test_every_stored_field_reaches_its_own_attribute(tmp_path: Path) -> None:
    # Secrets are built positionally on the read paths (speed); distinct values per field catch a
    # field out of place on each path that builds one.
    now = [1_700_000_000_000]
    clock = Clock()
    clock.source = lambda: now[0]
    with vault.init(tmp_path / "f.cbkv", PASSPHRASE, kdf=FAST, clock=clock) as v:
        s = v.secret.create(
            name="the name",
            description="the description",
            kind="personal",
            type="bearer",
            visibility="protected",
            alias="the-alias",
            meta={"m": 1},
            config={"c": 2},
            value="the value",
        )
        now[0] += 5
        v.secret.update(s.id, name="the name 2")
        expected = {
            "id": s.id,
            "created_at": 1_700_000_000_000,
            "updated_at": 1_700_000_000_005,
            "name": "the name 2",
            "description": "the description",
            "kind": "personal",
            "type": "bearer",
            "visibility": "protected",
            "alias": "the-alias",
            "blueprint_id": None,
            "meta": {"m": 1},
            "config": {"c": 2},
            "revision": 2,
            "deleted_at": None,
        }
        views = {
            "fetch": v.secret.fetch(s.id),
            "list": v.secret.list().items[0],
            "history": v.secret.history(s.id)[-1],  # newest first: the last is revision 1
        }
        for how, got in views.items():
            seen = {k: getattr(got, k) for k in expected}
            want = {**expected, "name": "the name"} if how == "history" else dict(expected)
            if how == "history":
                want.update(updated_at=1_700_000_000_000, revision=1)
            assert seen == want, how
        assert views["fetch"].value == "the value"
        assert views["list"].value is None
        v.secret.delete(s.id)
        trashed = v.secret.list(deleted=True).items[0]
        assert trashed.deleted_at == 1_700_000_000_005
        assert (trashed.name, trashed.revision, trashed.alias) == ("the name 2", 2, "the-alias")
