"""Secret references (cbk://SECRET[/FIELD]): the grammar, what each field picks, the pure helpers, vault.read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vault
from tests.conftest import FAST, PASSPHRASE, Clock
from vault import SecretRef, inject_refs, parse_ref, ref_resolver, resolve_refs
from vault._refs import is_ref

VALUES = ("sk-live-MARKER", "MARKER-basic-pw", "MARKER-cfg-secret", "MARKER-own", "MARKER-twin-1", "MARKER-twin-2")


@pytest.fixture
def filled(v: vault.Vault, clock: Clock) -> vault.Vault:
    ticks = iter(range(1_700_000_000_000, 1_800_000_000_000))
    clock.source = lambda: next(ticks)  # one ms apart, so "oldest" is well defined
    v.secret.create(
        name="OpenAI",
        alias="openai",
        type="bearer",
        value="sk-live-MARKER",
        meta={"env": "OPENAI", "team": {"owner": "ann"}},
    )
    v.secret.create(name="DB", alias="db", type="basic", value='{"username": "dba", "password": "MARKER-basic-pw"}')
    v.secret.create(
        name="a/b c",
        alias="partner",
        type="oauth",
        config={"clientId": "cid", "clientSecret": "MARKER-cfg-secret", "n": 3, "on": True, "value": "cfg-value"},
    )
    v.secret.create(name="twin", value="MARKER-twin-1")
    v.secret.create(name="twin", value="MARKER-twin-2")
    v.secret.create(name="empty", type="basic")
    v.secret.create(name="tmpl", type="template", value="MARKER-own")
    return v


# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cbk://@openai", SecretRef("@openai")),
        ("CBK://@openai/value", SecretRef("@openai")),
        ("cbk://(GitHub)/token", SecretRef("(GitHub)", "token")),
        ("cbk://abc123/username", SecretRef("abc123", "username")),
        ("cbk://Stripe%20Live/password", SecretRef("Stripe Live", "password")),
        ("cbk://Stripe Live/password", SecretRef("Stripe Live", "password")),
        ("cbk://a%2Fb/clientId", SecretRef("a/b", "config", ("clientId",))),
        ("cbk://x/config.clientId", SecretRef("x", "config", ("clientId",))),
        ("cbk://x/config.value", SecretRef("x", "config", ("value",))),
        ("cbk://x/claims.sub", SecretRef("x", "config", ("claims", "sub"))),
        ("cbk://x/meta.team.owner", SecretRef("x", "meta", ("team", "owner"))),
        ("cbk://x/meta.a%2Eb", SecretRef("x", "meta", ("a.b",))),
        ("cbk://%40x/%76alue", SecretRef("@x", "value")),
        ("cbk://Zugangsdaten f%C3%BCr API", SecretRef("Zugangsdaten für API")),
        ("cbk://Zugangsdaten für API", SecretRef("Zugangsdaten für API")),
    ],
)
def test_parse(text: str, expected: SecretRef) -> None:
    assert parse_ref(text) == expected
    assert parse_ref(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "start with cbk://"),
        ("cbk:/x", "start with cbk://"),
        (" cbk://x", "start with cbk://"),
        ("cbk://", "SECRET is empty"),
        ("cbk:///token", "SECRET is empty"),
        ("cbk://x/", "FIELD after '/' is empty"),
        ("cbk://x/a/b", "second '/'"),
        ("cbk://x/meta", "needs a key"),
        ("cbk://x/config", "needs a key"),
        ("cbk://x/meta..a", "FIELD segment is empty"),
        ("cbk://x/meta.", "FIELD segment is empty"),
        ("cbk://x/username.first", "takes no key"),
        ("cbk://%zz", "two hex digits"),
        ("cbk://ab%4", "two hex digits"),
        ("cbk://%ff", "not UTF-8"),
        ("cbk://x?y", "U+003F"),
        ("cbk://x#y", "U+0023"),
        ("cbk://x{y", "U+007B"),
        ("cbk://x\ty", "U+0009"),
        ("cbk://x\u202ey", "U+202E"),
        ("cbk://x\u200by", "U+200B"),
        ("cbk://x\u00a0y", "U+00A0"),
        ("cbk://x ", "space"),
        ("cbk://x/ token", "space"),
        ("cbk://" + "a" * 20000, "longer than"),
        ("cbk://x/" + ".".join(["k"] * 33), "more than 32 keys"),
        ("cbk://x/meta." + ".".join(["k"] * 33), "more than 32 keys"),
        ("cb\u212a://x", "start with cbk://"),  # the Kelvin sign lower-cases to "k"
    ],
)
def test_malformed_references_are_invalid_request(text: str, says: str) -> None:
    with pytest.raises(vault.InvalidRequestError) as info:
        parse_ref(text)
    assert says in info.value.message
    assert info.value.code == "BAD_REQUEST" and isinstance(info.value, ValueError)


def test_a_malformed_reference_is_never_echoed() -> None:
    # Someone pasted the key itself after the scheme: the message must not repeat it.
    with pytest.raises(vault.InvalidRequestError) as info:
        parse_ref("cbk://sk-live-abcdef/gh?x")
    assert "sk-live" not in str(info.value)


def test_non_strings_and_bad_secretrefs_are_refused() -> None:
    with pytest.raises(vault.InvalidRequestError):
        parse_ref(b"cbk://x")  # type: ignore[arg-type]
    for bad in (
        lambda: SecretRef(""),
        lambda: SecretRef("x", "nope"),
        lambda: SecretRef("x", "meta"),
        lambda: SecretRef("x", "value", ("a",)),
        lambda: SecretRef("x", "meta", ("",)),
        lambda: SecretRef("\ud800"),
    ):
        with pytest.raises(vault.InvalidRequestError):
            bad()


def test_is_ref() -> None:
    assert is_ref("cbk://x") and is_ref("CBK://x") and is_ref("cbk://")
    assert not is_ref("cbk:x") and not is_ref(" cbk://x") and not is_ref(None) and not is_ref("https://x")
    assert not is_ref("cb\u212a://x")


_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@given(
    secret=_TEXT,
    field=st.sampled_from(["value", "username", "password", "token", "meta", "config"]),
    path=st.lists(_TEXT, min_size=1, max_size=4),
)
def test_printing_then_parsing_gives_the_same_ref(secret: str, field: str, path: list[str]) -> None:
    ref = SecretRef(secret, field, tuple(path) if field in ("meta", "config") else ())
    text = str(ref)
    assert parse_ref(text) == ref
    assert str(parse_ref(text)) == text  # the printed form is canonical


@given(st.text(max_size=40))
def test_parse_is_total(text: str) -> None:
    try:
        ref = parse_ref("cbk://" + text)
    except vault.InvalidRequestError:
        return
    assert parse_ref(str(ref)) == ref


# --- what a field picks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("cbk://@openai", "sk-live-MARKER"),
        ("cbk://@openai/token", "sk-live-MARKER"),
        ("cbk://(OpenAI)", "sk-live-MARKER"),
        ("cbk://OpenAI", "sk-live-MARKER"),
        ("cbk://@openai/meta.env", "OPENAI"),
        ("cbk://@openai/meta.team.owner", "ann"),
        ("cbk://@openai/meta.team", '{"owner":"ann"}'),
        ("cbk://@db/username", "dba"),
        ("cbk://DB/password", "MARKER-basic-pw"),
        ("cbk://@db", '{"username": "dba", "password": "MARKER-basic-pw"}'),
        ("cbk://@partner/clientId", "cid"),
        ("cbk://a%2Fb c/config.clientSecret", "MARKER-cfg-secret"),  # unmasked: you asked for it
        ("cbk://@partner/n", "3"),
        ("cbk://@partner/on", "true"),
        ("cbk://@partner/config.value", "cfg-value"),
        ("cbk://(twin)", "MARKER-twin-1"),  # (name) is fetch's: the oldest
    ],
)
def test_fields(filled: vault.Vault, ref: str, expected: str) -> None:
    assert ref_resolver(filled)(ref) == expected


def test_an_id_works_and_wins_over_a_name(filled: vault.Vault) -> None:
    target = filled.secret.fetch("@openai")
    filled.secret.create(name=target.id, value="a name that looks like an id")
    assert ref_resolver(filled)(f"cbk://{target.id}") == "sk-live-MARKER"


@pytest.mark.parametrize(
    ("ref", "error", "says"),
    [
        ("cbk://nope", vault.NotFoundError, "no secret has the id, or the name, 'nope'"),
        ("cbk://@nope", vault.NotFoundError, "not found"),
        ("cbk://(nope)", vault.NotFoundError, "not found"),
        ("cbk://twin", vault.InvalidRequestError, "matches 2 secrets"),
        ("cbk://@openai/username", vault.NotFoundError, "only basic secrets have a username"),
        ("cbk://@db/token", vault.NotFoundError, "use /username or /password"),
        ("cbk://@openai/meta.nope", vault.NotFoundError, "has no meta.nope"),
        ("cbk://@openai/meta.env.deeper", vault.NotFoundError, "has no meta.env.deeper"),
        ("cbk://@partner/clientIdx", vault.NotFoundError, "has no config.clientIdx"),
        ("cbk://@partner", vault.NotFoundError, "has no value"),
        ("cbk://empty/password", vault.NotFoundError, "has no value"),
        ("cbk://@partner/token", vault.MintRefusedError, "not authenticated"),
        ("cbk://tmpl/token", vault.NotFoundError, "template secret"),
    ],
)
def test_errors_are_typed_and_hold_no_value(filled: vault.Vault, ref: str, error: type, says: str) -> None:
    with pytest.raises(error) as info:
        ref_resolver(filled)(ref)
    message = str(info.value)
    assert says in message
    assert not any(value in message for value in VALUES)


def test_an_ambiguous_name_lists_the_ids(filled: vault.Vault) -> None:
    ids = sorted(s.id for s in filled.secret.list() if s.name == "twin")
    with pytest.raises(vault.InvalidRequestError) as info:
        ref_resolver(filled)("cbk://twin")
    assert all(i in info.value.message for i in ids)
    assert "MARKER" not in info.value.message


def test_a_basic_value_in_no_form_has_no_username(v: vault.Vault) -> None:
    v.secret.create(name="odd", type="basic", value="MARKER-no-colon")
    with pytest.raises(vault.NotFoundError) as info:
        ref_resolver(v)("cbk://odd/username")
    assert "MARKER" not in str(info.value)


def test_a_reference_secret_reads_its_target(filled: vault.Vault) -> None:
    filled.secret.create(name="ref", type="reference", config={"reference": "@db"}, meta={"own": "yes"})
    r = ref_resolver(filled)
    assert r("cbk://ref/password") == "MARKER-basic-pw"
    assert r("cbk://ref/meta.own") == "yes"  # its own meta, not the target's


def test_jwt_tokens_are_minted(v: vault.Vault) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    v.secret.create(name="signer", type="jwt", value=pem, config={"algorithm": "ES256", "claims": {"sub": "agent"}})
    token = ref_resolver(v)("cbk://signer/token")
    assert token.count(".") == 2 and "PRIVATE" not in token


def test_the_resolver_fetches_each_secret_once(filled: vault.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = filled.secret.fetch

    def counting(identifier: str) -> vault.Secret:
        calls.append(identifier)
        return original(identifier)

    monkeypatch.setattr(filled.secret, "fetch", counting)
    r = ref_resolver(filled)
    assert (r("cbk://@db/username"), r("cbk://@db/password")) == ("dba", "MARKER-basic-pw")
    assert calls == ["@db"]
    assert "MARKER" not in repr(r)


# --- the pure helpers --------------------------------------------------------------------------------


def _fake(ref: str) -> str:
    parsed = parse_ref(ref)
    if parsed.secret == "missing":
        raise vault.NotFoundError("secret 'missing' not found")
    return f"<{parsed.secret}:{parsed.field}>"


def test_resolve_refs_replaces_only_references() -> None:
    got = resolve_refs({"A": "cbk://@a", "B": "plain", "C": None, "D": "CBK://x/token"}, _fake)
    assert got == {"A": "<@a:value>", "B": "plain", "C": None, "D": "<x:token>"}


def test_resolve_refs_names_the_key() -> None:
    with pytest.raises(vault.NotFoundError) as info:
        resolve_refs({"OK": "cbk://a", "API_KEY": "cbk://missing"}, _fake)
    assert info.value.message == "API_KEY: secret 'missing' not found"
    with pytest.raises(vault.InvalidRequestError) as bad:
        resolve_refs({"K": "cbk://x/a/b"}, _fake)
    assert bad.value.message.startswith("K: malformed secret reference")


def test_inject_refs() -> None:
    template = "key: {{ cbk://@a }}\nuser: {{cbk://x/username}}  {{ other }} {{\tCBK://y/meta.k\t}}\n{{{ cbk://z }}}"
    assert inject_refs(template, _fake) == ("key: <@a:value>\nuser: <x:username>  {{ other }} <y:meta>\n{<z:value>}")
    assert inject_refs("no placeholders {{ here }}", _fake) == "no placeholders {{ here }}"
    assert inject_refs("{{ cbk://(My Key)/password }}", _fake) == "<(My Key):password>"
    assert inject_refs("{{ cb\u212a://x }}", _fake) == "{{ cb\u212a://x }}"  # not our scheme: left alone


@pytest.mark.parametrize(
    ("template", "error", "says"),
    [
        ("a\nb {{ cbk://missing }}", vault.NotFoundError, "line 2: secret 'missing'"),
        ("a\n\nb {{ cbk://x/a/b }}", vault.InvalidRequestError, "line 3: malformed"),
        ("{{ cbk://x }", vault.InvalidRequestError, "line 1: a {{ cbk://... }} placeholder is not closed"),
        ("{{ cbk://x\n}}", vault.InvalidRequestError, "not closed"),
        ("{{ cbk://a{b }}", vault.InvalidRequestError, "not closed"),
    ],
)
def test_inject_refs_errors_name_the_line(template: str, error: type, says: str) -> None:
    with pytest.raises(error) as info:
        inject_refs(template, _fake)
    assert says in str(info.value)


# --- vault.read ----------------------------------------------------------------------------------


@pytest.fixture
def no_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("CBK_VAULT_AGENT_SOCK", str(run / "agent.sock"))
    monkeypatch.delenv("CBK_VAULT_PASSPHRASE", raising=False)


def test_read_with_the_passphrase_variable(
    filled: vault.Vault, vault_path: Path, no_agent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    assert vault.read("cbk://@db/password", path=vault_path) == "MARKER-basic-pw"
    monkeypatch.setenv("CBK_VAULT_PATH", str(vault_path))
    assert vault.read("cbk://@openai") == "sk-live-MARKER"
    assert vault.read(SecretRef("@openai", "meta", ("env",))) == "OPENAI"


def test_read_never_prompts(
    filled: vault.Vault, vault_path: Path, no_agent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda *a, **k: pytest.fail("prompted"))
    with pytest.raises(vault.NotUnlockedError) as info:
        vault.read("cbk://@openai", path=vault_path)
    assert "cbk-vault unlock" in info.value.message and "CBK_VAULT_PASSPHRASE" in info.value.message
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", "wrong")
    with pytest.raises(vault.WrongPassphraseError):
        vault.read("cbk://@openai", path=vault_path)


def test_read_checks_the_reference_before_opening(tmp_path: Path, no_agent: None) -> None:
    with pytest.raises(vault.InvalidRequestError):
        vault.read("not a ref", path=tmp_path / "absent.cbkv")
    with pytest.raises(vault.VaultNotFoundError):
        vault.read("cbk://x", path=tmp_path / "absent.cbkv")


def test_read_through_the_unlock_agent(tmp_path: Path, no_agent: None) -> None:
    import signal

    from vault import _session

    path = tmp_path / "agent.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(alias="gh", type="bearer", value="ghp_MARKER")
    sock = Path(os.environ["CBK_VAULT_AGENT_SOCK"])
    _session.unlock(path, PASSPHRASE)
    try:
        assert vault.read("cbk://@gh/token", path=path) == "ghp_MARKER"  # no passphrase anywhere
    finally:
        os.kill(_session.request("hello", sock_path=sock)["pid"], signal.SIGKILL)
