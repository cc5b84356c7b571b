"""Typed helpers on a fetched secret: credentials(), authorization_header(), references, jwt minting."""

from __future__ import annotations

import base64
import builtins
import json
from typing import Any

import pytest

import vault
from vault._credentials import BasicCredentials, MintRefusedError, MissingDependencyError, mint, parse_basic, resolve


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "value",
    [
        "alice:s3cr:et",
        '{"username": "alice", "password": "s3cr:et"}',
        '{"user": "alice", "pass": "s3cr:et"}',
        "username: alice\npassword: s3cr:et",
        "user: 'alice'\npass: \"s3cr:et\"\n",
        "user=alice\npass=s3cr:et",
        "username=alice\r\npassword=s3cr:et\r\n",
    ],
)
def test_basic_credentials_from_every_accepted_form(v: vault.Vault, value: str) -> None:
    sid = v.secret.create(type="basic", value=value).id
    s = v.secret.fetch(sid)
    creds = s.credentials()
    assert isinstance(creds, BasicCredentials)
    assert creds == BasicCredentials("alice", "s3cr:et")
    user, password = creds
    assert (user, password) == ("alice", "s3cr:et")
    assert s.authorization_header() == "Basic " + b64("alice:s3cr:et")
    assert "s3cr" not in repr(creds) and "s3cr" not in str(creds)


@pytest.mark.parametrize("value", ["", "   ", "no-colon", "{not json", '{"other": 1}', "[1]", "a: b\nc: d"])
def test_unparseable_basic_values(value: str) -> None:
    assert parse_basic(value) is None


def test_basic_errors_name_no_value(v: vault.Vault) -> None:
    sid = v.secret.create(type="basic", value="password-without-colon").id
    with pytest.raises(vault.InvalidRequestError) as bad:
        v.secret.fetch(sid).credentials()
    assert "password-without-colon" not in str(bad.value)
    empty = v.secret.create(type="basic").id
    with pytest.raises(vault.ConflictError):
        v.secret.fetch(empty).credentials()
    # Inferred: with no value, basic-shaped config keys supply the pair.
    cfg = v.secret.create(type="basic", config={"username": "bob", "password": "pw"}).id
    assert v.secret.fetch(cfg).authorization_header() == "Basic " + b64("bob:pw")


def test_bearer_and_plain(v: vault.Vault) -> None:
    b = v.secret.fetch(v.secret.create(type="bearer", value="tok-1").id)
    assert b.credentials() == "tok-1" and b.authorization_header() == "Bearer tok-1"
    t = v.secret.fetch(v.secret.create(type="bearer", value="tok-2", config={"schema": "Token"}).id)
    assert t.authorization_header() == "Token tok-2"
    p = v.secret.fetch(v.secret.create(type="plain", value="raw header value").id)
    assert p.credentials() == "raw header value" and p.authorization_header() == "raw header value"


def test_list_items_have_no_value_so_helpers_say_fetch(v: vault.Vault) -> None:
    v.secret.create(type="bearer", value="tok")
    item = v.secret.list().items[0]
    with pytest.raises(vault.ConflictError) as exc:
        item.credentials()
    assert "fetch" in str(exc.value)


def test_oauth_token_state(v: vault.Vault) -> None:
    far = 4_102_444_800_000
    s = v.secret.fetch(v.secret.create(type="oauth", value=json.dumps({"access_token": "at", "expiresAt": far})).id)
    assert s.credentials() == "at" and s.authorization_header() == "Bearer at"
    assert mint(s) == ("at", far)
    expired = v.secret.fetch(v.secret.create(type="oauth", value=json.dumps({"accessToken": "x", "expires_at": 5})).id)
    with pytest.raises(MintRefusedError) as exc:
        expired.credentials()
    assert exc.value.error == "authorization_required" and exc.value.status == 409


def test_reference_resolves_by_id_alias_and_name(v: vault.Vault) -> None:
    target = v.secret.create(name="Target Key", alias="target", type="bearer", value="tok-t", config={"schema": "Key"})
    for ident in (target.id, "@target", "(Target Key)"):
        ref = v.secret.fetch(v.secret.create(type="reference", config={"reference": ident}).id)
        assert ref.credentials(v) == "tok-t"
        assert ref.authorization_header(v) == "Key tok-t"
        effective = resolve(v, ref)
        assert effective.id == ref.id and effective.type == "bearer"
    by_secret_id = v.secret.fetch(v.secret.create(type="reference", config={"secretId": "@target"}).id)
    assert by_secret_id.credentials(v) == "tok-t"
    # The reference's own value wins; allowed config keys override the target's.
    own = v.secret.fetch(v.secret.create(type="reference", value="tok-own", config={"reference": "@target"}).id)
    assert own.credentials(v) == "tok-own"
    basic = v.secret.create(alias="basic-t", type="basic", value="u:p")
    over = v.secret.fetch(v.secret.create(type="reference", config={"reference": "@basic-t", "schema": "X"}).id)
    assert over.authorization_header(v) == "Basic " + b64("u:p")
    assert basic.id


def test_reference_errors(v: vault.Vault) -> None:
    ref = v.secret.fetch(v.secret.create(type="reference", config={"reference": "@missing"}).id)
    with pytest.raises(vault.InvalidRequestError):
        ref.credentials()  # needs the vault
    with pytest.raises(vault.NotFoundError):
        ref.credentials(v)
    with pytest.raises(vault.InvalidRequestError):
        v.secret.fetch(v.secret.create(type="reference").id).credentials(v)
    inner = v.secret.create(alias="inner", type="reference", config={"reference": "@missing"})
    outer = v.secret.fetch(v.secret.create(type="reference", config={"reference": "@inner"}).id)
    with pytest.raises(vault.InvalidRequestError):
        outer.credentials(v)  # no chains, hence no cycles
    assert inner.id
    template = v.secret.fetch(v.secret.create(type="template", config={"template": "google/oauth"}).id)
    with pytest.raises(vault.ConflictError):
        template.credentials()


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, Any]:
    pytest.importorskip("jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def test_jwt_credentials_mint_a_fresh_token(v: vault.Vault, rsa_pem: tuple[str, Any]) -> None:
    import jwt

    pem, public = rsa_pem
    config = {"algorithm": "RS512", "expiresInSeconds": 60, "claims": {"aud": "api", "scope": "read"}}
    s = v.secret.fetch(v.secret.create(type="jwt", value=pem, config=config).id)
    token = s.credentials()
    assert isinstance(token, str)
    claims = jwt.decode(token, public, algorithms=["RS512"], audience="api")
    assert claims["scope"] == "read" and claims["exp"] - claims["iat"] == 60
    assert s.authorization_header().startswith("Bearer ey")
    hs = v.secret.fetch(
        v.secret.create(type="jwt", value="shared-hmac-key-of-32-bytes-long!", config={"algorithm": "HS256"}).id
    )
    assert jwt.decode(hs.credentials(), "shared-hmac-key-of-32-bytes-long!", algorithms=["HS256"])


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"algorithm": "none"}, vault.InvalidRequestError),
        ({"algorithm": "XX999"}, vault.InvalidRequestError),
        ({"expiresInSeconds": 0}, vault.InvalidRequestError),
        ({"expiresInSeconds": "600"}, vault.InvalidRequestError),
        ({"expiresInSeconds": 10**9}, vault.InvalidRequestError),
        ({"claims": ["not", "a", "map"]}, vault.InvalidRequestError),
        ({"algorithm": "ES256"}, MintRefusedError),  # an RSA key cannot sign ES256
    ],
)
def test_jwt_bad_settings(
    v: vault.Vault, rsa_pem: tuple[str, Any], config: dict[str, Any], error: type[Exception]
) -> None:
    pem, _ = rsa_pem
    s = v.secret.fetch(v.secret.create(type="jwt", value=pem, config=config).id)
    with pytest.raises(error) as exc:
        s.credentials()
    assert "PRIVATE KEY" not in str(exc.value)


def test_mint_refuses_what_the_cloud_refuses(v: vault.Vault) -> None:
    for kind in ("plain", "basic", "bearer"):
        with pytest.raises(MintRefusedError) as exc:
            mint(v.secret.fetch(v.secret.create(type=kind, value="a:b").id))
        assert exc.value.error == "not_mintable" and exc.value.to_dict()["error"] == "not_mintable"
    personal = v.secret.fetch(v.secret.create(type="oauth", kind="personal", value="at").id)
    with pytest.raises(MintRefusedError) as exc:
        mint(personal)
    assert exc.value.code == "AUTHORIZATION_REQUIRED" and "url" not in exc.value.to_dict()


def test_jwt_without_pyjwt_is_a_clear_typed_error(v: vault.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_jwt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "jwt":
            raise ImportError("no jwt")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jwt)
    s = v.secret.fetch(v.secret.create(type="jwt", value="k").id)
    with pytest.raises(MissingDependencyError) as exc:
        s.credentials()
    assert isinstance(exc.value, vault.VaultError) and isinstance(exc.value, ImportError)
    assert exc.value.code == "MISSING_DEPENDENCY" and "cbk-vault[jwt]" in str(exc.value)


def test_a_value_nested_past_the_stack_is_no_credentials() -> None:
    from vault._credentials import parse_basic

    # Valid JSON, but deeper than the parser's stack: not credentials, and not a RecursionError.
    assert parse_basic('{"a":' + "[" * 100_000 + "]" * 100_000 + "}") is None
