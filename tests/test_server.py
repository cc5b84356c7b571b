"""The stand-in as the SDKs see it: a `python -m vault serve` subprocess driven over HTTP.

Requests are built the way the official SDKs build them (docs/TESTING.md, the API notes
§1): `/api/v1/secret/...` paths, `accept: application/json`, `authorization: Bearer`,
POST with a JSON body (`{}` for delete), GET for list and fetch. Every answer is checked
against the notes' shapes, statuses and codes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import CLOUD_ITEM_KEYS

TOKEN = "sk-test-stand-in-token"
ID = re.compile(r"^[a-z][a-z0-9]{23}$")
ITEM_KEYS = CLOUD_ITEM_KEYS


def start_server(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """Start `python -m vault serve ARGS` (``--path P`` takes the passphrase from ``CBK_VAULT_PASSPHRASE``
    in ``env``); return the process, base URL and printed token."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    second = proc.stdout.readline()
    if not first.startswith("base_url="):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"server did not start: {first!r} {err!r}")
    return proc, first.strip().split("=", 1)[1], second.strip().split("=", 1)[1]


def stop_server(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, base_url, printed = start_server("--ephemeral", "--token", TOKEN)
    assert printed == "(configured)"  # a configured token is never echoed
    try:
        yield base_url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    headers = {"accept": "application/json", "authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        yield client


class Api:
    """Thin SDK-like calls: paths and methods as the SDKs send them."""

    def __init__(self, http: httpx.Client, prefix: str = "/api/v1/secret") -> None:
        self.http = http
        self.prefix = prefix

    def url(self, secret_id: str, action: str) -> str:
        return f"{self.prefix}/{quote(secret_id, safe='')}/{action}"

    def create(self, **body: Any) -> httpx.Response:
        return self.http.post(f"{self.prefix}/create", json=body)

    def make(self, **body: Any) -> str:
        r = self.create(**body)
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def fetch(self, secret_id: str) -> httpx.Response:
        return self.http.get(self.url(secret_id, "fetch"))

    def update(self, secret_id: str, **body: Any) -> httpx.Response:
        return self.http.post(self.url(secret_id, "update"), json=body)

    def post(self, secret_id: str, action: str, body: Any = None) -> httpx.Response:
        return self.http.post(self.url(secret_id, action), json={} if body is None else body)

    def list(self, **query: Any) -> httpx.Response:
        return self.http.get(f"{self.prefix}/list", params=query)


@pytest.fixture
def api(http: httpx.Client) -> Api:
    return Api(http)


def error(r: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"message", "code"} and body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    return dict(body)


def plain(r: httpx.Response, status: int, text: str) -> None:
    """An answer of Next's body parser, before any route code: the message alone, no content type."""
    assert r.status_code == status, r.text
    assert r.text == text and "content-type" not in r.headers


# --- create / fetch ---------------------------------------------------------------------------


def test_create_answers_only_the_new_id(api: Api) -> None:
    r = api.create(name="Weather", type="bearer", value="tok-create-1")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"id"} and ID.match(r.json()["id"])


def test_fetch_gives_the_item_without_value_under_both_prefixes(http: httpx.Client) -> None:
    sid = Api(http).make(name="Both", type="basic", value="alice:pw-both", meta={"team": "a"})
    for prefix in ("/api/v1/secret", "/v1/secret"):
        r = Api(http, prefix).fetch(sid)
        assert r.status_code == 200
        item = r.json()
        assert set(item) == ITEM_KEYS  # exactly the cloud's fields: no value
        assert item["id"] == sid and item["name"] == "Both" and item["type"] == "basic"
        assert (item["kind"], item["visibility"], item["description"]) == ("shared", "private", "")
        assert item["alias"] is None and item["blueprintId"] is None and item["config"] is None
        assert item["meta"] == {"team": "a"}
        assert isinstance(item["createdAt"], int) and item["createdAt"] > 1_600_000_000_000
        assert "pw-both" not in r.text


def test_create_defaults_match_the_cloud(api: Api) -> None:
    item = api.fetch(api.make()).json()
    assert (item["name"], item["description"], item["kind"], item["type"], item["visibility"]) == (
        "",
        "",
        "shared",
        "plain",
        "private",
    )
    assert item["createdAt"] == item["updatedAt"]


def test_identifiers_id_alias_and_name_url_encoded(api: Api) -> None:
    sid = api.make(name="Pay API/v2 (live)", alias="pay-live", value="x")
    assert api.fetch("@pay-live").json()["id"] == sid
    assert api.fetch("(Pay API/v2 (live))").json()["id"] == sid  # "/" and "()" survive encoding
    error(api.fetch("@nope"), 404, "NOT_FOUND")
    error(api.fetch("(nope)"), 404, "NOT_FOUND")
    # A parent's alias: the cloud's lookup fails for a top-level account (docs/FIDELITY.md F4).
    error(api.fetch("@@pay-live"), 500, "GENERIC_ERROR")
    error(api.fetch("zzzzzzzzzzzzzzzzzzzzzzzz"), 404, "NOT_FOUND")


def test_client_secret_is_masked_and_other_config_is_not(api: Api) -> None:
    sid = api.make(type="oauth", config={"clientId": "cid", "clientSecret": "cs-secret", "scope": "a b"})
    r = api.fetch(sid)
    assert r.json()["config"] == {"clientId": "cid", "clientSecret": "********", "scope": "a b"}
    assert "cs-secret" not in r.text
    empty = api.make(type="oauth", config={"clientSecret": ""})
    assert api.fetch(empty).json()["config"] == {"clientSecret": None}
    absent = api.make(type="oauth", config={"clientId": "c"})
    assert api.fetch(absent).json()["config"] == {"clientId": "c"}
    listed = {i["id"]: i for i in api.list(take=100).json()["items"]}
    assert listed[sid]["config"]["clientSecret"] == "********"


# --- update / delete --------------------------------------------------------------------------


def test_update_by_alias_answers_the_real_id_and_changes_only_given_fields(api: Api) -> None:
    sid = api.make(name="U", alias="upd", description="d", value="v", meta={"a": 1})
    r = api.update("@upd", description="new", alias="upd")
    assert r.status_code == 200 and r.json() == {"id": sid}
    item = api.fetch(sid).json()
    assert item["description"] == "new" and item["name"] == "U" and item["meta"] == {"a": 1}
    assert item["alias"] == "upd"
    assert item["updatedAt"] >= item["createdAt"]
    # The one exception, as on the cloud: an update that leaves alias out clears it (E1).
    assert api.update("@upd", name="V").json() == {"id": sid}
    assert api.fetch(sid).json()["alias"] is None
    error(api.fetch("@upd"), 404, "NOT_FOUND", "Not found")


def test_update_meta_replaces_or_merges_with_dollar_update(api: Api) -> None:
    sid = api.make(meta={"a": 1, "b": 2})
    api.update(sid, meta={"$update": {"b": 3, "c": 4, "_hidden": 5}})
    assert api.fetch(sid).json()["meta"] == {"a": 1, "b": 3, "c": 4}
    api.update(sid, meta={"z": 1, "-y": 3, "émoji": 4})
    assert api.fetch(sid).json()["meta"] == {"z": 1}  # keys not starting with an ASCII letter or digit dropped
    error(api.update(sid, meta={"z": 2, "_x": 2}), 400, "BAD_REQUEST", '"meta._x" is not allowed')
    error(api.create(meta={"_reserved": 1}), 400, "BAD_REQUEST", '"meta._reserved" is not allowed')


def test_update_config_replaces_whole_config(api: Api) -> None:
    sid = api.make(type="oauth", config={"clientId": "a", "scope": "s"})
    api.update(sid, config={"clientId": "b"})
    assert api.fetch(sid).json()["config"] == {"clientId": "b"}


def test_delete_ignores_its_body_and_answers_the_id(api: Api) -> None:
    other = api.make()
    assert api.post(other, "delete", {"force": True}).json() == {"id": other}  # no body schema (A10)
    sid = api.make(alias="gone", value="v")
    r = api.post("@gone", "delete")
    assert r.status_code == 200 and r.json() == {"id": sid}
    error(api.fetch(sid), 404, "NOT_FOUND")
    error(api.post(sid, "delete"), 404, "NOT_FOUND")


# --- personal secrets -------------------------------------------------------------------------


def test_personal_secret_with_a_value_is_a_conflict_on_create_and_update(api: Api) -> None:
    message = "Personal secrets cannot have a value"
    error(api.create(kind="personal", value="v"), 409, "CONFLICT", message)
    pid = api.make(kind="personal", type="oauth", value="")  # empty counts as no value
    assert api.fetch(pid).json()["kind"] == "personal"
    sid = api.make(value="shared-v")
    error(api.update(sid, kind="personal", value="v2"), 409, "CONFLICT", message)
    # A value sent to a stored personal secret is dropped, as the cloud forces it to null.
    assert api.update(pid, value="ignored").json() == {"id": pid}
    error(api.post(pid, "revoke"), 409, "CONFLICT")
    error(api.post(pid, "verify"), 409, "CONFLICT")
    error(api.post(pid, "authenticate"), 409, "CONFLICT")


# --- errors -----------------------------------------------------------------------------------


def test_missing_or_wrong_token_is_401(server: str) -> None:
    url = f"{server}/api/v1/secret/list"
    error(httpx.get(url), 401, "NOT_AUTHENTICATED", "Not authenticated")
    error(httpx.get(url, headers={"authorization": "Bearer wrong"}), 401, "NOT_AUTHENTICATED")
    error(httpx.get(url, headers={"authorization": "Bearer"}), 401, "NOT_AUTHENTICATED")
    error(httpx.get(url, headers={"authorization": TOKEN}), 401, "NOT_AUTHENTICATED")
    # The cloud reads the second word whatever the scheme; the stand-in takes only Bearer (docs/TESTING.md).
    error(httpx.get(url, headers={"authorization": f"Token {TOKEN}"}), 401, "NOT_AUTHENTICATED")
    error(httpx.get(url, headers={"authorization": f"Basic {TOKEN}"}), 401, "NOT_AUTHENTICATED")
    assert httpx.get(url, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


def test_run_as_headers_are_401_offline(http: httpx.Client) -> None:
    for header in ("x-runas-user-id", "x-runas-userid", "x-runas-child-user-email"):
        error(http.get("/api/v1/secret/list", headers={header: "child"}), 401, "NOT_AUTHENTICATED")


def test_unknown_routes_are_404_and_wrong_methods_405(http: httpx.Client, api: Api) -> None:
    error(http.get("/api/v1/secret/nope"), 404, "NOT_FOUND")
    error(http.get("/api/v1/bot/list"), 404, "NOT_FOUND")
    error(http.get("/api/v1/secret/a/b/fetch"), 404, "NOT_FOUND")
    r = http.post("/api/v1/secret/list", json={})
    error(r, 405, "METHOD_NOT_ALLOWED")
    assert "allow" not in r.headers  # the cloud's 405 names no methods
    sid = api.make()
    r = http.get(api.url(sid, "delete"))
    error(r, 405, "METHOD_NOT_ALLOWED")
    assert "allow" not in r.headers
    error(http.put(api.url(sid, "update"), json={}), 405, "METHOD_NOT_ALLOWED")


def test_bad_bodies_are_400_with_messages(http: httpx.Client, api: Api) -> None:
    # The first problem only (Joi's abortEarly), known keys in the schema's order before unknown ones.
    error(api.create(colour="red", shade="dark"), 400, "BAD_REQUEST", '"colour" is not allowed')
    error(api.create(type="password", kind="team"), 400, "BAD_REQUEST", '"kind" must be one of [shared, personal]')
    error(api.create(shade="dark", alias="UPPER"), 400, "BAD_REQUEST")
    raw = http.post("/api/v1/secret/create", content=b"{not json", headers={"content-type": "application/json"})
    plain(raw, 400, "Invalid JSON")
    error(http.post("/api/v1/secret/create", json=[1, 2]), 400, "BAD_REQUEST")
    sid = api.make()
    error(api.update(sid, value=5), 400, "BAD_REQUEST")


def test_duplicate_alias_is_a_conflict(api: Api) -> None:
    api.make(alias="dup-alias")
    error(api.create(alias="dup-alias"), 409, "CONFLICT")


def test_oversized_body_is_413(http: httpx.Client) -> None:
    big = json.dumps({"value": "x" * (5 << 20)})
    r = http.post("/api/v1/secret/create", content=big, headers={"content-type": "application/json"})
    plain(r, 413, "Body exceeded 1mb limit")


def test_foreign_host_header_is_refused(server: str) -> None:
    # A page on another name that rebinds to 127.0.0.1 must not drive the vault.
    r = httpx.get(f"{server}/api/v1/secret/list", headers={"authorization": f"Bearer {TOKEN}", "host": "evil.test"})
    error(r, 403, "NOT_AUTHORIZED")
    assert r.headers["x-failure-code"] == "NOT_AUTHORIZED"


# --- list -------------------------------------------------------------------------------------


def test_list_paging_cursor_order_and_take_clamp() -> None:
    proc, base, _ = start_server("--ephemeral")  # any token accepted here
    try:
        with httpx.Client(base_url=base, headers={"authorization": "Bearer anything"}, timeout=10) as http:
            api = Api(http)
            ids = [
                api.make(name=f"s{i:03}", meta={"n": str(i % 3), "flag": i % 2 == 0, "deep": {"k": str(i)}})
                for i in range(130)
            ]
            # The cloud sorts by createdAt, then id: ties within one millisecond go by id.
            asc_all = api.list(order="asc").json()["items"]
            asc_all += api.list(order="asc", cursor=asc_all[-1]["id"]).json()["items"]
            keys = [(i["createdAt"], i["id"]) for i in asc_all]
            assert keys == sorted(keys) and {i["id"] for i in asc_all} == set(ids)
            ids = [i["id"] for i in asc_all]
            first = api.list().json()
            assert len(first["items"]) == 100  # take defaults to 100
            assert [i["id"] for i in first["items"]] == ids[::-1][:100]  # desc by default
            assert first["cursor"] == first["items"][-1]["id"]
            second = api.list(cursor=first["cursor"]).json()
            assert [i["id"] for i in second["items"]] == ids[::-1][100:]
            assert api.list(cursor=second["cursor"]).json() == {"items": []}  # empty page: no cursor key
            asc = api.list(order="asc", take=5).json()
            assert [i["id"] for i in asc["items"]] == ids[:5]
            assert [i["id"] for i in api.list(order="sideways", take=2).json()["items"]] == ids[::-1][:2]
            for take, expect in (("0", 100), ("-5", 1), ("500", 100), ("abc", 100), ("7", 7)):
                assert len(api.list(take=take).json()["items"]) == expect, take
            assert api.list(cursor="nosuchcursor").json() == {"items": []}
            # meta filters: meta.KEY and meta[KEY], booleans, nested paths, AND-combined.
            by_dot = api.list(**{"meta.n": "1", "take": "100"}).json()["items"]
            assert {i["name"] for i in by_dot} == {f"s{i:03}" for i in range(130) if i % 3 == 1}
            by_bracket = http.get("/api/v1/secret/list", params={"meta[n]": "1"}).json()["items"]
            assert by_bracket == by_dot
            both = api.list(**{"meta.n": "0", "meta.flag": "true"}).json()["items"]
            assert {i["name"] for i in both} == {f"s{i:03}" for i in range(130) if i % 3 == 0 and i % 2 == 0}
            nested = api.list(**{"meta.deep.k": "42"}).json()["items"]
            assert [i["name"] for i in nested] == ["s042"]

            # JSONL: every item, paged internally, one {"type":"item"} object per line.
            stream = http.get("/api/v1/secret/list", headers={"accept": "application/jsonl"})
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("application/jsonl")
            lines = [json.loads(line) for line in stream.text.splitlines() if line]
            assert [x["type"] for x in lines] == ["item"] * 130
            assert [x["data"]["id"] for x in lines] == ids[::-1]
            assert set(lines[0]["data"]) == ITEM_KEYS
            few = http.get("/api/v1/secret/list", params={"take": "5"}, headers={"accept": "application/jsonl"})
            assert len(few.text.splitlines()) == 5
            # take above a page: whole pages until the count reaches take (the cloud overshoots too).
            over = http.get("/api/v1/secret/list", params={"take": "101"}, headers={"accept": "application/jsonl"})
            assert len(over.text.splitlines()) == 130
            asc_stream = http.get(
                "/api/v1/secret/list", params={"order": "asc", "meta.n": "2"}, headers={"accept": "application/jsonl"}
            )
            # In the list's order (ties in one millisecond go by id), not necessarily creation order.
            assert [json.loads(x)["data"]["name"] for x in asc_stream.text.splitlines()] == [
                i["name"] for i in asc_all if i["meta"]["n"] == "2"
            ]
    finally:
        stop_server(proc)


# --- verify / revoke / authenticate / mint / proxy -------------------------------------------


def test_verify_revoke_and_authenticate(api: Api) -> None:
    sid = api.make(type="bearer", value="tok-rv")
    assert api.post(sid, "verify").json() == {"id": sid, "status": "authenticated"}
    assert api.post(sid, "revoke").json() == {"id": sid}
    error(api.post(sid, "revoke"), 404, "NOT_FOUND")  # nothing left to revoke
    item = api.fetch(sid).json()
    assert item["type"] == "bearer"  # the row and its config remain
    v = api.post(sid, "verify").json()
    assert v["status"] == "unauthenticated" and v["action"]["type"] == "authenticate"
    assert f"/secrets/{sid}/manager/authenticate" in v["action"]["url"]
    a = api.post(sid, "authenticate").json()
    assert set(a) == {"id", "url"} and a["id"] == sid
    assert api.post(sid, "verify", {"x": 1}).status_code == 200  # no body schema: the body is ignored (A10)


def test_reference_verify_follows_the_target(api: Api) -> None:
    target = api.make(alias="ref-target", type="bearer", value="t")
    ref = api.make(type="reference", config={"reference": "@ref-target"})
    assert api.post(ref, "verify").json()["status"] == "authenticated"
    api.post(target, "revoke")
    assert api.post(ref, "verify").json()["status"] == "unauthenticated"


def mint_error(r: httpx.Response, error_word: str) -> dict[str, Any]:
    assert r.status_code == 409, r.text
    body = r.json()
    assert "code" not in body and body["error"] == error_word and body["message"]
    return dict(body)


def test_mint_refuses_non_mintable_types_with_the_error_shape(api: Api) -> None:
    for kind in ("plain", "basic", "bearer"):
        sid = api.make(type=kind, value="user:pw")
        mint_error(api.post(sid, "mint"), "not_mintable")
    error(api.post("zzzzzzzzzzzzzzzzzzzzzzzz", "mint"), 404, "NOT_FOUND")


def test_mint_oauth_uses_the_stored_access_token(api: Api) -> None:
    unauth = api.make(type="oauth", config={"clientId": "c"})
    body = mint_error(api.post(unauth, "mint"), "authorization_required")
    assert "/manager/authenticate" in body["url"]
    far = 4_102_444_800_000  # 2100-01-01 in ms
    sid = api.make(type="oauth", value=json.dumps({"accessToken": "at-1", "expiresAt": far}))
    assert api.post(sid, "mint").json() == {"token": "at-1", "expiresAt": far}
    bare = api.make(type="oauth", value="at-bare")  # not token state: minting it would return the value
    mint_error(api.post(bare, "mint"), "authorization_required")
    old = api.make(type="oauth", value=json.dumps({"access_token": "at-old", "expires_at": 1000}))
    mint_error(api.post(old, "mint"), "authorization_required")


def test_mint_jwt_signs_locally(api: Api) -> None:
    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    sid = api.make(type="jwt", value=pem, config={"claims": {"iss": "agent", "sub": "bot-1"}, "expiresInSeconds": 120})
    r = api.post(sid, "mint")
    assert r.status_code == 200 and set(r.json()) == {"token", "expiresAt"}
    token, expires = r.json()["token"], r.json()["expiresAt"]
    claims = jwt.decode(token, key.public_key(), algorithms=["RS256"])
    assert claims["iss"] == "agent" and claims["sub"] == "bot-1"
    # expiresAt is the mint time in ms plus the lifetime, as the platform computes it (not exp * 1000).
    assert claims["exp"] - claims["iat"] == 120 and 0 <= expires - claims["iat"] * 1000 - 120_000 < 1000
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert "PRIVATE KEY" not in r.text
    default = api.make(type="jwt", value=pem)
    c = jwt.decode(api.post(default, "mint").json()["token"], key.public_key(), algorithms=["RS256"])
    assert c["exp"] - c["iat"] == 600
    # jose's import error is rethrown by the platform's mint: a server error, not a refusal.
    error(api.post(api.make(type="jwt", value="not a key"), "mint"), 500, "GENERIC_ERROR")
    mint_error(api.post(api.make(type="jwt"), "mint"), "authorization_required")
    ref = api.make(type="reference", config={"reference": sid})
    assert jwt.decode(api.post(ref, "mint").json()["token"], key.public_key(), algorithms=["RS256"])["sub"] == "bot-1"


def test_proxy_is_not_available_offline(api: Api) -> None:
    sid = api.make(type="bearer", value="t")
    error(api.post(sid, "proxy", {"url": "https://example.com"}), 501, "NOT_IMPLEMENTED")


# --- values never leave -------------------------------------------------------------------------


def test_no_route_ever_returns_a_value(http: httpx.Client, api: Api) -> None:
    marker = "VALUE-MARKER-7f3a"
    sid = api.make(name="leak-check", type="basic", value=f"user:{marker}", config={"clientSecret": marker})
    answers = [
        api.fetch(sid),
        api.list(take=100),
        http.get("/api/v1/secret/list", headers={"accept": "application/jsonl"}),
        api.update(sid, description="x"),
        api.post(sid, "verify"),
        api.post(sid, "mint"),
        api.post(sid, "authenticate"),
        api.post(sid, "revoke"),
        api.post(sid, "delete"),
    ]
    for r in answers:
        assert marker not in r.text, r.request.url


# --- request framing and strict JSON -------------------------------------------------------------


#: How long a raw exchange waits for an answer, and then for the server to close. Generous, so a
#: loaded machine cannot fail it, yet well under the server's 30 s socket timeout, which closes
#: every idle connection in the end: a close seen within this is the server's own decision.
PROMPT = 15.0


def raw_exchange(server: str, request: bytes, *, read_timeout: float = PROMPT) -> tuple[bytes, bool]:
    """Send raw bytes; return what came back and whether the server then closed the connection."""
    import socket

    host, port = server.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(request)
        data = b""
        closed = False
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
            if not closed:
                closed = sock.recv(1) == b""
        except TimeoutError:
            pass
    return data, closed


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _status_and_body(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_bodies_with_nan_or_infinity_are_400(api: Api, constant: str) -> None:
    # mint ignores its body's fields, so only the JSON reader can refuse this one.
    sid = api.make(name="n", type="plain", value="v")
    r = api.http.post(
        api.url(sid, "mint"), content=f'{{"x": {constant}}}', headers={"content-type": "application/json"}
    )
    plain(r, 400, "Invalid JSON")
    r = api.create(name="n2", meta={"x": 1})
    assert r.status_code == 200  # an ordinary body is still fine


def test_json_nested_past_the_stack_is_400_not_500(api: Api) -> None:
    deep = '{"name": "n", "meta": {"x": ' + "[" * 200_000 + "]" * 200_000 + "}}"
    r = api.http.post("/api/v1/secret/create", content=deep, headers={"content-type": "application/json"})
    plain(r, 400, "Invalid JSON")


def test_a_chunked_body_is_read_like_any_other(server: str) -> None:
    host = server.removeprefix("http://")
    body = b'{"name":"chunked","value":"v"}'
    request = (
        f"POST /api/v1/secret/create HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    data, _closed = raw_exchange(server, request)
    status, answer = _status_and_body(data)
    assert status == 200 and set(answer) == {"id"}


def test_a_refused_request_is_answered_without_reading_its_body(server: str) -> None:
    # The announced body is over Next's 1 MiB and never comes: the 413 (which comes before the
    # token, as on the cloud) must not wait for it, and the connection closes.
    host = server.removeprefix("http://")
    request = (
        f"POST /api/v1/secret/create HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer wrong\r\n"
        "Content-Type: application/json\r\nContent-Length: 4000000\r\n\r\n"
    ).encode()
    data, closed = raw_exchange(server, request)
    assert data, "no answer before the body arrived"
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and body == b"Body exceeded 1mb limit" and closed
