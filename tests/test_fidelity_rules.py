"""The field, meta, alias, blueprintId, identifier and list rules against the platform's source.

One test (or a few) per row of docs/FIDELITY.md, named after the row: the stand-in
(``vault._api.SecretApi``, also over HTTP through the ASGI application in process) must answer
what the cloud answers, and the local vault API (``v.secret``) keeps only the differences
README.md lists. Where the cloud's answer is inferred (C10-C12, F4, G15) the stand-in takes
the stricter reading, so that a test that passes offline also passes online.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import vault
from tests.conftest import FAST, PASSPHRASE, Clock
from vault._api import JSON_NULL, ListQuery, SecretApi
from vault._asgi import StandInApp
from vault.aio import AsyncVault

BAD_REQUEST = "Bad request"


@pytest.fixture
def ticking(vault_path: Path, clock: Clock) -> Iterator[vault.Vault]:
    """A vault whose clock advances one millisecond per read: creation order is list order."""
    clock.source = iter(range(1_700_000_000_000, 1_700_000_000_000 + 100_000)).__next__
    with vault.init(vault_path, PASSPHRASE, kdf=FAST, clock=clock) as handle:
        yield handle


@pytest.fixture
def api(ticking: vault.Vault) -> SecretApi:
    return SecretApi(ticking)


def refused(call: Any, *args: Any) -> vault.VaultError:
    with pytest.raises(vault.VaultError) as info:
        call(*args)
    return info.value


def answer(call: Any, *args: Any) -> tuple[int, dict[str, Any]]:
    """(status, body) as the stand-in would answer a call."""
    try:
        return 200, call(*args)
    except vault.VaultError as exc:
        return exc.status, exc.to_dict()


def bad(message: str) -> tuple[int, dict[str, str]]:
    return 400, {"message": message, "code": "BAD_REQUEST"}


def server_error(message: str) -> tuple[int, dict[str, str]]:
    return 500, {"message": message, "code": "GENERIC_ERROR"}


NOT_FOUND = (404, {"message": "Not found", "code": "NOT_FOUND"})


def request(v: vault.Vault, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request to the stand-in's ASGI application, in process (no socket)."""
    app = StandInApp(v, any_token=True)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            headers = {"authorization": "Bearer t", **kw.pop("headers", {})}
            return await client.request(method, path, headers=headers, **kw)

    return asyncio.run(go())


def post_raw(v: vault.Vault, path: str, content: bytes) -> httpx.Response:
    return request(v, "POST", path, content=content, headers={"content-type": "application/json"})


def listed(v: vault.Vault, query: str, *, jsonl: bool = False) -> list[str]:
    """The names a list query answers (every JSONL line, or one JSON page)."""
    headers = {"accept": "application/jsonl"} if jsonl else {}
    r = request(v, "GET", f"/api/v1/secret/list?{query}", headers=headers)
    assert r.status_code == 200, r.text
    if jsonl:
        return [json.loads(line)["data"]["name"] for line in r.text.splitlines() if line]
    return [item["name"] for item in r.json()["items"]]


def page(api: SecretApi, pairs: list[tuple[str, str]]) -> list[str]:
    return [item["name"] for item in api.list(ListQuery.from_pairs(pairs))["items"]]


def streamed(api: SecretApi, pairs: list[tuple[str, str]]) -> list[str]:
    return [line["data"]["name"] for line in api.stream(ListQuery.from_pairs(pairs))]


# --- A. bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [JSON_NULL, False, 0, 0.0, ""])
def test_a8_a_falsy_json_body_on_create_or_update_is_bad_request(api: SecretApi, body: object) -> None:
    sid = api.create({})["id"]
    assert answer(api.create, body) == bad(BAD_REQUEST)
    assert answer(api.update, sid, body) == bad(BAD_REQUEST)
    # A body that is not an object but truthy is Joi's "value" error (A9); no body at all is {} (A7).
    assert answer(api.create, True) == bad('"value" must be of type object')
    assert answer(api.create, [1]) == bad('"value" must be of type object')
    assert set(api.create(None)) == {"id"}


@pytest.mark.parametrize("content", [b"false", b"0", b'""'])
def test_a8_falsy_json_bodies_over_http(ticking: vault.Vault, content: bytes) -> None:
    r = post_raw(ticking, "/api/v1/secret/create", content)
    assert (r.status_code, r.json()) == bad(BAD_REQUEST)
    assert post_raw(ticking, "/api/v1/secret/create", b"").status_code == 200  # empty body: {}


def test_a8_a_json_null_body_over_http_is_bad_request(ticking: vault.Vault) -> None:
    r = post_raw(ticking, "/api/v1/secret/create", b"null")
    assert (r.status_code, r.json()) == bad(BAD_REQUEST)


@pytest.mark.parametrize("body", [{"x": 1}, [1], JSON_NULL, "text", 5])
def test_a10_routes_without_a_schema_ignore_the_body(api: SecretApi, body: object) -> None:
    sid = api.create({"type": "bearer", "kind": "shared", "value": "tok"})["id"]
    assert api.verify(sid, body)["status"] == "authenticated"
    assert api.authenticate(sid, body)["id"] == sid
    assert api.revoke(sid, body) == {"id": sid}
    assert api.delete(sid, body) == {"id": sid}


def test_a10_over_http(ticking: vault.Vault) -> None:
    sid = SecretApi(ticking).create({"alias": "gone"})["id"]
    r = post_raw(ticking, f"/api/v1/secret/{sid}/authenticate", b'{"x": 1}')
    assert r.status_code == 200 and r.json()["id"] == sid
    r = post_raw(ticking, "/api/v1/secret/@gone/delete", b"[1]")
    assert (r.status_code, r.json()) == (200, {"id": sid})


# --- C. fields ------------------------------------------------------------------------------


def test_c4_only_the_first_validation_error_is_answered(api: SecretApi) -> None:
    assert answer(api.create, {"kind": "x", "type": "y"}) == bad('"kind" must be one of [shared, personal]')
    assert answer(api.create, {"colour": "red", "shade": "dark"}) == bad('"colour" is not allowed')


def test_c5_the_schema_key_order_decides_which_error_comes_first(api: SecretApi) -> None:
    assert answer(api.create, {"foo": 1, "kind": "x"}) == bad('"kind" must be one of [shared, personal]')
    assert answer(api.create, {"type": "y", "kind": "x"}) == bad('"kind" must be one of [shared, personal]')
    assert answer(api.create, {"meta": 5, "alias": "UP"}) == bad(
        "Alias must contain only lowercase letters, numbers, hyphens, and underscores"
    )
    assert answer(api.create, {"visibility": "x", "value": 5}) == bad('"value" must be a string')
    # Unknown keys only after every known key passed, then the blueprint lookup last of all.
    assert answer(api.create, {"blueprintId": "bp", "zz": 1}) == bad('"zz" is not allowed')
    assert answer(api.create, {"blueprintId": "bp", "name": 5}) == bad('"name" must be a string')


@pytest.mark.parametrize(
    ("field", "bad_value", "message"),
    [
        ("kind", "x", '"kind" must be one of [shared, personal]'),
        ("kind", None, '"kind" must be one of [shared, personal]'),
        ("kind", "", '"kind" must be one of [shared, personal]'),
        ("type", "secret", '"type" must be one of [plain, basic, bearer, jwt, oauth, template, reference]'),
        ("visibility", 0, '"visibility" must be one of [private, protected, public]'),
    ],
)
def test_c7_enum_messages_use_joi_wording(api: SecretApi, field: str, bad_value: object, message: str) -> None:
    assert answer(api.create, {field: bad_value}) == bad(message)
    sid = api.create({})["id"]
    assert answer(api.update, sid, {field: bad_value}) == bad(message)


@pytest.mark.parametrize(
    ("field", "bad_value", "message"),
    [
        ("value", 5, '"value" must be a string'),
        ("name", 5, '"name" must be a string'),
        ("description", ["x"], '"description" must be a string'),
        ("blueprintId", True, '"blueprintId" must be a string'),
        ("meta", "env=prod", '"meta" must be of type object'),
        ("config", [1], '"config" must be of type object'),
    ],
)
def test_c8_type_messages_use_joi_wording(
    ticking: vault.Vault, api: SecretApi, field: str, bad_value: object, message: str
) -> None:
    assert answer(api.create, {field: bad_value}) == bad(message)
    # The local vault API gives the same words (the code is what both promise).
    assert refused(ticking.secret.create, {field: bad_value}).message == message


def test_c9_a_null_name_or_description_is_a_server_error_in_the_stand_in(ticking: vault.Vault, api: SecretApi) -> None:
    system = server_error("System error occurred")
    for field in ("name", "description"):
        assert answer(api.create, {field: None}) == system
        sid = api.create({})["id"]
        assert answer(api.update, sid, {field: None}) == system
        # The database write comes after the schema, the personal-value conflict and the lookup.
        assert answer(api.create, {field: None, "kind": "x"})[0] == 400
        assert answer(api.create, {field: None, "kind": "personal", "value": "v"})[0] == 409
        assert answer(api.update, "nonexistent", {field: None}) == NOT_FOUND
        # The local vault API refuses it as a bad request (README: where the local vault differs).
        assert refused(ticking.secret.create, {field: None}).code == "BAD_REQUEST"
    assert len(ticking) == 2


def test_c10_names_over_191_bytes_are_refused_by_the_stand_in(ticking: vault.Vault, api: SecretApi) -> None:
    message = '"name" must be less than or equal to 191 bytes long'
    assert set(api.create({"name": "n" * 191})) == {"id"}
    assert answer(api.create, {"name": "n" * 192}) == bad(message)
    assert answer(api.create, {"name": "é" * 96}) == bad(message)  # 192 bytes, 96 characters
    sid = api.create({})["id"]
    assert answer(api.update, sid, {"name": "n" * 192}) == bad(message)
    # The local vault API keeps its own limit (it must hold whatever a sync pulls).
    assert ticking.secret.create(name="n" * 1024).name == "n" * 1024


def test_c11_descriptions_over_65535_bytes_are_refused_by_the_stand_in(ticking: vault.Vault, api: SecretApi) -> None:
    message = '"description" must be less than or equal to 65535 bytes long'
    assert set(api.create({"description": "d" * 65_535})) == {"id"}
    assert answer(api.create, {"description": "é" * 40_000}) == bad(message)  # 80,000 bytes
    assert ticking.secret.create(description="é" * 40_000).description == "é" * 40_000


def test_c12_values_longer_than_the_encrypted_column_are_refused_by_the_stand_in(
    ticking: vault.Vault, api: SecretApi
) -> None:
    system = server_error("System error occurred")
    ok = api.create({"kind": "shared", "value": "v" * 48_000})["id"]
    assert answer(api.create, {"kind": "shared", "value": "v" * 48_001}) == system
    assert answer(api.update, ok, {"value": "é" * 24_001}) == system
    # A personal secret stores no value, so a long one cannot overflow anything.
    assert set(api.create({"kind": "personal", "value": ""})) == {"id"}
    long = ticking.secret.create(value="v" * 60_000).id
    assert len(ticking.secret.fetch(long).value or "") == 60_000


@pytest.mark.parametrize(
    "config",
    [
        {"authorizationUrl": "notaurl", "username": 5},
        {"clientId": 5, "password": None},
        {"tokenUrl": "", "user": ["x"]},
        {"revokeUrl": "http://", "pass": 1},
    ],
)
def test_c14_a_config_failing_both_shapes_is_refused(ticking: vault.Vault, api: SecretApi, config: Any) -> None:
    status, body = answer(api.create, {"config": config})
    assert status == 400 and body["message"].startswith('"config" contains an invalid value: ')
    sid = api.create({})["id"]
    assert answer(api.update, sid, {"config": config})[0] == 400
    # The local vault API stores any JSON object (it must hold whatever a sync pulls).
    assert ticking.secret.create(config=config).config == config


@pytest.mark.parametrize(
    "config",
    [
        {"authorizationUrl": "notaurl"},  # the basic shape passes it through
        {"username": 5},  # the oauth shape passes it through
        {"authorizationUrl": "https://auth.example.com/o?x=1", "username": 5},
        {"clientId": "c", "anything": {"nested": [1]}},
        {},
    ],
)
def test_c14_a_config_one_shape_accepts_is_stored(api: SecretApi, config: Any) -> None:
    sid = api.create({"config": config})["id"]
    assert api.fetch(sid)["config"] == config


def test_c18_hash_keys_are_hidden_at_every_depth_of_answers(ticking: vault.Vault, api: SecretApi) -> None:
    meta = {"#x": 1, "a": {"#b": 2, "c": [{"#d": 3, "e": 4}]}, "f": "#not-a-key"}
    config = {"#k": "hidden", "clientSecret": "s", "n": {"#m": 1}}
    sid = api.create({"meta": meta, "config": config})["id"]
    shown_meta = {"a": {"c": [{"e": 4}]}, "f": "#not-a-key"}
    shown_config = {"clientSecret": "********", "n": {}}
    item = api.fetch(sid)
    assert (item["meta"], item["config"]) == (shown_meta, shown_config)
    (listed_item,) = api.list(ListQuery())["items"]
    assert (listed_item["meta"], listed_item["config"]) == (shown_meta, shown_config)
    (line,) = api.stream(ListQuery())
    assert (line["data"]["meta"], line["data"]["config"]) == (shown_meta, shown_config)
    # Stored, never shown: the local vault API (the owner's own view) still has them.
    assert ticking.secret.fetch(sid).meta == meta


# --- D. meta --------------------------------------------------------------------------------


def test_d1_the_meta_key_rule_runs_on_create_and_update(ticking: vault.Vault, api: SecretApi) -> None:
    sid = api.create({"meta": {"a": 1}})["id"]
    assert answer(api.create, {"meta": {"_a": 1}}) == bad('"meta._a" is not allowed')
    assert answer(api.create, {"meta": {"": 1}}) == bad('"meta." is not allowed')
    assert answer(api.update, sid, {"meta": {"ok": 1, "_a": 1}}) == bad('"meta._a" is not allowed')
    assert answer(api.update, sid, {"meta": {"": 1}}) == bad('"meta." is not allowed')
    assert api.fetch(sid)["meta"] == {"a": 1}
    # One rule for every surface: the local vault API refuses the same keys, on update too.
    for meta in ({"_a": 1}, {"": 1}):
        assert refused(ticking.secret.create, {"meta": meta}).code == "BAD_REQUEST"
        assert refused(ticking.secret.update, sid, {"meta": meta}).code == "BAD_REQUEST"
    # Inside $update every key passes the schema; the merge filters them.
    api.update(sid, {"meta": {"$update": {"_b": 1, "": 2, "c": 3}}})
    assert api.fetch(sid)["meta"] == {"a": 1, "": 2, "c": 3}


def test_d3_update_keeps_only_keys_starting_with_an_ascii_letter_or_digit(ticking: vault.Vault, api: SecretApi) -> None:
    sid = api.create({})["id"]
    api.update(sid, {"meta": {"émoji": 1, "Ω": 2, "-x": 3, "$y": 4, "ok": 5, "9": 6, "x-é": 7}})
    assert api.fetch(sid)["meta"] == {"ok": 5, "9": 6, "x-é": 7}
    assert ticking.secret.update(sid, meta={"émoji": 1, "k": 2}).meta == {"k": 2}


def test_d5_dollar_update_wins_over_sibling_keys(ticking: vault.Vault, api: SecretApi) -> None:
    sid = api.create({"meta": {"a": 1}})["id"]
    api.update(sid, {"meta": {"$update": {"b": 2}, "c": 3}})
    assert api.fetch(sid)["meta"] == {"a": 1, "b": 2}
    assert ticking.secret.update(sid, meta={"c": 9, "$update": {"d": 4}}).meta == {"a": 1, "b": 2, "d": 4}


@pytest.mark.parametrize(
    ("update", "meta"),
    [
        (None, {"a": 1}),
        (5, {"a": 1}),
        (True, {"a": 1}),
        ([7, 8], {"a": 1, "0": 7, "1": 8}),
        ("xy", {"a": 1, "0": "x", "1": "y"}),
        ({}, {"a": 1}),
    ],
)
def test_d6_a_non_object_dollar_update(ticking: vault.Vault, api: SecretApi, update: object, meta: Any) -> None:
    sid = api.create({"meta": {"a": 1}})["id"]
    api.update(sid, {"meta": {"$update": update}})
    assert api.fetch(sid)["meta"] == meta
    other = ticking.secret.create(meta={"a": 1}).id
    assert ticking.secret.update(other, meta={"$update": update}).meta == meta


# --- E. alias, blueprintId, kind ------------------------------------------------------------


def test_e1_an_update_that_leaves_alias_out_clears_it_in_the_stand_in(ticking: vault.Vault, api: SecretApi) -> None:
    sid = api.create({"alias": "keepme", "name": "n"})["id"]
    assert api.update("@keepme", {"name": "x"}) == {"id": sid}
    assert api.fetch(sid)["alias"] is None
    assert answer(api.fetch, "@keepme") == NOT_FOUND
    api.update(sid, {"alias": "again"})
    assert api.fetch("@again")["id"] == sid
    # The local vault API keeps an alias a call leaves out (README: where the local vault differs).
    ticking.secret.update(sid, name="y")
    assert ticking.secret.fetch(sid).alias == "again"


def test_e1_over_http_and_through_aio(ticking: vault.Vault) -> None:
    sid = SecretApi(ticking).create({"alias": "keepme"})["id"]
    r = post_raw(ticking, "/api/v1/secret/@keepme/update", b'{"description": "d"}')
    assert r.json() == {"id": sid}
    assert request(ticking, "GET", "/api/v1/secret/@keepme/fetch").status_code == 404

    async def through_aio() -> str | None:
        secrets = AsyncVault(ticking).secret
        await secrets.update(sid, {"alias": "back"})
        await secrets.update("@back", {"name": "n"})
        return (await secrets.fetch(sid)).alias

    assert asyncio.run(through_aio()) is None


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("ABC", "Alias must contain only lowercase letters, numbers, hyphens, and underscores"),
        (" abc", "Alias must contain only lowercase letters, numbers, hyphens, and underscores"),
        ("a" * 129, '"alias" length must be less than or equal to 128 characters long'),
        ("A" * 129, '"alias" length must be less than or equal to 128 characters long'),
        (5, '"alias" must be a string'),
        (True, '"alias" must be a string'),
    ],
)
def test_e3_alias_messages_use_joi_wording(ticking: vault.Vault, api: SecretApi, alias: object, message: str) -> None:
    assert answer(api.create, {"alias": alias}) == bad(message)
    assert refused(ticking.secret.create, {"alias": alias}).message == message


def test_e4_a_duplicate_alias_is_a_unique_constraint_violation(ticking: vault.Vault, api: SecretApi) -> None:
    conflict = (409, {"message": "Unique constraint violation", "code": "CONFLICT"})
    first = api.create({"alias": "dup"})["id"]
    assert answer(api.create, {"alias": "dup"}) == conflict
    other = api.create({})["id"]
    assert answer(api.update, other, {"alias": "dup"}) == conflict
    assert api.update(first, {"alias": "dup"}) == {"id": first}  # its own alias is no conflict
    # The local vault API keeps its clearer message; the code is the same.
    assert refused(ticking.secret.create, {"alias": "dup"}).code == "CONFLICT"


def test_e5_blueprint_id_is_trimmed_blank_is_null_and_any_other_value_is_not_found(
    ticking: vault.Vault, api: SecretApi
) -> None:
    not_found = bad("Blueprint not found (blueprintId)")
    for blank in ("", "  ", "\t\n", None):
        sid = api.create({"blueprintId": blank})["id"]
        assert api.fetch(sid)["blueprintId"] is None
        assert api.update(sid, {"blueprintId": blank}) == {"id": sid}
    for named in ("abc", " x ", "b" * 200):
        assert answer(api.create, {"blueprintId": named}) == not_found
        assert answer(api.update, sid, {"blueprintId": named}) == not_found
        assert answer(api.update, "nonexistent", {"blueprintId": named}) == not_found  # a schema error: before lookup
    # After every other field: a bad field wins, and so does an unknown key.
    assert answer(api.create, {"blueprintId": "abc", "visibility": "x"})[1]["message"].startswith('"visibility"')
    # The local vault API stores the id (trimmed; blank is null): there are no blueprints to check.
    assert ticking.secret.create(blueprint_id=" bp ").blueprint_id == "bp"
    assert ticking.secret.create(blueprint_id=" ").blueprint_id is None


def test_e8_the_personal_value_conflict_comes_before_the_lookup(api: SecretApi) -> None:
    conflict = (409, {"message": "Personal secrets cannot have a value", "code": "CONFLICT"})
    assert answer(api.update, "nonexistent", {"kind": "personal", "value": "x"}) == conflict
    assert answer(api.update, "@@nobody", {"kind": "personal", "value": "x"}) == conflict


def test_e10_an_unknown_identifier_is_not_found_with_the_default_message(ticking: vault.Vault, api: SecretApi) -> None:
    sid = api.create({})["id"]
    api.delete(sid)
    for ident in ("nonexistent", sid, "@nope", "(nope)"):
        assert answer(api.fetch, ident) == NOT_FOUND
        assert answer(api.update, ident, {}) == NOT_FOUND
        assert answer(api.delete, ident) == NOT_FOUND
        assert answer(api.authenticate, ident) == NOT_FOUND
    r = request(ticking, "GET", "/api/v1/secret/nonexistent/fetch")
    assert (r.status_code, r.json()) == NOT_FOUND


# --- F. identifiers -------------------------------------------------------------------------


def test_f2_identifiers_aliases_and_names_are_trimmed(ticking: vault.Vault, api: SecretApi) -> None:
    sid = api.create({"name": "nm", "alias": "nmal"})["id"]
    for ident in (f" {sid} ", "@ nmal", " @nmal\t", "( nm )", "(nm )"):
        assert api.fetch(ident)["id"] == sid, ident
    assert api.update("@ nmal", {"alias": "nmal"}) == {"id": sid}
    for ident in ("%20@nmal%20", "(%20nm%20)"):
        r = request(ticking, "GET", f"/api/v1/secret/{ident}/fetch")
        assert r.status_code == 200 and r.json()["id"] == sid, ident
    assert answer(api.delete, "( nm )") == (200, {"id": sid})


def test_f2_a_blank_identifier_is_bad_request(api: SecretApi) -> None:
    assert answer(api.fetch, "  ") == bad(BAD_REQUEST)


@pytest.mark.parametrize(
    ("ident", "message"),
    [
        ("@", "Alias is required"),
        ("@ ", "Alias is required"),
        ("()", "Name is required"),
        ("(  )", "Name is required"),
        ("@@", "Alias is required"),
        ("@@x", "Parent ID is required for @@ identifier"),
        ("@a@b", "Parent ID is required for @user@resource identifier"),
        ("@@@x", "Parent ID is required for @@ identifier"),
        ("@a@", "Resource alias is required"),
        ("@ @b", "User alias is required"),
    ],
)
def test_f4_degenerate_identifiers_are_server_errors(
    ticking: vault.Vault, api: SecretApi, ident: str, message: str
) -> None:
    api.create({"name": "", "alias": "x"})  # "()" named this secret before: now a lookup failure, as online
    assert answer(api.fetch, ident) == server_error(message)
    assert answer(api.update, ident, {"name": "n"}) == server_error(message)
    assert answer(api.delete, ident) == server_error(message)
    assert answer(api.update, ident, {"kind": "x"})[0] == 400  # the schema comes first
    r = request(ticking, "GET", f"/api/v1/secret/{quote(ident, safe='')}/fetch")
    assert (r.status_code, r.json()) == server_error(message)
    assert len(ticking) == 1 and ticking.secret.list().items[0].name == ""


def test_f4_the_local_vault_api_keeps_answering_not_found(ticking: vault.Vault) -> None:
    for ident in ("@", "@@x", "@a@b"):
        assert refused(ticking.secret.fetch, ident).code == "NOT_FOUND"


# --- G. list --------------------------------------------------------------------------------


def make(api: SecretApi, n: int, **fields: Any) -> list[str]:
    return [api.create({"name": f"s{i}", **fields})["id"] for i in range(n)]


@pytest.mark.parametrize(
    ("take", "count"),
    [("0x10", 16), ("0X3", 3), ("-0x2", 1), ("0x", 100), (" 0x4 ", 4), ("\ufeff7", 7), ("\xa05", 5), ("\x1c5", 100)],
)
def test_g2_take_is_read_like_javascript_parseint(api: SecretApi, take: str, count: int) -> None:
    make(api, 20)
    assert len(page(api, [("take", take)])) == min(count, 20)


def test_g2_the_local_vault_api_reads_take_the_same_way(ticking: vault.Vault) -> None:
    with ticking.batch():
        for _ in range(20):
            ticking.secret.create()
    assert len(ticking.secret.list(take="0x10").items) == 16


def test_g3_order_is_trimmed(api: SecretApi) -> None:
    make(api, 3)
    assert page(api, [("order", " asc ")]) == ["s0", "s1", "s2"]
    assert page(api, [("order", "ASC")]) == ["s2", "s1", "s0"]
    assert listed(api.vault, "order=%20asc%20") == ["s0", "s1", "s2"]


def test_g7_the_cursor_of_a_row_deleted_since_gives_an_empty_page(ticking: vault.Vault, api: SecretApi) -> None:
    ids = make(api, 5)
    first = api.list(ListQuery(order="asc", take=2))
    assert first["cursor"] == ids[1]
    api.delete(ids[1])
    assert api.list(ListQuery(order="asc", take=10, cursor=ids[1])) == {"items": []}
    assert list(api.stream(ListQuery(order="asc", cursor=ids[1]))) == []
    assert listed(ticking, f"order=asc&cursor={ids[1]}") == []
    assert api.list(ListQuery(cursor="@whatever")) == {"items": []}  # a cursor is an id, never an alias
    # The local vault API keeps paging (README: where the local vault differs).
    assert [s.id for s in ticking.secret.list(order="asc", cursor=ids[1])] == ids[2:]


def test_g8_the_cursor_is_trimmed_and_a_blank_one_means_none(api: SecretApi) -> None:
    ids = make(api, 3)
    assert page(api, [("order", "asc"), ("cursor", "  ")]) == ["s0", "s1", "s2"]
    assert page(api, [("order", "asc"), ("cursor", f" {ids[0]} ")]) == ["s1", "s2"]
    assert streamed(api, [("order", "asc"), ("cursor", f"\t{ids[1]}")]) == ["s2"]
    assert listed(api.vault, f"order=asc&cursor=%20{ids[0]}%20") == ["s1", "s2"]


def test_g9_the_first_occurrence_of_a_query_parameter_counts(api: SecretApi) -> None:
    for i in range(6):
        api.create({"name": f"s{i}", "meta": {"n": str(i % 2 + 3)}})
    assert len(page(api, [("take", "2"), ("take", "5")])) == 2
    assert page(api, [("order", "asc"), ("order", "desc")])[0] == "s0"
    assert page(api, [("order", "asc"), ("meta.n", "3"), ("meta.n", "4")]) == ["s0", "s2", "s4"]
    assert listed(api.vault, "order=asc&meta.n=3&meta.n=4&take=2&take=9") == ["s0", "s2"]


def test_g9_two_spellings_of_one_filter_both_apply(api: SecretApi) -> None:
    api.create({"name": "three", "meta": {"n": "3"}})
    assert page(api, [("meta.n", "3"), ("meta[n]", "3")]) == ["three"]
    assert page(api, [("meta.n", "3"), ("meta[n]", "4")]) == []


def test_g12_a_meta_filter_with_an_empty_value_is_ignored(ticking: vault.Vault, api: SecretApi) -> None:
    api.create({"name": "a", "meta": {"k": ""}})
    api.create({"name": "b"})
    assert page(api, [("order", "asc"), ("meta.k", "")]) == ["a", "b"]
    assert listed(ticking, "order=asc&meta.k=&meta[k]=") == ["a", "b"]
    assert sorted(s.name for s in ticking.secret.list(meta={"k": ""})) == ["a", "b"]

    async def through_aio() -> list[str]:
        got = await AsyncVault(ticking).secret.list({"order": "asc", "meta": {"k": ""}})
        return [item.name for item in got.items]

    assert asyncio.run(through_aio()) == ["a", "b"]


def test_g13_a_filter_value_is_a_string_and_matches_only_stored_strings(ticking: vault.Vault, api: SecretApi) -> None:
    api.create({"name": "num", "meta": {"n": 3, "f": 1.5, "t": True}})
    api.create({"name": "text", "meta": {"n": "3", "f": "1.5", "t": "true"}})
    assert page(api, [("meta.n", "3")]) == ["text"]
    assert page(api, [("meta.f", "1.5")]) == ["text"]
    assert page(api, [("meta.t", "true")]) == ["num"]  # true/false are booleans (G14)
    # Every surface reads a filter value as the query text an SDK sends.
    assert [s.name for s in ticking.secret.list(meta={"n": 3})] == ["text"]
    assert [s.name for s in ticking.secret.list(meta={"n": "3"})] == ["text"]


def test_g15_meta_filter_keys_are_json_paths(ticking: vault.Vault, api: SecretApi) -> None:
    api.create({"name": "arr", "meta": {"a": ["x", {"b": "y"}], "s": "x", "$d": "z", "u_": "w"}})
    api.create({"name": "other", "meta": {"a": ["q"]}})
    assert page(api, [("meta.a[0]", "x")]) == ["arr"]
    assert page(api, [("meta[a[1].b]", "y")]) == ["arr"]
    assert page(api, [("meta.a[2]", "x")]) == []
    assert page(api, [("meta.$d", "z")]) == ["arr"]
    assert page(api, [("meta.u_", "w")]) == ["arr"]
    assert page(api, [('meta."$d"', "z")]) == ["arr"]
    assert ticking.secret.list(meta={"a[0]": "x"}).items[0].name == "arr"


@pytest.mark.parametrize("key", ["my-key", "a b", "5", "a..b", "a.", "a[x]", "a[-1]", ""])
def test_g15_a_key_that_is_not_a_json_path_is_a_server_error(ticking: vault.Vault, api: SecretApi, key: str) -> None:
    status, body = answer(api.list, ListQuery.from_pairs([(f"meta.{key}", "y")]))
    assert status == 500 and body["code"] == "GENERIC_ERROR"
    assert answer(api.stream, ListQuery.from_pairs([(f"meta.{key}", "y")]))[0] == 500  # before any line
    r = request(
        ticking, "GET", "/api/v1/secret/list", params={f"meta.{key}": "y"}, headers={"accept": "application/jsonl"}
    )
    assert r.status_code == 500 and r.json()["code"] == "GENERIC_ERROR"
    # The local vault API refuses the filter as a bad request: it could never work online.
    assert refused(ticking.secret.list, {"meta": {key: "y"}}).code == "BAD_REQUEST"


def test_g16_the_blueprint_id_filter_is_trimmed(ticking: vault.Vault, api: SecretApi) -> None:
    ticking.secret.create(name="with", blueprint_id="bp")
    ticking.secret.create(name="without")
    assert page(api, [("blueprintId", " bp ")]) == ["with"]
    assert page(api, [("blueprintId", "  ")]) == ["without", "with"]
    assert listed(ticking, "blueprintId=%20bp%20") == ["with"]


# --- H. streams -----------------------------------------------------------------------------


@pytest.mark.parametrize(("take", "lines"), [("-3", 1), ("-0x10", 20), ("0x10", 20), ("", 20), ("3", 3)])
def test_h5_the_jsonl_limit_reads_take_with_radix_ten(
    ticking: vault.Vault, api: SecretApi, take: str, lines: int
) -> None:
    make(api, 20)
    assert len(streamed(api, [("take", take)])) == lines
    assert len(listed(ticking, f"take={take}", jsonl=True)) == lines
