"""The use-time routes (verify, authenticate, revoke, mint, proxy), the contact-scoped routes and
the platform catalogue, against the platform's source (docs/FIDELITY.md, sections I and J).

Every test drives :class:`vault._api.SecretApi`, which both the HTTP stand-in and ``vault.aio``
answer with: an error's ``status`` and ``to_dict()`` are the HTTP answer. The row of
docs/FIDELITY.md each test pins is named in its docstring.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import vault
from vault._api import GenericError, ListQuery, SecretApi
from vault.errors import MintRefusedError, VaultError

NO_VALUE = "The secret has no value; authenticate it first."
NO_CONTEXT = (
    "Cannot obtain valid authentication context: the current conversation session is mostly likely not trusted"
)
UNKNOWN = "zzzzzzzzzzzzzzzzzzzzzzzz"


@pytest.fixture
def api(v: vault.Vault) -> SecretApi:
    return SecretApi(v)


def make(api: SecretApi, **body: Any) -> str:
    return str(api.create(body)["id"])


def refused(call: Callable[[], object]) -> tuple[int, dict[str, str]]:
    """The HTTP answer of a refused call: status and body."""
    with pytest.raises(VaultError) as info:
        call()
    return info.value.status, info.value.to_dict()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- keys ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    pytest.importorskip("jwt")
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: Any, fmt: str = "pkcs8") -> str:
    from cryptography.hazmat.primitives import serialization

    form = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
    }[fmt]
    return str(key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode())


# --- I3: a usable value is decided per type -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "usable"),
    [
        ("plain", "   ", True),  # plain is used exactly as stored
        ("bearer", "   ", False),  # trimmed first
        ("bearer", " tok ", True),
        ("basic", "  ", False),
        ("basic", '{"username": ""}', False),  # structured, but no credentials
        ("basic", '{"other": "field"}', False),
        ("basic", "a: b\nc: d", False),
        ("basic", "USERNAME: x\nPASSWORD: y", False),  # keys recognised case-insensitively, read case-sensitively
        ("basic", "no-colon", True),  # not structured: the raw value is the pair
        ("basic", "[1]", True),
        ("basic", "user: alice", True),
        ("basic", "alice:s3cr:et", True),
    ],
)
def test_verify_decides_a_usable_value_per_type(api: SecretApi, kind: str, value: str, usable: bool) -> None:
    """I3: verify is authenticated only for a value the cloud can use as that type."""
    sid = make(api, type=kind, value=value)
    answer = api.verify(sid)
    assert answer["status"] == ("authenticated" if usable else "unauthenticated")
    assert ("action" in answer) is not usable


def test_mint_and_revoke_see_an_unusable_value_as_none(api: SecretApi) -> None:
    """I3 and I12: a blank bearer or a structured basic without credentials is no value at all."""
    for kind, value in (("bearer", "   "), ("basic", '{"username": ""}')):
        sid = make(api, type=kind, value=value)
        with pytest.raises(MintRefusedError) as info:
            api.mint(sid)
        body = info.value.to_dict()
        assert info.value.status == 409 and body["error"] == "authorization_required"
        assert body["message"] == NO_VALUE and "/manager/authenticate" in body["url"]
        assert refused(lambda sid=sid: api.revoke(sid)) == (404, {"message": "Not found", "code": "NOT_FOUND"})


def test_verify_of_a_jwt_whose_value_does_not_sign_is_a_conflict(api: SecretApi) -> None:
    """I3: the jwt branch signs; a value that is not a key fails there (409 with the signing error)."""
    sid = make(api, type="jwt", value="not a key at all")
    status, body = refused(lambda: api.verify(sid))
    assert status == 409 and body["code"] == "CONFLICT"
    assert "not a key" not in body["message"]


# --- I4: the authorize URL ----------------------------------------------------------------------------


def test_the_authorize_url_has_the_clouds_state_query_and_fragment(api: SecretApi) -> None:
    """I4: <frontend>/secrets/<id>/manager/authenticate?state=…&cbk=1&auth=1&unfurl=0#target=_popup&unfurl=0."""
    sid = make(api, type="oauth")
    for url in (api.verify(sid)["action"]["url"], api.authenticate(sid)["url"]):
        parts = urlsplit(url)
        assert parts.path == f"/secrets/{sid}/manager/authenticate"
        query = parse_qsl(parts.query)
        assert [k for k, _ in query] == ["state", "cbk", "auth", "unfurl"]
        assert dict(query)["state"] and dict(query)["cbk"] == "1" and dict(query)["auth"] == "1"
        assert dict(query)["unfurl"] == "0"
        assert parts.fragment == "target=_popup&unfurl=0"


# --- I5, I8, I9: personal secrets and the default messages ---------------------------------------------


def test_personal_secrets_get_the_clouds_messages(api: SecretApi) -> None:
    """I5, I8, I9."""
    pid = make(api, kind="personal", type="oauth")
    assert refused(lambda: api.verify(pid)) == (
        409,
        {"message": "Cannot verify secret for this secret configuration", "code": "CONFLICT"},
    )
    assert refused(lambda: api.authenticate(pid)) == (
        409,
        {"message": "Cannot authenticate secret for this secret configuration", "code": "CONFLICT"},
    )
    assert refused(lambda: api.revoke(pid)) == (409, {"message": "Conflict", "code": "CONFLICT"})


def test_authenticate_answers_any_shared_secret(api: SecretApi) -> None:
    """I8: a shared secret of any type, with or without a value."""
    for kind in ("plain", "jwt", "reference", "template"):
        sid = make(api, type=kind)
        answer = api.authenticate(sid)
        assert set(answer) == {"id", "url"} and answer["id"] == sid


def test_revoke_without_a_value_is_the_default_not_found(api: SecretApi) -> None:
    """I9."""
    sid = make(api, type="bearer")
    assert refused(lambda: api.revoke(sid)) == (404, {"message": "Not found", "code": "NOT_FOUND"})


@pytest.mark.parametrize("route", ["verify", "authenticate", "revoke", "mint", "proxy"])
def test_an_unknown_secret_is_the_default_not_found(api: SecretApi, route: str) -> None:
    body = {"url": "https://example.com/"} if route == "proxy" else {}
    handler = getattr(api, route)
    assert refused(lambda: handler(UNKNOWN, body)) == (404, {"message": "Not found", "code": "NOT_FOUND"})


# --- I6, I16, I18, I19: references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"reference": "@missing"},
        None,
        {},
        {"reference": ""},
        {"reference": None, "secretId": "@target"},  # a present null does not fall through to secretId
    ],
)
def test_a_reference_without_a_target(api: SecretApi, config: dict[str, Any] | None) -> None:
    """I6: verify 409 "Cannot find secret reference"; I16: mint 500 GENERIC_ERROR with that message."""
    make(api, alias="target", type="bearer", value="tok")
    sid = make(api, type="reference", config=config)
    assert refused(lambda: api.verify(sid)) == (409, {"message": "Cannot find secret reference", "code": "CONFLICT"})
    assert refused(lambda: api.mint(sid)) == (
        500,
        {"message": "Cannot find secret reference", "code": "GENERIC_ERROR"},
    )
    assert refused(lambda: api.revoke(sid))[0] == 500


def test_a_reference_target_is_looked_up_like_a_path_identifier(api: SecretApi) -> None:
    """I6: the target's identifier is trimmed, and so are the alias after @ and the name in ()."""
    make(api, alias="tgt", name="The Target", type="bearer", value="tok")
    for ident in (" @tgt ", "@ tgt", "( The Target )"):
        sid = make(api, type="reference", config={"reference": ident})
        assert api.verify(sid)["status"] == "authenticated", ident
    for ident, message in (("@", "Alias is required"), ("()", "Name is required"), ("   ", "Identifier is required")):
        sid = make(api, type="reference", config={"reference": ident})
        assert refused(lambda sid=sid: api.verify(sid)) == (409, {"message": message, "code": "CONFLICT"})


def test_a_reference_to_a_reference_is_not_followed(api: SecretApi) -> None:
    """I18: the target's `reference` key is dropped from the effective config, so the next level
    has no target: the platform answers "Cannot find secret reference"."""
    make(api, alias="leaf", type="bearer", value="tok")
    make(api, alias="middle", type="reference", config={"reference": "@leaf"})
    outer = make(api, type="reference", config={"reference": "@middle"})
    assert refused(lambda: api.verify(outer)) == (
        409,
        {"message": "Cannot find secret reference", "code": "CONFLICT"},
    )


def test_parameters_can_name_the_next_target_and_a_cycle_is_bounded(api: SecretApi) -> None:
    """I18, I19: `parameters` are merged last, so they can carry a `reference`; a loop built that
    way would recurse until the platform's time limit; the stand-in stops at a fixed depth."""
    make(api, alias="leaf", type="bearer", value="tok")
    make(api, alias="middle", type="reference", config={"reference": "@leaf"})
    outer = make(api, type="reference", config={"reference": "@middle", "parameters": {"reference": "@leaf"}})
    assert api.verify(outer)["status"] == "authenticated"
    loop = make(api, alias="loop", type="reference", config={"reference": "@loop", "params": {"reference": "@loop"}})
    started = time.monotonic()
    status, body = refused(lambda: api.verify(loop))
    assert status == 409 and body["code"] == "CONFLICT"
    assert refused(lambda: api.mint(loop))[0] == 500
    assert time.monotonic() - started < 5


def test_a_reference_mints_as_its_targets_base_type(api: SecretApi) -> None:
    """I13 through a reference: the refusal names the target's type."""
    make(api, alias="bt", type="bearer", value="tok")
    sid = make(api, type="reference", config={"reference": "@bt"})
    with pytest.raises(MintRefusedError) as info:
        api.mint(sid)
    assert info.value.to_dict() == {
        "error": "not_mintable",
        "message": "Secrets of type 'bearer' cannot be minted for a token; use the egress proxy instead.",
    }


def test_reference_parameters_apply_last_and_overrides_are_narrow(api: SecretApi, rsa_key: Any) -> None:
    """I19: target config, then the reference's allowed keys, then `parameters` (or `params`)."""
    import jwt

    make(api, alias="signer", type="jwt", value=pem(rsa_key), config={"expiresInSeconds": 600})
    for key in ("parameters", "params"):
        ref = make(
            api,
            type="reference",
            config={"reference": "@signer", "expiresInSeconds": 5, key: {"expiresInSeconds": 60, "claims": {"a": 1}}},
        )
        token = api.mint(ref)["token"]
        claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])
        assert claims["exp"] - claims["iat"] == 60 and claims["a"] == 1, key


def test_the_local_resolver_merges_a_reference_as_the_platform_does(v: vault.Vault) -> None:
    """I19 for ``Secret.credentials(v)``: the same merge; the reference keeps its own kind."""
    from vault._credentials import resolve

    v.secret.create(alias="t", type="basic", value="u:p", config={"reference": "@x", "id": "y", "schema": "S"})
    ref = v.secret.fetch(
        v.secret.create(
            type="reference", config={"reference": "@t", "username": "over", "schema": "no", "params": "ab"}
        ).id
    )
    effective = resolve(v, ref)
    assert effective.type == "basic" and effective.kind == "shared" and effective.id == ref.id
    assert effective.config == {"schema": "S", "username": "over", "0": "a", "1": "b"}
    assert ref.credentials(v) == vault._credentials.BasicCredentials("u", "p")


def test_revoke_decides_on_the_resolved_value(api: SecretApi) -> None:
    """I10: a reference without its own value whose target has one: 200, nothing changes."""
    target = make(api, alias="rv-target", type="bearer", value="tok")
    ref = make(api, type="reference", config={"reference": "@rv-target"})
    assert api.revoke(ref) == {"id": ref}
    assert api.verify(target)["status"] == "authenticated"
    assert api.verify(ref)["status"] == "authenticated"


# --- I7, I20: templates -----------------------------------------------------------------------------------


def test_a_template_is_an_unknown_catalogue_entry_offline(api: SecretApi) -> None:
    """I7: verify 409 "Cannot find secret template"; I20: mint 500 with that message."""
    sid = make(api, type="template", value="some-token", config={"template": "google/oauth"})
    assert refused(lambda: api.verify(sid)) == (409, {"message": "Cannot find secret template", "code": "CONFLICT"})
    assert refused(lambda: api.mint(sid)) == (500, {"message": "Cannot find secret template", "code": "GENERIC_ERROR"})
    personal = make(api, type="template", kind="personal", config={"template": "google/oauth"})
    with pytest.raises(MintRefusedError) as info:  # the context check comes before the type
        api.mint(personal)
    assert info.value.to_dict() == {"error": "authorization_required", "message": NO_CONTEXT}


# --- I12, I13, I14: mint refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "basic", "bearer", "oauth", "jwt"])
def test_mint_without_a_value_asks_for_authorization(api: SecretApi, kind: str) -> None:
    """I12: the value is resolved before the type is checked."""
    sid = make(api, type=kind)
    with pytest.raises(MintRefusedError) as info:
        api.mint(sid)
    body = info.value.to_dict()
    assert set(body) == {"error", "message", "url"} and body["error"] == "authorization_required"
    assert body["message"] == NO_VALUE and f"/secrets/{sid}/manager/authenticate" in body["url"]


@pytest.mark.parametrize("kind", ["plain", "basic", "bearer"])
def test_mint_of_a_static_value_names_its_type(api: SecretApi, kind: str) -> None:
    """I13."""
    sid = make(api, type=kind, value="user:pw")
    with pytest.raises(MintRefusedError) as info:
        api.mint(sid)
    assert info.value.status == 409
    assert info.value.to_dict() == {
        "error": "not_mintable",
        "message": f"Secrets of type '{kind}' cannot be minted for a token; use the egress proxy instead.",
    }


def test_mint_of_a_personal_secret(api: SecretApi) -> None:
    """I14: the platform's UserAuthError message, no url."""
    sid = make(api, kind="personal", type="oauth")
    with pytest.raises(MintRefusedError) as info:
        api.mint(sid)
    assert info.value.to_dict() == {"error": "authorization_required", "message": NO_CONTEXT}


def test_mint_of_oauth_token_state_trims_the_token(api: SecretApi) -> None:
    """I11/I21: the platform sends `Bearer <token trimmed>` and mint splits the token back out."""
    sid = make(api, type="oauth", value=json.dumps({"accessToken": "  at-1  "}))
    assert api.mint(sid) == {"token": "at-1", "expiresAt": None}


# --- I15: jwt --------------------------------------------------------------------------------------------


def test_the_500_error_is_generic_error() -> None:
    """A15 as the use-time routes need it: `GENERIC_ERROR`, status 500, the `{message, code}` body."""
    error = GenericError("Cannot find secret reference")
    assert isinstance(error, VaultError) and error.status == 500 and error.code == "GENERIC_ERROR"
    assert error.to_dict() == {"message": "Cannot find secret reference", "code": "GENERIC_ERROR"}


@pytest.mark.parametrize(
    ("value", "config"),
    [
        ("not a key", {}),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", {}),
        (None, {"algorithm": "ES256"}),  # an RSA key cannot sign ES256
        (None, {"algorithm": "HS256"}),  # the platform imports the value as a PKCS#8 private key
        (None, {"algorithm": "none"}),
        (None, {"algorithm": ""}),
        (None, {"expiresInSeconds": -5}),
        (None, {"expiresInSeconds": 1e21}),
    ],
)
def test_jwt_signing_failures_are_server_errors(
    api: SecretApi, rsa_key: Any, value: str | None, config: dict[str, Any]
) -> None:
    """I15: jose's errors are rethrown by mint: 500 GENERIC_ERROR; verify answers 409 with the message."""
    sid = make(api, type="jwt", value=pem(rsa_key) if value is None else value, config=config)
    status, body = refused(lambda: api.mint(sid))
    assert status == 500 and body["code"] == "GENERIC_ERROR" and body["message"]
    assert "PRIVATE KEY" not in body["message"] and "not a key" not in body["message"]
    assert refused(lambda: api.verify(sid))[0] == 409


def test_jwt_settings_are_read_as_the_platform_reads_them(api: SecretApi, rsa_key: Any) -> None:
    """I15: a non-number expiresInSeconds means 600; there is no upper bound; non-object claims
    are ignored; the header is just `alg`; expiresAt is the mint time in ms plus the lifetime."""
    import jwt

    for setting, lifetime in (("60", 600), (None, 600), (40_000_000, 40_000_000), (90.4, 90)):
        sid = make(api, type="jwt", value=pem(rsa_key), config={"expiresInSeconds": setting, "claims": [1]})
        before = time.time_ns() // 1_000_000
        minted = api.mint(sid)
        after = time.time_ns() // 1_000_000
        claims = jwt.decode(minted["token"], rsa_key.public_key(), algorithms=["RS256"])
        assert claims["exp"] - claims["iat"] == lifetime, setting
        assert set(claims) == {"iat", "exp"}
        assert jwt.get_unverified_header(minted["token"]) == {"alg": "RS256"}
        seconds = 600 if not isinstance(setting, (int, float)) else setting
        assert before + seconds * 1000 <= minted["expiresAt"] <= after + seconds * 1000


def test_jwt_accepts_a_pkcs1_rsa_key_and_other_signing_algorithms(api: SecretApi, rsa_key: Any) -> None:
    """I15: the platform converts `RSA PRIVATE KEY` to PKCS#8; RS/PS/ES/EdDSA sign."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    sid = make(api, type="jwt", value=pem(rsa_key, "pkcs1"), config={"algorithm": "PS256", "schema": " Token "})
    token = api.mint(sid)["token"]
    assert jwt.decode(token, rsa_key.public_key(), algorithms=["PS256"])
    ec_key = ec.generate_private_key(ec.SECP256R1())
    sid = make(api, type="jwt", value=pem(ec_key), config={"algorithm": "ES256"})
    assert jwt.decode(api.mint(sid)["token"], ec_key.public_key(), algorithms=["ES256"])
    sec1 = make(api, type="jwt", value=pem(ec_key, "pkcs1"), config={"algorithm": "ES256"})
    assert refused(lambda: api.mint(sec1))[0] == 500  # `EC PRIVATE KEY` is not converted by the platform
    ed_key = ed25519.Ed25519PrivateKey.generate()
    sid = make(api, type="jwt", value=pem(ed_key), config={"algorithm": "EdDSA"})
    assert jwt.decode(api.mint(sid)["token"], ed_key.public_key(), algorithms=["EdDSA"])


# --- I22: proxy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, '"url" is required'),
        (None, '"url" is required'),
        ([], '"value" must be of type object'),
        ({"url": 5}, '"url" must be a string'),
        ({"url": ""}, '"url" is not allowed to be empty'),
        ({"url": "ftp://example.com/"}, '"url" must be a valid uri with a scheme matching the http|https pattern'),
        ({"url": "https://exa mple.com/"}, '"url" must be a valid uri with a scheme matching the http|https pattern'),
        ({"url": "example.com"}, '"url" must be a valid uri with a scheme matching the http|https pattern'),
        (
            {"url": "https://example.com/", "method": "get"},
            '"method" must be one of [GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS]',
        ),
        ({"method": "x", "url": 5}, '"method" must be one of [GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS]'),
        ({"url": "https://example.com/", "headers": []}, '"headers" must be of type object'),
        ({"url": "https://example.com/", "headers": None}, '"headers" must be of type object'),
        ({"url": "https://example.com/", "body": 5}, '"body" must be a string'),
        ({"x": 1, "url": "https://example.com/"}, '"x" is not allowed'),
        ({"x": 1}, '"url" is required'),
    ],
)
def test_proxy_validates_its_body_before_the_lookup(api: SecretApi, body: Any, message: str) -> None:
    """I22: the body schema (Joi, first error in schema order, unknown keys last) runs before the lookup."""
    assert refused(lambda: api.proxy(UNKNOWN, body)) == (400, {"message": message, "code": "BAD_REQUEST"})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "https://localhost:8443/x",
        "http://LOCALHOST/",
        "http://app.localhost/",
        "http://db.internal/",
        "http://printer.local/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",  # the URL parser reads these as 127.0.0.1
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://999.1.1.1/",  # not an IPv4 address and not a name: the URL does not parse
        "http://user:pw@127.0.0.1:80/",
        "http://%6cocalhost/",
    ],
)
def test_proxy_refuses_internal_destinations(api: SecretApi, url: str) -> None:
    """I22: after the lookup, the destination check: 400 {"error":"invalid_destination"}."""
    sid = make(api, type="bearer", value="tok")
    assert refused(lambda: api.proxy(sid, {"url": url})) == (
        400,
        {"error": "invalid_destination", "message": "Destination host is not allowed"},
    )


@pytest.mark.parametrize(
    "url",
    ["https://example.com/", "http://8.8.8.8/", "https://[2001:db8::1]/", "http://172.32.0.1/", "http://010.0.0.1/"],
)
def test_proxy_answers_501_only_for_an_allowed_destination(api: SecretApi, url: str) -> None:
    """I22: everything the platform checks before forwarding passed; offline there is no upstream."""
    sid = make(api, type="bearer", value="tok")
    status, body = refused(lambda: api.proxy(sid, {"url": url}))
    assert status == 501 and body["code"] == "NOT_IMPLEMENTED"


def test_proxy_resolves_the_secret_before_forwarding(api: SecretApi) -> None:
    """I22: an unauthenticated secret is 409 authorization_required (with url for a shared one)."""
    linked = "A linked secret exists but has no value configured. Please authenticate or set up the secret value."
    empty = make(api, type="bearer")
    with pytest.raises(MintRefusedError) as info:
        api.proxy(empty, {"url": "https://example.com/"})
    body = info.value.to_dict()
    assert body["error"] == "authorization_required" and body["message"] == linked
    assert f"/secrets/{empty}/manager/authenticate" in body["url"]
    # The caller's own Authorization and no placeholder: the secret is not used at all.
    status, _ = refused(lambda: api.proxy(empty, {"url": "https://example.com/", "headers": {"Authorization": "x"}}))
    assert status == 501
    # A placeholder anywhere names the secret.
    headers = {"Authorization": "x", "X-Key": "${SECRET_DEFAULT}"}
    with pytest.raises(MintRefusedError):
        api.proxy(empty, {"url": "https://example.com/", "headers": headers})
    personal = make(api, type="bearer", kind="personal")
    with pytest.raises(MintRefusedError) as info:
        api.proxy(personal, {"url": "https://example.com/"})
    assert info.value.to_dict() == {"error": "authorization_required", "message": NO_CONTEXT}
    ref = make(api, type="reference", config={"reference": "@nowhere"})
    assert refused(lambda: api.proxy(ref, {"url": "https://example.com/"})) == (
        500,
        {"message": "Cannot find secret reference", "code": "GENERIC_ERROR"},
    )


def test_proxy_placeholders_name_other_secrets_by_normalised_name(api: SecretApi) -> None:
    """I22: `${SECRET_NAME}` finds the caller's secret whose name normalises to the same text."""
    route = make(api, type="bearer", value="tok")
    make(api, name="Weather API-key", type="bearer")  # no value
    with pytest.raises(MintRefusedError):
        api.proxy(route, {"url": "https://example.com/", "headers": {"X-W": "{{SECRET_weather_api_key}}"}})
    status, _ = refused(lambda: api.proxy(route, {"url": "https://example.com/", "headers": {"X-W": "${SECRET_NOPE}"}}))
    assert status == 501  # no such secret: the placeholder is left as it is


def test_proxy_refuses_header_names_fetch_cannot_send(api: SecretApi) -> None:
    sid = make(api, type="bearer", value="tok")
    status, body = refused(lambda: api.proxy(sid, {"url": "https://example.com/", "headers": {"bad name": "x"}}))
    assert status == 500 and body["code"] == "GENERIC_ERROR"


# --- J1, J2: contact-scoped routes ---------------------------------------------------------------------------


def test_contact_routes_find_no_contact_offline(api: SecretApi) -> None:
    """J1: every contact is unknown offline: 404 Not found, after the proxy body's validation."""
    sid = make(api, type="bearer", value="tok")
    not_found = (404, {"message": "Not found", "code": "NOT_FOUND"})
    assert refused(lambda: api.contact_list("c1", ListQuery())) == not_found
    for action in ("verify", "authenticate", "revoke", "mint"):
        assert refused(lambda action=action: api.contact_use("c1", sid, action, {})) == not_found
    assert refused(lambda: api.contact_use("c1", sid, "proxy", {"url": "https://example.com/"})) == not_found
    assert refused(lambda: api.contact_use("c1", sid, "proxy", {})) == (
        400,
        {"message": '"url" is required', "code": "BAD_REQUEST"},
    )
    status, body = refused(lambda: api.contact_use("@", sid, "verify", {}))
    assert (status, body["code"]) == (500, "GENERIC_ERROR")


# --- J3, J4: the platform catalogue ------------------------------------------------------------------------


def test_the_catalogue_is_empty_offline(api: SecretApi) -> None:
    """J3: the whole catalogue in one page, which offline has no entries."""
    assert api.catalogue_list(ListQuery()) == {"items": []}
    assert api.catalogue_list(ListQuery(cursor="x", take="5")) == {"items": []}
    assert list(api.catalogue_stream(ListQuery())) == []


@pytest.mark.parametrize(
    "body",
    [None, {}, {"search": "google"}, {"search": "   "}, {"search": "x", "take": 100}, {"take": "5"}, {"take": 7.0}],
)
def test_catalogue_search_answers_no_items(api: SecretApi, body: Any) -> None:
    """J4."""
    assert api.catalogue_search(body) == {"items": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], '"value" must be of type object'),
        ({"search": 5}, '"search" must be a string'),
        ({"search": None}, '"search" must be a string'),
        ({"search": ""}, '"search" is not allowed to be empty'),
        ({"take": 0}, '"take" must be greater than or equal to 1'),
        ({"take": 101}, '"take" must be less than or equal to 100'),
        ({"take": 1.5}, '"take" must be an integer'),
        ({"take": "x"}, '"take" must be a number'),
        ({"take": True}, '"take" must be a number'),
        ({"take": None}, '"take" must be a number'),
        ({"take": 2**60}, '"take" must be a safe number'),
        ({"x": 1, "search": 5}, '"search" must be a string'),
        ({"x": 1}, '"x" is not allowed'),
    ],
)
def test_catalogue_search_validates_its_body(api: SecretApi, body: Any, message: str) -> None:
    """J4: Joi's wording, the first error in schema order, unknown keys last."""
    assert refused(lambda: api.catalogue_search(body)) == (400, {"message": message, "code": "BAD_REQUEST"})


# --- values never leave ------------------------------------------------------------------------------------


def test_no_use_time_answer_contains_a_value(api: SecretApi, rsa_key: Any) -> None:
    marker = "VALUE-MARKER-9c1e"
    cases = [
        make(api, type="basic", value=f"user:{marker}"),
        make(api, type="bearer", value=marker),
        make(api, type="jwt", value=marker),
        make(api, type="jwt", value=f"-----BEGIN PRIVATE KEY-----\n{marker}\n-----END PRIVATE KEY-----"),
        make(api, type="oauth", value=marker),
        make(api, type="template", value=marker),
        make(api, type="reference", value=marker, config={"reference": "@none"}),
    ]
    for sid in cases:
        for route, body in (("verify", {}), ("mint", {}), ("revoke", {}), ("proxy", {"url": "https://example.com/"})):
            try:
                answer: Any = getattr(api, route)(sid, body)
            except VaultError as exc:
                answer = exc.to_dict()
            assert marker not in json.dumps(answer)


# --- through the HTTP stand-in ---------------------------------------------------------------------


def test_the_new_answers_keep_their_shape_over_http(v: vault.Vault) -> None:
    """GenericError is `500 {"message","code":"GENERIC_ERROR"}` and the proxy's refusal
    `400 {"error","message"}` on the wire, through the stand-in's ASGI application."""
    import asyncio

    import httpx

    from vault._asgi import StandInApp

    app = StandInApp(v, token="sk-fid-use", loopback_only=False)
    ref = app.api.create({"type": "reference", "config": {"reference": "@missing"}})["id"]
    bearer = app.api.create({"type": "bearer", "value": "tok"})["id"]

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": "Bearer sk-fid-use"}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as client:
            return [
                await client.post(f"/v1/secret/{ref}/mint", json={}),
                await client.post(f"/v1/secret/{bearer}/proxy", json={"url": "http://169.254.169.254/"}),
                await client.post(f"/v1/secret/{bearer}/proxy", json={"url": "https://example.com/"}),
            ]

    mint, refused_destination, offline = asyncio.run(scenario())
    assert (mint.status_code, mint.json()) == (
        500,
        {"message": "Cannot find secret reference", "code": "GENERIC_ERROR"},
    )
    assert (refused_destination.status_code, refused_destination.json()) == (
        400,
        {"error": "invalid_destination", "message": "Destination host is not allowed"},
    )
    assert offline.status_code == 501 and offline.json()["code"] == "NOT_IMPLEMENTED"
