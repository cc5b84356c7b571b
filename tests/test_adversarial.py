"""Adversarial tests, one class per trust boundary: every byte from outside the owner is hostile.

Each test plays an attacker at one boundary and asserts what SECURITY.md's trust-boundary
table promises: the vault still opens, every acknowledged write is intact, nothing secret
leaks, and the refusal is a typed ``VaultError`` with a code.

* ``TestFileOnDisk``: other local users and processes that can reach the vault's directory.
* ``TestStandInClient``: a local process that talks to the stand-in (``cbk-vault serve``).
* ``TestHostileImportFile``: an export, a ``.env`` or a KeePass file someone hands the owner.
* ``TestHostileEnvironment``: the environment and command line of ``run``'s child and of an env
  export, as chosen by a secret that anyone who can write a secret planted (a sync pull from a
  hostile cloud, an imported file, a client of the stand-in).
* ``TestHostileTerminal``: names, descriptions, meta, config and error text on their way to the
  owner's terminal.
* The cloud (sync's other side): module-level tests below the "the cloud" section, each against a
  real HTTP server that can answer anything.
* ``TestOneValidationPath``: hostile input at every entry point at once (API, stand-in, import,
  the records seam under sync).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vault
from tests.conftest import FAST, PASSPHRASE
from tests.fakecloud import FakeCloud, Request
from tests.test_cli import SECRETS, cli, error_line, ok
from vault import _asgi, _http
from vault._api import ListQuery, SecretApi
from vault._http import StandInServer
from vault._vault import raw_records
from vault.cli import _formats as formats
from vault.sync import (
    ChatBotKitRemote,
    RemoteProtocolError,
    SyncReport,
    sync,
)


def _intact_values(path: Path, expected: dict[str, str | None]) -> None:
    """The vault opens with the owner's passphrase and holds exactly the acknowledged secrets."""
    with vault.open(path, PASSPHRASE) as v:
        assert {s.name: v.secret.fetch(s.id).value for s in v.secret.list()} == expected


class TestFileOnDisk:
    """Another local user shares the directory; the files handed to us may be planted."""

    @pytest.fixture
    def made(self, vault_path: Path) -> Path:
        with vault.init(vault_path, PASSPHRASE, kdf=FAST) as v:
            v.secret.create(name="kept", value="k")
        return vault_path

    def test_a_lock_file_others_may_write_is_refused(self, made: Path) -> None:
        # A 0666 lock file in a shared directory lets anyone hold the lock forever.
        lock = made.with_name(made.name + ".lock")
        lock.chmod(0o666)
        with pytest.raises(vault.InsecureFileError) as info:
            vault.open(made, PASSPHRASE)
        assert info.value.code == "INSECURE_FILE" and "lock file" in info.value.message
        lock.chmod(0o600)
        _intact_values(made, {"kept": "k"})

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the lock file to another user")
    def test_a_lock_file_owned_by_another_user_is_refused(self, made: Path) -> None:
        lock = made.with_name(made.name + ".lock")
        os.chown(lock, 65534, 65534)
        with pytest.raises(vault.InsecureFileError) as info:
            vault.open(made, PASSPHRASE)
        assert "owned by another user" in info.value.message
        os.chown(lock, 0, 0)
        _intact_values(made, {"kept": "k"})

    def test_a_lock_path_that_is_a_symlink_or_not_a_file_is_refused(self, made: Path) -> None:
        lock = made.with_name(made.name + ".lock")
        lock.unlink()
        lock.symlink_to(made.with_name("elsewhere"))
        with pytest.raises(vault.InsecureFileError):
            vault.open(made, PASSPHRASE)
        lock.unlink()
        os.mkfifo(lock, 0o600)
        with pytest.raises(vault.InsecureFileError):
            vault.open(made, PASSPHRASE)
        lock.unlink()
        _intact_values(made, {"kept": "k"})


def _raw_exchange(port: int, data: bytes, *, wait: float = 30.0) -> bytes:
    """Send raw bytes to the stand-in and read until it closes the connection (or ``wait`` runs out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _dechunked(body: bytes) -> bytes:
    """A chunked body's data; AssertionError when its framing is broken."""
    out = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return b"".join(out)
        out.append(body[:size])
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def _closed_by_server(sock: socket.socket, wait: float = 30.0) -> bool:
    """Whether the server closes the connection (after whatever answer it sends) within ``wait``."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


class TestStandInClient:
    """Any local process can reach the stand-in's port; only the token holder may act."""

    def test_a_real_vault_is_served_only_to_the_printed_token(self, v: vault.Vault) -> None:
        # Any bearer token was accepted by default: any local process could set meta.env = LD_PRELOAD
        # on a secret and wait for the owner's next `cbk-vault run`.
        with StandInServer(v) as server:
            hostile = b'{"name": "x", "value": "/tmp/evil.so", "meta": {"env": "LD_PRELOAD"}}'
            request = (
                b"POST /api/v1/secret/create HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer guessed\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            ) % (len(hostile), hostile)
            answer = _raw_exchange(server.port, request)
            assert answer.startswith(b"HTTP/1.1 401") and b"NOT_AUTHENTICATED" in answer
        assert len(v) == 0

    @pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest", ""])
    def test_only_the_bearer_scheme_carries_the_token(self, v: vault.Vault, scheme: str) -> None:
        # A Basic header meant for another service was taken for a token.
        with StandInServer(v, any_token=True) as server:
            header = f"{scheme} {server.token}".strip().encode()
            answer = _raw_exchange(
                server.port,
                b"GET /api/v1/secret/list HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n"
                b"Connection: close\r\n\r\n" % header,
            )
            assert answer.startswith(b"HTTP/1.1 401")

    def test_connections_beyond_the_cap_get_503_and_no_thread(
        self, v: vault.Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A thread per half-open connection, without a cap: a local process could exhaust threads.
        monkeypatch.setattr(_http, "MAX_CONNECTIONS", 8)
        before = threading.active_count()
        with StandInServer(v) as server:
            held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
            try:
                # Each held connection is being served (its thread waits for headers) before more come.
                extra = [_raw_exchange(server.port, b"") for _ in range(3)]
                assert all(a.startswith(b"HTTP/1.1 503") for a in extra), extra
                assert threading.active_count() - before <= 8 + 3  # server, watchdog, the held ones
            finally:
                for sock in held:
                    sock.close()

    def test_a_client_that_trickles_its_headers_is_cut_off(
        self, v: vault.Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_http, "HEADER_TIMEOUT", 1.0)
        with StandInServer(v) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /api/v1/secret/list HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            assert _closed_by_server(sock)

    def test_a_long_streamed_list_arrives_whole_through_the_held_writes(self, v: vault.Vault) -> None:
        # The transport holds writes until the loop's next turn or 64 KiB; a list longer than that
        # must still arrive whole and in order, under the transport's flow control.
        with v.batch():
            for i in range(300):
                v.secret.create(name=f"svc-{i:03}", description="d" * 400)
        with StandInServer(v) as server:
            request = (
                b"GET /api/v1/secret/list?take=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                b"Accept: application/jsonl\r\nConnection: close\r\n\r\n" % server.token.encode()
            )
            answer = _raw_exchange(server.port, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        lines = _dechunked(body).splitlines()
        expected = [e["data"]["name"] for e in SecretApi(v).stream(ListQuery.from_pairs([("take", "1000")]))]
        assert len(body) > 1 << 17 and [json.loads(line)["data"]["name"] for line in lines] == expected
        assert len(expected) == 300

    def test_a_client_that_never_sends_its_body_is_cut_off(
        self, v: vault.Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_asgi, "BODY_TIMEOUT", 1.0)
        with StandInServer(v) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"POST /api/v1/secret/create HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                b"Content-Length: 1000\r\n\r\n{" % server.token.encode()
            )
            assert _closed_by_server(sock)
        assert len(v) == 0

    def test_clients_that_hang_up_early_leave_no_traceback(
        self, v: vault.Vault, capfd: pytest.CaptureFixture[str]
    ) -> None:
        with StandInServer(v) as server:
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", server.port)) as sock:
                    sock.sendall(b"POST /api/v1/secret/create HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            answer = _raw_exchange(
                server.port,
                b"GET /api/v1/secret/list HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                b"Connection: close\r\n\r\n" % server.token.encode(),
            )
            assert answer.startswith(b"HTTP/1.1 200")  # still serving
            time.sleep(0.2)  # let the cut-off threads finish writing whatever they write
        assert "Traceback" not in capfd.readouterr().err

    def test_verbose_logs_cannot_drive_the_operators_terminal(
        self, v: vault.Vault, capfd: pytest.CaptureFixture[str]
    ) -> None:
        with StandInServer(v, verbose=True) as server:
            _raw_exchange(
                server.port,
                b"GET /api/v1/%1b]0;owned%07%1b[2J%c2%9b31m%e2%80%ae HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Connection: close\r\n\r\n",
            )
            _raw_exchange(server.port, b"\x1b[31mGARBAGE\r\n\r\n")
        err = capfd.readouterr().err
        assert "\x1b" not in err and "\x9b" not in err and "\x07" not in err and "\u202e" not in err
        assert "cbk-vault serve" in err  # it did log

    @pytest.mark.parametrize("stored_as", ["plain", "basic", "bearer", "reference"])
    def test_a_type_change_never_turns_a_stored_value_into_a_token(self, v: vault.Vault, stored_as: str) -> None:
        # Mint returned the raw stored value of a plain or basic secret once its type was set to oauth.
        api = SecretApi(v)
        value = json.dumps({"accessToken": "the owner's real key"}) if stored_as == "reference" else "sk-owner-key"
        sid = api.create({"name": "k", "type": stored_as, "value": value})["id"]
        api.update(sid, {"type": "oauth"})
        with pytest.raises(vault.MintRefusedError) as info:
            api.mint(sid)
        assert info.value.error == "authorization_required"
        assert "owner" not in json.dumps(info.value.to_dict())
        assert api.verify(sid)["status"] == "unauthenticated"
        # The owner's value is untouched, and re-setting it as oauth token state makes it mintable.
        assert v.secret.fetch(sid).value == value
        api.update(sid, {"value": json.dumps({"accessToken": "at-new"})})
        assert api.mint(sid)["token"] == "at-new"

    def test_a_reference_cannot_launder_a_value_written_as_another_type(self, v: vault.Vault) -> None:
        api = SecretApi(v)
        target = api.create({"name": "t", "type": "plain", "value": json.dumps({"accessToken": "plain-key"})})["id"]
        api.update(target, {"type": "oauth"})
        ref = api.create({"name": "r", "type": "reference", "config": {"reference": target}})["id"]
        with pytest.raises(vault.MintRefusedError):
            api.mint(ref)

    def test_a_bare_string_is_not_oauth_token_state(self, v: vault.Vault) -> None:
        api = SecretApi(v)
        sid = api.create({"name": "o", "type": "oauth", "value": "sk-stored-as-oauth"})["id"]
        with pytest.raises(vault.MintRefusedError) as info:
            api.mint(sid)
        assert info.value.error == "authorization_required"


# --- one validation path for every write ---------------------------------------------------------

_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_FIELD_VALUES = st.one_of(
    _JSONISH,
    st.integers(min_value=1000, max_value=1100).map(lambda n: "n" * n),
    st.sampled_from(["shared", "personal", "oauth", "jwt", "public", "", "********", "a" * 129, "\\ud800"]),
    st.just({"big": "x" * (64 << 10)}),
)
_WIRE = ["name", "description", "kind", "type", "value", "alias", "meta", "config", "visibility", "blueprintId"]
_HOSTILE_REQUEST = st.dictionaries(st.sampled_from([*_WIRE, "bogus"]), _FIELD_VALUES, max_size=6)
_HOSTILE_STAMP = st.one_of(
    st.none(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.sampled_from([True, "1", -1])
)


def _via_api(v: vault.Vault, request: dict[str, Any], created: Any, updated: Any) -> str:
    return v.secret.create(request).id


def _via_api_update(v: vault.Vault, request: dict[str, Any], created: Any, updated: Any) -> str:
    return v.secret.update("(seed)", request).id


def _via_standin(v: vault.Vault, request: dict[str, Any], created: Any, updated: Any) -> str:
    return str(SecretApi(v).create(request)["id"])


def _via_import(v: vault.Vault, request: dict[str, Any], created: Any, updated: Any) -> str:
    item = dict(request)
    for key, stamp in (("createdAt", created), ("updatedAt", updated)):
        if stamp is not None:
            item[key] = stamp
    try:
        data = json.dumps({"items": [item]}).encode()
    except ValueError:
        data = b'{"items": [{"name": NaN}]}'  # what a hostile file holds when JSON cannot
    try:
        (record,) = formats.parse_json(data)
    except formats.UsageError as exc:
        raise vault.InvalidRequestError(str(exc)) from None  # the CLI's exit 2: refused before the vault
    return raw_records(v).put(None, record.fields, created_at=record.created_at, updated_at=record.updated_at).id


def _via_raw(v: vault.Vault, request: dict[str, Any], created: Any, updated: Any) -> str:
    # What sync's pull and import hand the records seam: snake_case fields, exact timestamps.
    fields = {("blueprint_id" if k == "blueprintId" else k): val for k, val in request.items()}
    return raw_records(v).put(None, fields, created_at=created, updated_at=updated).id


ENTRY_POINTS = {
    "api-create": _via_api,
    "api-update": _via_api_update,
    "stand-in": _via_standin,
    "import": _via_import,
    "records-seam": _via_raw,
}


class TestOneValidationPath:
    """Whatever enters (API, stand-in, import, sync's records seam) passes the reader's own checks first."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        steps=st.lists(
            st.tuples(st.sampled_from(sorted(ENTRY_POINTS)), _HOSTILE_REQUEST, _HOSTILE_STAMP, _HOSTILE_STAMP),
            min_size=1,
            max_size=6,
        )
    )
    def test_hostile_input_at_every_entry_point_leaves_a_vault_that_opens(
        self, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, dict[str, Any], Any, Any]]
    ) -> None:
        path = tmp_path_factory.mktemp("hostile") / "v.cbkv"

        def state(v: vault.Vault) -> dict[str, dict[str, Any]]:
            return {s.id: v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(take=100)}

        with vault.init(path, PASSPHRASE, kdf=FAST) as v:
            v.secret.create(name="seed", value="seed value")
            acknowledged = state(v)
            for name, request, created, updated in steps:
                try:
                    sid = ENTRY_POINTS[name](v, request, created, updated)
                except vault.VaultError:
                    assert state(v) == acknowledged, f"{name} refused a write but changed the vault"
                    continue
                acknowledged = state(v)
                assert sid in acknowledged
        with vault.open(path, PASSPHRASE) as again:
            assert state(again) == acknowledged


# --- the owner's own machine: import files, the environment, the terminal ----------------------

EVIL_LIB = "/tmp/evil-preload-VALUE-4b1e.so"
OWNER = "sk_owner_VALUE_0c3a"


def _state(path: Path) -> dict[str, dict[str, Any]]:
    with vault.open(path, PASSPHRASE) as v:
        return {s.id: v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(take=100)}


def _intact(path: Path, acknowledged: dict[str, dict[str, Any]]) -> None:
    """The vault opens with the owner's passphrase and holds exactly the acknowledged secrets."""
    assert _state(path) == acknowledged


def _plant(path: Path, **fields: Any) -> str:
    """What a sync pull, an import or a stand-in client can do: write any secret the field rules accept."""
    with vault.open(path, PASSPHRASE) as v:
        return v.secret.create(**fields).id


def _refusal(proc: Any, *needles: str) -> str:
    line = error_line(proc, 2)
    for needle in needles:
        assert needle in line, (needle, line)
    assert EVIL_LIB not in line and OWNER not in line
    assert proc.stdout == ""  # the command never ran; nothing was exported
    return line


@pytest.fixture
def owned(tmp_path: Path) -> Path:
    """The owner's vault: one secret that `run` injects by meta.env."""
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="OpenAI", alias="openai", value=OWNER, meta={"env": "OPENAI_API_KEY"})
    return path


# --- the environment / command line ------------------------------------------------------------

#: One name per group of the denylist, in the case the tools read (and some in another case).
DENIED = [
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "GCONV_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONWARNINGS",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "BASH_ENV",
    "ENV",
    "PS4",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "IFS",
    "BASH_FUNC_ls",
    "PATH",
    "path",
    "HOME",
    "SHELL",
    "TMPDIR",
    "HTTP_PROXY",
    "https_proxy",
    "All_Proxy",
    "no_proxy",
    "OPENAI_BASE_URL",
    "anthropic_base_url",
    "OPENAI_API_BASE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "SSLKEYLOGFILE",
    "GIT_SSH_COMMAND",
    "GIT_CONFIG_COUNT",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "GIT_PAGER",
    "LESSOPEN",
    "CBK_VAULT_PATH",
    "CBK_VAULT_PASSPHRASE",
]
#: Credentials a secret is meant to set: none of them is refused.
ALLOWED = ["OPENAI_API_KEY", "GITHUB_TOKEN", "LDAP_URL", "PATH_TO_NOTHING", "DB_URL", "AWS_SECRET_ACCESS_KEY", "_"]


class TestHostileEnvironment:
    """A planted secret chooses a variable name; only the owner, on the command line, may choose a dangerous one."""

    @pytest.mark.parametrize("name", DENIED)
    def test_the_denylist_covers_every_group(self, name: str) -> None:
        assert formats.env_denial(name), name

    @pytest.mark.parametrize("name", ALLOWED)
    def test_ordinary_credential_names_are_not_refused(self, name: str) -> None:
        assert formats.env_denial(name) is None

    def test_the_documented_list_is_the_enforced_list(self) -> None:
        docs = (Path(__file__).parent.parent / "docs" / "CLI.md").read_text()
        for group in formats.DENIED_ENV:
            assert group.reason
            for name in sorted(group.names):
                assert f"`{name}`" in docs, name
            for prefix in group.prefixes:
                assert f"`{prefix}*`" in docs, prefix
            for suffix in group.suffixes:
                assert f"`*{suffix}`" in docs, suffix

    def test_run_refuses_to_start_when_a_secret_sets_ld_preload(self, owned: Path) -> None:
        planted = _plant(owned, name="innocent", value=EVIL_LIB, meta={"env": "LD_PRELOAD"})
        acknowledged = _state(owned)
        proc = cli(owned, "run", "--", "sh", "-c", 'printf "ran %s" "${LD_PRELOAD-unset}"')
        line = _refusal(proc, "LD_PRELOAD", planted, "--allow-env LD_PRELOAD")
        assert "[USAGE]" in line
        _intact(owned, acknowledged)

    def test_allow_env_lets_exactly_the_named_variables_through(self, owned: Path) -> None:
        proxy = _plant(owned, name="proxy", value="http://127.0.0.1:9", meta={"env": "HTTPS_PROXY"})
        opts = _plant(owned, name="opts", value="--require /tmp/x.js", meta={"env": "NODE_OPTIONS"})
        show = 'printf "%s|%s" "$HTTPS_PROXY" "$OPENAI_API_KEY"'
        _refusal(cli(owned, "run", "--allow-env", "HTTPS_PROXY", "--", "sh", "-c", show), "NODE_OPTIONS", opts)
        both = ("--allow-env", "HTTPS_PROXY", "--allow-env", "NODE_OPTIONS")
        proc = ok(cli(owned, "run", *both, "--", "sh", "-c", show))
        assert proc.stdout == f"http://127.0.0.1:9|{OWNER}"
        assert proxy not in proc.stderr
        assert "not a valid" in error_line(cli(owned, "run", "--allow-env", "A=B", "--", "true"), 2)
        # Allowed exactly as typed: a second planted secret in another case is not let through.
        other = _plant(owned, name="other", value="http://127.0.0.1:8", meta={"env": "Https_Proxy"})
        acknowledged = _state(owned)
        _refusal(cli(owned, "run", *both, "--", "true"), "Https_Proxy", other)
        _intact(owned, acknowledged)

    def test_a_variable_named_by_env_on_the_command_line_is_the_owners_choice(self, owned: Path) -> None:
        _plant(owned, name="proxy", alias="proxy", value="http://127.0.0.1:9", meta={"env": "HTTPS_PROXY"})
        proc = ok(cli(owned, "run", "--env", "HTTPS_PROXY=@proxy", "--", "sh", "-c", 'printf %s "$HTTPS_PROXY"'))
        assert proc.stdout == "http://127.0.0.1:9"

    @pytest.mark.parametrize("bad", ["A=B", "X Y", "1X", "ÄB", "BASH_FUNC_f%%", "A\nB", ""])
    def test_run_refuses_a_meta_env_that_is_not_a_shell_identifier_and_names_the_secret(
        self, owned: Path, bad: str
    ) -> None:
        planted = _plant(owned, name="odd", value="v", meta={"env": bad})
        _refusal(cli(owned, "run", "--", "true"), planted, "not a valid")

    @pytest.mark.parametrize(
        ("fields", "variable"),
        [
            ({"meta": {"env": "LD_PRELOAD"}}, "LD_PRELOAD"),
            ({"alias": "ld_preload"}, "LD_PRELOAD"),
            ({"name": "bash env"}, "BASH_ENV"),
            ({"name": "http_proxy"}, "HTTP_PROXY"),
        ],
    )
    def test_export_env_refuses_a_dangerous_name_from_meta_alias_or_name(
        self, owned: Path, tmp_path: Path, fields: dict[str, Any], variable: str
    ) -> None:
        planted = _plant(owned, value=EVIL_LIB, **fields)
        acknowledged = _state(owned)
        out = tmp_path / "out.env"
        _refusal(cli(owned, "export", "--format", "env", "--output", str(out)), variable, planted)
        assert not out.exists()
        _refusal(cli(owned, "export", "--format", "env"), variable, planted)
        _intact(owned, acknowledged)
        ok(cli(owned, "export", "--format", "env", "--allow-env", variable, "--output", str(out)))
        assert f"{variable}='{EVIL_LIB}'\n" in out.read_text()

    def test_json_export_carries_the_name_as_data(self, owned: Path) -> None:
        # JSON is a backup of every field: the name travels, and `run` and `export --format env` judge it at use.
        _plant(owned, name="innocent", value=EVIL_LIB, meta={"env": "LD_PRELOAD"})
        doc = json.loads(ok(cli(owned, "export", "--format", "json")).stdout)
        assert {"env": "LD_PRELOAD"} in [item["meta"] for item in doc["items"]]


# --- a hostile import file -----------------------------------------------------------------------


class TestHostileImportFile:
    """A file someone hands the owner: every field passes the API's own checks, or nothing is written."""

    def _import(self, path: Path, tmp_path: Path, content: bytes, *options: str) -> Any:
        src = tmp_path / "hostile"
        src.write_bytes(content)
        return cli(path, "import", *options, str(src))

    def _refused(self, path: Path, tmp_path: Path, content: bytes, *options: str) -> str:
        acknowledged = _state(path)
        before = path.read_bytes()
        line = error_line(self._import(path, tmp_path, content, *options), 2)
        assert path.read_bytes() == before
        _intact(path, acknowledged)
        return line

    def test_an_export_that_plants_ld_preload_imports_but_run_refuses_it(self, owned: Path, tmp_path: Path) -> None:
        item = {"id": "m2q1x0c3v4b5n6m7a8s9d0f1", "name": "helper", "value": EVIL_LIB, "meta": {"env": "LD_PRELOAD"}}
        proc = ok(self._import(owned, tmp_path, json.dumps({"items": [item]}).encode()))
        assert "LD_PRELOAD" in proc.stderr and "--allow-env" in proc.stderr  # the owner is told at once
        _refusal(cli(owned, "run", "--", "true"), "LD_PRELOAD", item["id"])

    def test_a_dotenv_that_sets_ld_preload_imports_but_run_and_export_refuse_it(
        self, owned: Path, tmp_path: Path
    ) -> None:
        content = f"OK_TOKEN=fine\nexport LD_PRELOAD={EVIL_LIB}\nPATH=/tmp/evil:/usr/bin\n".encode()
        proc = ok(self._import(owned, tmp_path, content, "--format", "env"))
        assert "LD_PRELOAD" in proc.stderr and "PATH" in proc.stderr and EVIL_LIB not in proc.stderr
        _refusal(cli(owned, "run", "--", "true"), "LD_PRELOAD")
        _refusal(cli(owned, "export", "--format", "env"), "LD_PRELOAD")

    def test_a_keepass_entry_titled_like_a_loader_variable_cannot_export_as_one(
        self, owned: Path, tmp_path: Path
    ) -> None:
        pykeepass = pytest.importorskip("pykeepass")
        kdbx = tmp_path / "hostile.kdbx"
        db = pykeepass.create_database(str(kdbx), password="kp")
        db.add_entry(db.root_group, "LD PRELOAD", "", EVIL_LIB)
        db.add_entry(db.root_group, "\u202eevil\x9b2J\u200b", "", "x")  # KeePass's XML carries no C0 control
        db.save()
        pw = tmp_path / "kp.txt"
        pw.write_text("kp")
        ok(cli(owned, "import", "--format", "kdbx", str(kdbx), "--kdbx-password-file", str(pw)))
        _refusal(cli(owned, "export", "--format", "env"), "LD_PRELOAD")
        listing = ok(cli(owned, "list")).stdout
        _no_terminal_controls(listing)

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"[" * 100_000, "nested too deeply"),
            (json.dumps({"items": [{"meta": {"a": [[[[[[[[[["deep"]]]]]]]]]]}}]}).encode(), "nested at most"),
            (b'{"items": [{"name": "x", "meta": {"n": 1e400}}]}', "NaN and Infinity"),
            (b'{"items": [{"name": "x", "meta": {"n": NaN}}]}', "NaN and Infinity"),
            (b'{"items": [{"name": "x", "meta": {"n": -Infinity}}]}', "NaN and Infinity"),
            (b'{"items": [{"name": "x", "meta": {"n": ' + b"9" * 5000 + b"}}]}", "too many digits"),
            (b'{"items": [{"name": "x", "meta": {"n": 18446744073709551616}}]}', "meta must be JSON"),
            (b'{"items": [{"name": "x", "createdAt": 1e30}]}', "epoch milliseconds"),
            (b'{"items": [{"name": "x", "value": 12}]}', "\"value\" must be a string"),
            (b'{"items": [{"name": "a", "name": "b"}]}', "repeats a key"),
            (
                b'{"items": [{"id": "m2q1x0c3v4b5n6m7a8s9d0f1", "name": "a"},'
                b' {"id": "m2q1x0c3v4b5n6m7a8s9d0f1", "name": "b"}]}',
                "repeats item 1",
            ),
            (b'{"items": [{"id": "../../etc/passwd"}]}', "id has the wrong form"),
            (b'{"items": [{"name": "x", "sneaky": 1}]}', "unknown field"),
        ],
    )
    def test_malformed_or_oversized_json_is_refused_and_changes_nothing(
        self, owned: Path, tmp_path: Path, content: bytes, message: str
    ) -> None:
        assert message in self._refused(owned, tmp_path, content)

    def test_control_characters_are_stored_as_data_and_never_reach_the_terminal(
        self, owned: Path, tmp_path: Path
    ) -> None:
        name = "pay\x9b2J\u202eMENTS\u200b\x1b]8;;http://evil\x07"
        item = {"name": name, "description": "\u2066hidden\u2069\x85", "value": "v\x9b", "meta": {"k": "\u202e"}}
        ok(self._import(owned, tmp_path, json.dumps([item]).encode()))
        stored = next(s for s in _state(owned).values() if s["name"] == name)
        assert stored["description"] == item["description"] and stored["value"] == "v\x9b"  # exact, as data
        for args in (("list",), ("fetch", stored["id"]), ("list", "--json"), ("fetch", stored["id"], "--json")):
            proc = ok(cli(owned, *args))
            _no_terminal_controls(proc.stdout + proc.stderr)


# --- the terminal -------------------------------------------------------------------------------

#: What a planted field can hold that a terminal would act on, or that hides or reorders text.
TERMINAL_HOSTILE = (
    "\x1b[2J",  # ESC CSI: clear the screen
    "\x9b31m",  # C1 CSI (one character): a colour change in terminals that read C1 controls
    "\x9d0;title\x9c",  # C1 OSC ... ST: set the window title
    "\x85",  # C1 NEL: a line break
    "\x7f",  # DEL
    "\u202e",  # right-to-left override: "txt.exe" shows as "exe.txt"
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200b",  # zero-width space: "OpenAI" and "Open\u200bAI" look the same
    "\u200d",  # zero-width joiner
    "\ufeff",  # zero-width no-break space
    "\u2028",  # line separator
    "\u3164",  # Hangul filler: a blank letter (category Lo, not a control)
    "\ufe0f",  # a variation selector after a letter: invisible
    "\U000e0041",  # a tag character: invisible
)
_HOSTILE_CHARS = frozenset("".join(TERMINAL_HOSTILE)) - frozenset("[2J31m0;title")


def _no_terminal_controls(text: str) -> None:
    raw = sorted({f"U+{ord(ch):04X}" for ch in text if ch in _HOSTILE_CHARS or (ch < " " and ch != "\n")})
    assert not raw, f"reached the terminal raw: {raw}"


class TestHostileTerminal:
    """Every human-readable line is escaped; --json is exact JSON with those characters escaped; values stay exact."""

    @pytest.fixture
    def planted(self, owned: Path) -> tuple[Path, str, str]:
        evil = "".join(TERMINAL_HOSTILE)
        sid = _plant(
            owned,
            name="Open" + evil + "AI",
            description="desc" + evil,
            blueprint_id="bp" + evil,
            meta={"note" + evil: "m" + evil},
            config={"clientId": "c" + evil},
            value="value" + evil,
        )
        return owned, sid, evil

    def test_fetch_and_list_escape_every_field(self, planted: tuple[Path, str, str]) -> None:
        path, sid, _ = planted
        described = ok(cli(path, "fetch", sid)).stdout
        _no_terminal_controls(described)
        assert "\\x9b31m" in described and "\\u202e" in described  # shown, not hidden: the owner sees the trick
        for args in (("list",), ("list", "--all"), ("delete", sid, "--yes")):
            proc = ok(cli(path, *args))
            _no_terminal_controls(proc.stdout + proc.stderr)

    def test_json_output_escapes_them_and_decodes_to_the_exact_strings(self, planted: tuple[Path, str, str]) -> None:
        path, sid, evil = planted
        for args in (("fetch", sid, "--json"), ("list", "--json"), ("fetch", sid, "--json", "--reveal")):
            out = ok(cli(path, *args)).stdout
            _no_terminal_controls(out)
            doc = json.loads(out)
            item = doc["items"][0] if "items" in doc else doc
            if item["id"] == sid:
                assert item["name"] == "Open" + evil + "AI" and item["meta"] == {"note" + evil: "m" + evil}
        assert json.loads(ok(cli(path, "fetch", sid, "--json", "--reveal")).stdout)["value"] == "value" + evil

    def test_a_revealed_value_is_the_owners_explicit_request_and_stays_byte_exact(
        self, planted: tuple[Path, str, str]
    ) -> None:
        path, sid, evil = planted
        assert ok(cli(path, "fetch", sid, "--reveal", "-n")).stdout == "value" + evil
        got = ok(cli(path, "run", "--env", f"V={sid}", "--", "sh", "-c", 'printf %s "$V"')).stdout
        assert got == "value" + evil

    def test_error_lines_are_escaped(self, tmp_path: Path) -> None:
        hostile = str(tmp_path / "vault\u202egpj.exe\x9b2J")
        for json_flag in ((), ("--json",)):
            proc = cli(None, "--path", hostile, *json_flag, "list")
            assert proc.returncode == 6
            _no_terminal_controls(proc.stderr)

    def test_sync_report_lines_are_escaped(self) -> None:
        from vault.cli._sync import format_report
        from vault.sync import Change, SyncReport

        evil = "".join(TERMINAL_HOSTILE)
        report = SyncReport(direction="pull", dry_run=True, pulled=(Change(local_id=None, remote_id="r1", name=evil),))
        _no_terminal_controls(format_report(report))


def test_no_secret_in_this_module_is_a_real_one() -> None:
    # The leak checks of tests/test_cli.py search stderr for these; ours must not collide with them.
    assert not {EVIL_LIB, OWNER} & set(SECRETS)


# === trust boundary: the cloud ===================================================================
#
# Adversarial suite, trust boundary: the cloud.
#
# Every byte the ChatBotKit cloud sends is attacker-controlled: a compromised workspace, a
# hostile endpoint behind ``--base-url``, or a proxy in between. The cloud here is a real HTTP
# server on 127.0.0.1 (:class:`HostileCloud`) that answers each request from a per-test
# *script*; whatever the script leaves alone is answered honestly by ``tests/fakecloud.py``'s
# model of the API, so a test can push and pull normally and then turn hostile at one exact
# request. The server can send anything: wrong shapes, huge or slow bodies, slow headers,
# bad timestamps, kind flips, cursor games, 429/Retry-After abuse, redirects, broken HTTP.
# It is bounded (no reply runs longer than ``REPLY_LIMIT`` seconds or past the test) and
# stops itself when the test ends.
#
# Every test ends with :meth:`Witness.assert_intact`: the vault still opens from disk with a
# fresh handle, and every local write the vault acknowledged is still there, value included.
#
# What the cloud can and cannot do is written down in docs/SYNC.md ("A hostile cloud") and
# SECURITY.md; each claim there names the tests below that show it.

#: No scripted reply (a trickle, a huge body) runs longer than this, whatever the client does.
REPLY_LIMIT = 20.0
TOKEN = "sk-hostile-test-token"
MARKER = "cbkVaultRef"


# --- the hostile cloud -------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer.

    ``body``: bytes as they are, an iterator of byte chunks (streamed), or anything else as JSON.
    ``length``: the Content-Length header (None: the real length; -1: none, the body ends when
    the connection closes). ``trickle``: seconds between single body bytes. ``raw``: these exact
    bytes instead of an HTTP response (status line and all), then the connection closes.
    ``head_trickle``: seconds between single bytes of the status line and headers.
    """

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None
    trickle: float | None = None
    head_trickle: float | None = None
    raw: bytes | None = None


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_body: bytes


Script = Callable[[Request, FakeCloud], "Reply | None"]


class HostileCloud:
    """A ChatBotKit cloud that answers from ``script`` (None from the script: the honest answer)."""

    def __init__(self) -> None:
        self.cloud = FakeCloud(token=TOKEN)
        self.script: Script | None = None
        self.seen: list[Seen] = []
        self.stop = threading.Event()
        self.url = ""

    def answer(self, script: Script | None) -> None:
        self.script = script

    def bodies(self) -> bytes:
        """Every request body the cloud received, joined (to search for things that must never arrive)."""
        return b"\n".join(s.raw_body for s in self.seen)

    def count(self, path_end: str) -> int:
        return sum(1 for s in self.seen if s.path.endswith(path_end))


class _Handler(BaseHTTPRequestHandler):
    hostile: HostileCloud

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(min(length, 8 << 20)) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        h = self.hostile
        h.seen.append(Seen(self.command, split.path, query, headers, raw))
        req = Request(self.command, split.path, query, headers, body if raw else _no_body())
        reply = h.script(req, h.cloud) if h.script is not None else None
        if reply is None:
            status, extra, payload = h.cloud.handle(req)
            reply = Reply(status, payload, extra)
        self.close_connection = True
        try:
            self._send(reply)
        except OSError:
            pass  # the client hung up: that is its right

    def _send(self, reply: Reply) -> None:
        deadline = time.monotonic() + REPLY_LIMIT
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            return
        if isinstance(reply.body, (bytes, bytearray)):
            chunks: Iterable[bytes] = [bytes(reply.body)]
            size: int | None = len(reply.body)
        elif isinstance(reply.body, Iterator):
            chunks, size = reply.body, None
        else:
            data = json.dumps(reply.body).encode()
            chunks, size = [data], len(data)
        head = [f"HTTP/1.1 {reply.status} X\r\n", "content-type: application/json\r\n", "connection: close\r\n"]
        length = size if reply.length is None else reply.length
        if length is not None and length >= 0:
            head.append(f"content-length: {length}\r\n")
        head += [f"{k}: {v}\r\n" for k, v in reply.headers.items()]
        head.append("\r\n")
        head_bytes = "".join(head).encode("latin-1")
        if reply.head_trickle is not None:
            for i in range(len(head_bytes)):
                if time.monotonic() > deadline or self.hostile.stop.wait(reply.head_trickle):
                    return
                self.wfile.write(head_bytes[i : i + 1])
                self.wfile.flush()
        else:
            self.wfile.write(head_bytes)
        for chunk in chunks:
            if reply.trickle is None:
                self.wfile.write(chunk)
                if time.monotonic() > deadline or self.hostile.stop.is_set():
                    return
                continue
            for i in range(len(chunk)):
                if time.monotonic() > deadline or self.hostile.stop.wait(reply.trickle):
                    return
                self.wfile.write(chunk[i : i + 1])
                self.wfile.flush()

    do_GET = _serve
    do_POST = _serve


def _no_body() -> Any:
    from tests import fakecloud

    return fakecloud._NO_BODY


@pytest.fixture
def hostile() -> Iterator[HostileCloud]:
    h = HostileCloud()
    handler = type("Handler", (_Handler,), {"hostile": h})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    h.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield h
    finally:
        h.stop.set()  # ends every trickle and stream at once
        server.shutdown()
        server.server_close()
        thread.join(5)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def remote(h: HostileCloud, **kw: Any) -> ChatBotKitRemote:
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("max_backoff", 0.5)
    kw.setdefault("max_retries", 2)
    kw.setdefault("max_total", 10.0)
    kw.setdefault("timeout", 5.0)
    return ChatBotKitRemote(TOKEN, h.url, **kw)


def run(v: vault.Vault, h: HostileCloud, direction: str = "both", **kw: Any) -> SyncReport:
    opts = {k: kw.pop(k) for k in list(kw) if k not in ("prefer", "dry_run", "concurrency")}
    with remote(h, **opts) as r:
        return sync(v, r, direction=direction, **kw)  # type: ignore[arg-type]


# --- the witness: the vault opens and every acknowledged write is intact ---------------------


class Witness:
    """Records every local write the vault acknowledged, and checks them from a fresh handle."""

    def __init__(self, v: vault.Vault, path: Path) -> None:
        self.v, self.path = v, path
        self.values: dict[str, str | None] = {}

    def create(self, **fields: Any) -> vault.Secret:
        s = self.v.secret.create(**fields)
        self.values[s.id] = self.v.secret.fetch(s.id).value
        return s

    def update(self, secret_id: str, **fields: Any) -> None:
        self.v.secret.update(secret_id, **fields)
        self.values[secret_id] = self.v.secret.fetch(secret_id).value

    def snapshot(self) -> bytes:
        return self.path.read_bytes()

    def assert_intact(self) -> None:
        """The vault opens from disk, every record reads, and every acknowledged value is there."""
        with vault.open(self.path, PASSPHRASE) as again:
            for s in again.secret.list(take=100):
                again.secret.fetch(s.id)  # every value box still opens
            for sid, value in self.values.items():
                assert again.secret.fetch(sid).value == value, f"acknowledged write {sid} lost"


@pytest.fixture
def w(v: vault.Vault, vault_path: Path) -> Witness:
    return Witness(v, vault_path)


def item(**over: Any) -> dict[str, Any]:
    """A well-formed cloud list item (the fields the cloud returns), with ``over`` applied."""
    base: dict[str, Any] = {
        "id": "hostile00000000000000001",
        "alias": None,
        "name": "planted",
        "description": "",
        "blueprintId": None,
        "kind": "shared",
        "type": "plain",
        "config": None,
        "visibility": "private",
        "meta": None,
        "createdAt": 1_700_000_000_000,
        "updatedAt": 1_700_000_000_000,
    }
    base.update(over)
    return base


def raw_json_page(item_text: str) -> bytes:
    return b'{"items": [' + item_text.encode() + b"]}"


def on_first_list(reply: Reply) -> Script:
    """Answer the first list request with ``reply``, everything else honestly (an empty page after it)."""
    sent = [False]

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        if req.path.endswith("/list") and not sent[0]:
            sent[0] = True
            return reply
        return None

    return script


# --- 1. a hostile cloud cannot brick the vault ------------------------------------------------

BAD_STAMPS = [
    "-1",  # the reader refuses negative times: this once bricked the vault
    "1e30",  # escaped as a raw OverflowError... or a huge int the reader refuses
    "1e400",  # inf after JSON parsing
    "9223372036854775808",  # 2**63, one past the reader's range
    "1.5",  # not a whole millisecond
    "true",
    '"1700000000000"',
    "null",
    "[]",
]


@pytest.mark.parametrize("stamp", BAD_STAMPS)
@pytest.mark.parametrize("which", ["createdAt", "updatedAt"])
def test_a_bad_timestamp_in_a_listing_stops_the_sync_and_writes_nothing(
    v: vault.Vault, w: Witness, hostile: HostileCloud, stamp: str, which: str
) -> None:
    w.create(name="mine", value="local-value")
    w.create(name="personal", kind="personal", value="owner-only")
    run(v, hostile)  # an honest first sync: links saved
    before = w.snapshot()
    text = json.dumps(item())[:-1] + f', "{which}": {stamp}}}'
    hostile.answer(on_first_list(Reply(body=raw_json_page(text))))
    with pytest.raises(RemoteProtocolError) as info:
        run(v, hostile)
    # 1e400 is refused with the body (no double holds it); every other one names its field.
    assert which in info.value.message or (stamp == "1e400" and "JSON" in info.value.message)
    assert w.snapshot() == before  # the cloud is read before the vault is touched
    w.assert_intact()


@pytest.mark.parametrize("stamp", ["0", "1700000000000.0", "9223372036854775807"])
def test_timestamps_in_the_readers_range_are_pulled(
    v: vault.Vault, w: Witness, hostile: HostileCloud, stamp: str
) -> None:
    text = json.dumps(item())[:-1] + f', "createdAt": {stamp}, "updatedAt": {stamp}}}'
    hostile.answer(on_first_list(Reply(body=raw_json_page(text))))
    report = run(v, hostile, "pull")
    assert [c.remote_id for c in report.pulled] == ["hostile00000000000000001"] and report.ok
    assert v.secret.fetch("hostile00000000000000001").created_at == int(stamp.split(".")[0])
    w.assert_intact()


def test_a_bad_timestamp_on_the_fetch_after_a_push_stops_the_sync(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    a = w.create(name="a", value="va")

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        if req.path.endswith("/fetch"):
            status, _, payload = cloud.handle(req)
            return Reply(status, {**payload, "updatedAt": -5})
        return None

    hostile.answer(script)
    with pytest.raises(RemoteProtocolError):
        run(v, hostile, "push")
    w.assert_intact()
    # The link was never saved with the bad time; an honest cloud re-links the create by its marker.
    hostile.answer(None)
    report = run(v, hostile)
    assert report.ok and not report.created_remote
    assert [r["meta"][MARKER].split(":")[1] for r in hostile.cloud.secrets.values()] == [a.id]
    w.assert_intact()


@pytest.mark.parametrize(
    "rid",
    ["../../secret/list", "a/b", "a b", "x" * 129, "", "a?b", "%2e%2e", "\u0085"],
)
def test_a_cloud_id_that_is_not_a_plain_short_segment_is_refused(
    v: vault.Vault, w: Witness, hostile: HostileCloud, rid: str
) -> None:
    w.create(name="mine", value="local-value")
    before = w.snapshot()
    hostile.answer(on_first_list(Reply(body={"items": [item(id=rid)]})))
    with pytest.raises(RemoteProtocolError):
        run(v, hostile, "pull")
    assert w.snapshot() == before
    w.assert_intact()


def test_a_create_answered_with_a_path_breaking_id_is_refused(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    w.create(name="a", value="va")

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        if req.path.endswith("/create"):
            return Reply(body={"id": "../../secret/list"})
        return None

    hostile.answer(script)
    with pytest.raises(RemoteProtocolError):
        run(v, hostile, "push")
    assert hostile.count("/fetch") == 0  # the id never went into a path
    w.assert_intact()


def test_an_oversized_marker_is_not_kept_in_the_link(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    # meta stays under the 64 KiB cap, but a marker this long would not fit the record's link.
    planted = item(meta={MARKER: "m" * 65_500})
    hostile.answer(on_first_list(Reply(body={"items": [planted]})))
    report = run(v, hostile, "pull")
    assert report.ok and len(report.pulled) == 1
    w.assert_intact()


def test_the_record_cap_holds_when_pulling(
    v: vault.Vault, w: Witness, hostile: HostileCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault import _format

    monkeypatch.setattr(_format, "MAX_RECORDS", 5)
    for i in range(3):
        w.create(name=f"mine-{i}", value=f"v{i}")
    run(v, hostile, "push")
    before = w.snapshot()
    for i in range(3):
        hostile.cloud.add(name=f"planted-{i}")
    with pytest.raises(RemoteProtocolError) as info:
        run(v, hostile, "pull")
    assert "5" in info.value.message
    assert w.snapshot() == before  # refused before the first write, not half-way through
    w.assert_intact()
    # Within the cap, the same pull goes through.
    hostile.cloud.remove(next(r["id"] for r in hostile.cloud.secrets.values() if r["name"] == "planted-0"))
    assert len(run(v, hostile, "pull").pulled) == 2
    w.assert_intact()


# --- 2. sync never sends a value the user did not put into a shared secret ------------------

CANARY = "PERSONAL-VALUE-never-upload-7f3a"


def _personal_pushed(v: vault.Vault, w: Witness, h: HostileCloud) -> tuple[str, str]:
    """A personal secret holding a value, pushed (without it) and linked: (local id, cloud id)."""
    p = w.create(name="my login", kind="personal", type="bearer", value=CANARY)
    w.create(name="team key", value="shared-value")
    assert run(v, h).ok
    (rid,) = [r["id"] for r in h.cloud.secrets.values() if r["name"] == "my login"]
    assert h.cloud.secrets[rid]["kind"] == "personal"
    return p.id, rid


def test_a_kind_flip_in_the_cloud_never_uploads_a_personal_value(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    pid, rid = _personal_pushed(v, w, hostile)
    hostile.cloud.edit(rid, kind="shared")  # the cloud turns the secret shared...
    run(v, hostile)
    w.update(pid, description="edited here")  # ... and a later local edit is pushed
    run(v, hostile)
    hostile.cloud.remove(rid)  # then the cloud "loses" it, and the user puts the vault's copy back
    run(v, hostile, prefer="local")
    assert CANARY.encode() not in hostile.bodies()
    assert all(r["value"] != CANARY for r in hostile.cloud.secrets.values())
    w.assert_intact()


def test_a_kind_flip_is_a_conflict_that_changes_neither_side(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    pid, rid = _personal_pushed(v, w, hostile)
    hostile.cloud.edit(rid, kind="shared")
    for direction in ("both", "pull", "push"):
        report = run(v, hostile, direction)
        assert [(c.reason, c.local_id, c.remote_id, c.resolution) for c in report.conflicts] == [
            ("kind-changed", pid, rid, None)
        ]
        assert not report.pulled and not report.updated_remote
    assert v.secret.fetch(pid).kind == "personal"
    assert CANARY.encode() not in hostile.bodies()
    w.assert_intact()


def test_prefer_local_puts_the_personal_kind_back(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    _, rid = _personal_pushed(v, w, hostile)
    hostile.cloud.edit(rid, kind="shared")
    report = run(v, hostile, prefer="local")
    assert [(c.reason, c.resolution) for c in report.conflicts] == [("kind-changed", "local")]
    assert hostile.cloud.secrets[rid]["kind"] == "personal" and hostile.cloud.secrets[rid]["value"] is None
    assert run(v, hostile) == SyncReport()
    assert CANARY.encode() not in hostile.bodies()
    w.assert_intact()


def test_prefer_remote_takes_the_cloud_kind_but_holds_the_value_back(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    pid, rid = _personal_pushed(v, w, hostile)
    hostile.cloud.edit(rid, kind="shared")
    report = run(v, hostile, prefer="remote")
    assert [(c.reason, c.resolution) for c in report.conflicts] == [("kind-changed", "remote")]
    got = v.secret.fetch(pid)
    assert (got.kind, got.value) == ("shared", CANARY)  # the cloud's fields; the value stays, held back
    assert run(v, hostile) == SyncReport()
    w.update(pid, description="edited here")
    assert [c.local_id for c in run(v, hostile).updated_remote] == [pid]
    # The cloud deletes it; the user settles for the vault's copy: re-created, still without the value.
    hostile.cloud.remove(rid)
    report = run(v, hostile, prefer="local")
    assert [(c.reason, c.resolution) for c in report.conflicts] == [("deleted-remotely", "local")]
    (new_rid,) = [c.remote_id for c in report.created_remote]
    assert hostile.cloud.secrets[new_rid]["value"] is None
    assert run(v, hostile) == SyncReport()
    assert CANARY.encode() not in hostile.bodies()
    w.assert_intact()
    # A value the user sets from now on is theirs to share: the hold ends with the old value.
    w.update(pid, value="chosen-to-share")
    assert [c.local_id for c in run(v, hostile).updated_remote] == [pid]
    assert hostile.cloud.secrets[new_rid]["value"] == "chosen-to-share"
    assert CANARY.encode() not in hostile.bodies()
    w.assert_intact()


def test_an_alias_clash_settled_for_the_cloud_holds_a_personal_value_back(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    # A cloud secret claims the alias of a personal secret that was never pushed.
    hostile.cloud.add(name="planted", kind="shared", alias="my-login")
    p = w.create(name="my login", kind="personal", value=CANARY, alias="my-login")
    report = run(v, hostile, prefer="remote")
    assert [(c.reason, c.resolution) for c in report.conflicts] == [("alias-taken", "remote")]
    assert (v.secret.fetch(p.id).kind, v.secret.fetch(p.id).value) == ("shared", CANARY)
    w.update(p.id, description="edited here")
    run(v, hostile)
    assert CANARY.encode() not in hostile.bodies()
    w.assert_intact()


def test_a_cloud_turning_a_shared_secret_personal_is_a_conflict_too(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    s = w.create(name="team key", value="shared-value")
    run(v, hostile)
    (rid,) = hostile.cloud.secrets
    hostile.cloud.edit(rid, kind="personal")
    report = run(v, hostile)
    assert [(c.reason, c.local_id) for c in report.conflicts] == [("kind-changed", s.id)]
    report = run(v, hostile, prefer="remote")
    assert (v.secret.fetch(s.id).kind, v.secret.fetch(s.id).value) == ("personal", "shared-value")
    assert run(v, hostile) == SyncReport()
    w.assert_intact()


def test_the_cli_explains_a_kind_changed_conflict(
    v: vault.Vault, w: Witness, hostile: HostileCloud, vault_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vault.cli._exit_codes import EXIT_UNSETTLED
    from vault.cli._parser import build_parser
    from vault.cli._sync import sync_command

    _, rid = _personal_pushed(v, w, hostile)
    hostile.cloud.edit(rid, kind="shared")
    monkeypatch.setenv("CHATBOTKIT_API_TOKEN", TOKEN)
    args = build_parser().parse_args(["sync", "--base-url", hostile.url])
    assert sync_command(args, lambda: vault.open(vault_path, PASSPHRASE)) == EXIT_UNSETTLED
    assert "kind" in capsys.readouterr().out
    w.assert_intact()


# --- 3. what a response may cost: size, time, parsing ---------------------------------------


def _peak_memory(fn: Callable[[], Any]) -> tuple[int, BaseException | None]:
    """Peak Python allocation (bytes) while ``fn`` runs, and what it raised."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        error: BaseException | None = None
    except BaseException as exc:  # handed back to the test
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, error


def _spaces(total: int, tail: bytes = b'{"items": []}') -> Iterator[bytes]:
    """A valid JSON body padded with ``total`` bytes of whitespace, streamed in 1 MiB chunks."""
    chunk = b" " * (1 << 20)
    for _ in range(total // len(chunk)):
        yield chunk
    yield tail


def test_a_declared_length_past_the_cap_is_refused_before_reading(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    from vault.sync._client import MAX_BODY

    w.create(name="mine", value="local-value")
    before = w.snapshot()
    hostile.answer(lambda req, cloud: Reply(body=_spaces(4 << 20), length=256 << 20))
    started = time.monotonic()
    with pytest.raises(RemoteProtocolError) as info:
        run(v, hostile)
    assert time.monotonic() - started < 2.0 and hostile.count("/list") == 1  # refused, not retried
    assert str(MAX_BODY) in info.value.message or "MiB" in info.value.message
    assert w.snapshot() == before
    w.assert_intact()


def test_a_body_without_a_length_is_cut_at_the_cap(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    from vault.sync._client import MAX_BODY

    w.create(name="mine", value="local-value")
    before = w.snapshot()
    hostile.answer(lambda req, cloud: Reply(body=_spaces(MAX_BODY + (8 << 20)), length=-1))
    peak, error = _peak_memory(lambda: run(v, hostile))
    assert isinstance(error, RemoteProtocolError), error
    assert peak < MAX_BODY + (16 << 20), f"{peak / 2**20:.0f} MiB held for a body capped at {MAX_BODY >> 20} MiB"
    assert hostile.count("/list") == 1
    assert w.snapshot() == before
    w.assert_intact()


def test_the_largest_legitimate_page_still_fits_the_cap(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    # 100 items, each with meta, config and description at the vault's 64 KiB limits: the biggest honest page.
    big = "x" * ((64 << 10) - 64)
    for i in range(100):
        hostile.cloud.add(name=f"big-{i}", meta={"m": big}, config={"c": big}, description="d" * (64 << 10))
    report = run(v, hostile, "pull")
    assert len(report.pulled) == 100 and report.ok
    w.assert_intact()


def test_an_error_body_is_read_only_up_to_its_cap(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    w.create(name="mine", value="local-value")
    hostile.answer(lambda req, cloud: Reply(503, body=_spaces(48 << 20, b'{"message": "busy"}'), length=-1))
    peak, error = _peak_memory(lambda: run(v, hostile, max_retries=1))
    assert isinstance(error, vault.sync.RemoteUnavailableError), error
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB held for an error body"
    w.assert_intact()


def test_a_body_that_trickles_is_cut_at_the_deadline(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    w.create(name="mine", value="local-value")
    before = w.snapshot()
    body = b'{"items": []}' + b" " * 1000
    # One byte every 0.1 s: no single read ever waits long enough to time out.
    hostile.answer(lambda req, cloud: Reply(body=body, trickle=0.1))
    started = time.monotonic()
    with pytest.raises(vault.sync.RemoteUnavailableError):
        run(v, hostile, max_total=1.5, timeout=1.0, max_retries=0)
    assert time.monotonic() - started < 2.5
    assert w.snapshot() == before
    w.assert_intact()


def test_headers_that_trickle_are_cut_at_the_deadline(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    w.create(name="mine", value="local-value")
    hostile.answer(lambda req, cloud: Reply(body={"items": []}, headers={"x-pad": "p" * 2000}, head_trickle=0.1))
    started = time.monotonic()
    with pytest.raises(vault.sync.RemoteUnavailableError):
        run(v, hostile, max_total=1.5, timeout=1.0, max_retries=0)
    assert time.monotonic() - started < 2.5
    w.assert_intact()


def test_a_compressed_body_is_refused_unread(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    import gzip

    bomb = gzip.compress(b"[" + b" " * (200 << 20) + b"]", compresslevel=9)  # 200 MiB in about 200 KiB
    w.create(name="mine", value="local-value")
    hostile.answer(lambda req, cloud: Reply(body=bomb, headers={"content-encoding": "gzip"}))
    peak, error = _peak_memory(lambda: run(v, hostile))
    assert isinstance(error, RemoteProtocolError), error
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB held for a {len(bomb) >> 10} KiB body"
    # It was asked not to compress at all.
    assert all(s.headers.get("accept-encoding") == "identity" for s in hostile.seen)
    w.assert_intact()


def test_a_huge_integer_literal_is_refused_without_parsing_it(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    import sys

    # Python 3.11 caps int() at 4300 digits by default, but 3.10 does not and a program may lift the
    # cap: int parsing is quadratic (a 1,000,000-digit literal takes about 9 s, a 32 MiB one hours).
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        w.create(name="mine", value="local-value")
        body = b'{"items": [], "n": ' + b"7" * 1_000_000 + b"}"
        hostile.answer(lambda req, cloud: Reply(body=body))
        started = time.monotonic()
        with pytest.raises(RemoteProtocolError):
            run(v, hostile)
        assert time.monotonic() - started < 2.0
    finally:
        sys.set_int_max_str_digits(old)
    w.assert_intact()


@pytest.mark.parametrize(
    "number",
    [b"1e400", b"-1e400", b"123456789012345678901", b"-" + b"9" * 25],
)
def test_numbers_json_or_the_vault_cannot_carry_are_refused(
    v: vault.Vault, w: Witness, hostile: HostileCloud, number: bytes
) -> None:
    w.create(name="mine", value="local-value")
    hostile.answer(on_first_list(Reply(body=b'{"items": [], "n": ' + number + b"}")))
    with pytest.raises(RemoteProtocolError):
        run(v, hostile)
    w.assert_intact()


# --- 4. plain http only to real loopback -----------------------------------------------------

LOOKALIKES = [
    "localhost.localdomain",  # resolved by /etc/hosts or DNS: can point anywhere
    "ip6-localhost",
    "LOCALHOST.LOCALDOMAIN",
    "localhost.",
    "localhost.example.com",
    "127.0.0.1.nip.io",
    "127.1",  # inet_aton shorthands: whatever the resolver makes of them, they are not literals we accept
    "0x7f.0.0.1",
    "2130706433",
    "[::ffff:127.0.0.1]",
    "[::1%25lo]",
    "0.0.0.0",
]


@pytest.mark.parametrize("host", LOOKALIKES)
def test_plain_http_is_refused_to_names_that_only_look_like_loopback(host: str) -> None:
    with pytest.raises(vault.InvalidRequestError) as info:
        ChatBotKitRemote(TOKEN, f"http://{host}:8080")
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "[::1]", "localhost", "LOCALHOST"])
def test_plain_http_is_allowed_to_loopback_addresses_and_localhost(host: str) -> None:
    with ChatBotKitRemote(TOKEN, f"http://{host}:8080") as r:
        assert r.base_url.startswith("http://")


def test_the_stand_in_keeps_accepting_loopback_names_in_its_host_header() -> None:
    # DNS-rebinding defence: a Host header naming this machine is fine, whatever resolves it.
    from vault._net import is_loopback, is_loopback_address, is_loopback_name

    for name in ("localhost", "localhost.localdomain", "ip6-localhost", "LOCALHOST", "127.0.0.1", "[::1]", "::1"):
        assert is_loopback_name(name) and is_loopback(name), name
    for name in ("example.com", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1", ""):
        assert not is_loopback_name(name), name
    for name in ("localhost.localdomain", "ip6-localhost"):
        assert not is_loopback_address(name), name
    for name in ("localhost", "127.0.0.1", "::1", "[::1]"):
        assert is_loopback_address(name), name


# --- 5. everything else a cloud can answer -----------------------------------------------------

WRONG_SHAPES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b'"items"',
    b"<html>maintenance</html>",
    b'{"items": {}}',
    b'{"items": null}',
    b'{"items": [1, 2]}',
    b'{"items": [[]]}',
    b'{"items": [{"id": 5}]}',
    b'{"items": [{"id": null}]}',
    b'{"items": [{"name": "no id"}]}',
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "name": 7}]}',
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "kind": "team"}]}',
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "meta": []}]}',
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "alias": "UPPER"}]}',
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "name": "\\ud800"}]}',
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "config": {"a": '
    + b'{"b": ' * 20
    + b"1"
    + b"}" * 21
    + b"}]}",
    b'{"items": [{"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1, "description": "'
    + b"d" * (70 << 10)
    + b'"}]}',
    b'{"items": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"items": [], "items": "twice"}',
    b"\xff\xfe{}",
]


@pytest.mark.parametrize("body", WRONG_SHAPES, ids=range(len(WRONG_SHAPES)))
def test_a_listing_of_the_wrong_shape_stops_the_sync_and_writes_nothing(
    v: vault.Vault, w: Witness, hostile: HostileCloud, body: bytes
) -> None:
    w.create(name="mine", value="local-value")
    w.create(name="personal", kind="personal", value="owner-only")
    run(v, hostile)
    before = w.snapshot()
    hostile.answer(on_first_list(Reply(body=body)))
    with pytest.raises(RemoteProtocolError):
        run(v, hostile)
    assert w.snapshot() == before
    w.assert_intact()


def test_a_cursor_that_never_advances_is_stopped(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    w.create(name="mine", value="local-value")
    page = {"items": [item()], "cursor": "hostile00000000000000001"}
    hostile.answer(lambda req, cloud: Reply(body=page) if req.path.endswith("/list") else None)
    with pytest.raises(RemoteProtocolError):
        run(v, hostile)
    assert hostile.count("/list") == 2
    w.assert_intact()


def test_a_cursor_that_loops_back_is_stopped(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    w.create(name="mine", value="local-value")
    pages = {
        None: {"items": [item(id="hostile00000000000000001")], "cursor": "a"},
        "a": {"items": [item(id="hostile00000000000000002")], "cursor": "b"},
        "b": {"items": [item(id="hostile00000000000000001")], "cursor": "a"},  # back to the start
    }

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        if req.path.endswith("/list"):
            return Reply(body=pages.get(req.query.get("cursor"), {"items": []}))
        return None

    hostile.answer(script)
    with pytest.raises(RemoteProtocolError):
        run(v, hostile)
    w.assert_intact()


def test_a_cursor_into_nowhere_ends_the_listing_and_deletes_nothing(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    # The listing "ends" early; every secret it left out is fetched before anything counts as gone.
    ids = [w.create(name=f"s{i}", value=f"v{i}").id for i in range(5)]
    run(v, hostile)

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        if req.path.endswith("/list"):
            first = sorted(cloud.secrets.values(), key=lambda r: (r["createdAt"], r["id"]))[0]
            answer = {"items": [{k: x for k, x in first.items() if k != "value"}], "cursor": "nowhere"}
            return Reply(body=answer if "cursor" not in req.query else {"items": []})
        return None

    hostile.answer(script)
    report = run(v, hostile)
    assert report.ok and not report.deleted_local
    assert hostile.count("/fetch") >= 4
    assert [v.secret.fetch(i).value for i in ids] == [f"v{i}" for i in range(5)]
    w.assert_intact()


def test_a_cloud_that_says_everything_is_gone_deletes_only_what_it_already_has(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    shared = w.create(name="team key", value="shared-value")
    personal = w.create(name="my login", kind="personal", value="owner-only")
    run(v, hostile)
    edited = w.create(name="new here", value="never pushed")
    # Empty listing, and every fetch answers 404: "deleted".
    hostile.answer(
        lambda req, cloud: Reply(body={"items": []})
        if req.path.endswith("/list")
        else Reply(404, {"message": "Secret not found", "code": "NOT_FOUND"})
        if req.path.endswith("/fetch")
        else None
    )
    report = run(v, hostile, "pull")
    assert [c.local_id for c in report.deleted_local] == [shared.id]  # its value is in the cloud already
    assert [(c.reason, c.local_id) for c in report.conflicts] == [("deleted-remotely", personal.id)]
    del w.values[shared.id]  # the one deletion the cloud may cause: documented
    assert v.secret.fetch(personal.id).value == "owner-only" and v.secret.fetch(edited.id).value == "never pushed"
    w.assert_intact()


def test_a_missing_secret_whose_fetch_keeps_failing_stops_the_sync_before_any_write(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    w.create(name="mine", value="local-value")
    run(v, hostile)
    w.create(name="second", value="v2")
    before, writes = w.snapshot(), len(hostile.cloud.writes())
    hostile.answer(
        lambda req, cloud: Reply(body={"items": []})
        if req.path.endswith("/list")
        else Reply(500, {"message": "oops"})
        if req.path.endswith("/fetch")
        else None
    )
    with pytest.raises(vault.sync.RemoteUnavailableError):
        run(v, hostile)
    assert w.snapshot() == before and len(hostile.cloud.writes()) == writes
    w.assert_intact()


RETRY_AFTER_ABUSE = ["100000", "1e400", "inf", "-inf", "nan", "-1", "junk", "Wed, 21 Oct 2999 07:28:00 GMT", "0" * 5000]


@pytest.mark.parametrize("value", RETRY_AFTER_ABUSE, ids=range(len(RETRY_AFTER_ABUSE)))
def test_429_with_any_retry_after_is_bounded(v: vault.Vault, w: Witness, hostile: HostileCloud, value: str) -> None:
    w.create(name="mine", value="local-value")
    sleeps = Sleeps()
    hostile.answer(lambda req, cloud: Reply(429, {"message": "slow down"}, headers={"retry-after": value}))
    with pytest.raises(vault.sync.RemoteUnavailableError) as info:
        run(v, hostile, sleep=sleeps, max_retries=3, max_backoff=1.0)
    assert info.value.status == 429
    assert len(sleeps) <= 3 and all(0 <= s <= 1.0 for s in sleeps)
    assert hostile.count("/list") <= 4
    w.assert_intact()


def test_429_forever_with_retry_after_zero_is_bounded_by_retries_and_time(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    w.create(name="mine", value="local-value")
    hostile.answer(lambda req, cloud: Reply(429, {"message": "slow down"}, headers={"retry-after": "0"}))
    started = time.monotonic()
    with pytest.raises(vault.sync.RemoteUnavailableError):
        run(v, hostile, sleep=time.sleep, max_retries=50, max_total=1.0)
    assert time.monotonic() - started < 3.0
    w.assert_intact()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_token_stays_home(
    v: vault.Vault, w: Witness, hostile: HostileCloud, status: int
) -> None:
    other = HostileCloud()
    handler = type("Handler", (_Handler,), {"hostile": other})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        target = f"http://127.0.0.1:{server.server_address[1]}/api/v1/secret/list"
        w.create(name="mine", value="local-value")
        hostile.answer(lambda req, cloud: Reply(status, {"message": "moved"}, headers={"location": target}))
        with pytest.raises(vault.sync.RemoteError) as info:
            run(v, hostile)
        assert info.value.status == status
        assert other.seen == []  # nothing, so no token, went to the second host
    finally:
        server.shutdown()
        server.server_close()
    w.assert_intact()


BROKEN_HTTP = [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"items\": [",  # cut short
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 9\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"x-h: " + b"a" * (200 << 10) + b"\r\n\r\n{}",
    b"",
]


@pytest.mark.parametrize("raw", BROKEN_HTTP, ids=range(len(BROKEN_HTTP)))
def test_broken_http_is_a_network_error_and_writes_nothing(
    v: vault.Vault, w: Witness, hostile: HostileCloud, raw: bytes
) -> None:
    w.create(name="mine", value="local-value")
    before = w.snapshot()
    hostile.answer(lambda req, cloud: Reply(raw=raw))
    with pytest.raises(vault.sync.RemoteUnavailableError):
        run(v, hostile, max_retries=1)
    assert w.snapshot() == before
    w.assert_intact()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_401_half_way_keeps_what_was_done(
    v: vault.Vault, w: Witness, hostile: HostileCloud, concurrency: int
) -> None:
    ids = [w.create(name=f"s{i}", value=f"v{i}").id for i in range(4)]
    creates = [0]

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        if req.path.endswith("/create"):
            creates[0] += 1
            if creates[0] == 3:
                return Reply(401, {"message": f"bad token {TOKEN}", "code": "NOT_AUTHENTICATED"})
        return None

    hostile.answer(script)
    with pytest.raises(vault.sync.RemoteAuthError) as info:
        run(v, hostile, "push", concurrency=concurrency)
    assert TOKEN not in str(info.value)
    hostile.answer(None)
    report = run(v, hostile, "push")
    # Those that landed were linked, not re-sent: one at a time, the two before the 401; four at
    # once, the three beside it (the writes in flight finish and are recorded before it is raised).
    assert report.ok and len(report.created_remote) == (2 if concurrency == 1 else 1)
    assert sorted(r["name"] for r in hostile.cloud.secrets.values()) == [f"s{i}" for i in range(4)]
    assert [v.secret.fetch(i).value for i in ids] == [f"v{i}" for i in range(4)]
    w.assert_intact()


def test_a_planted_marker_of_ours_cannot_redirect_a_personal_value(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    # The cloud plants a shared secret carrying our marker for a personal record, to be "adopted".
    p = w.create(name="my login", kind="personal", value=CANARY)
    w.create(name="team key", value="shared-value")
    run(v, hostile, "push")
    ref = next(r["meta"][MARKER] for r in hostile.cloud.secrets.values() if r["name"] == "my login")
    for rid in list(hostile.cloud.secrets):
        if hostile.cloud.secrets[rid]["name"] == "my login":
            hostile.cloud.remove(rid)
    hostile.cloud.add(name="my login", kind="shared", meta={MARKER: ref})
    for prefer in (None, "local", "remote"):
        run(v, hostile, prefer=prefer)
        w.update(p.id, description=f"edit {prefer}")
    run(v, hostile, prefer="local")
    assert CANARY.encode() not in hostile.bodies()
    w.assert_intact()


def test_altered_metadata_is_pulled_but_never_a_value(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    # What the cloud may do (documented): change the fields of a secret the vault has not changed.
    s = w.create(name="team key", value="shared-value", type="oauth", config={"clientSecret": "cs-local"})
    run(v, hostile)
    (rid,) = hostile.cloud.secrets
    hostile.cloud.edit(rid, name="renamed by the cloud", config={"clientSecret": "cs-cloud", "extra": 1})
    report = run(v, hostile)
    assert [c.local_id for c in report.pulled] == [s.id]
    got = v.secret.fetch(s.id)
    assert got.name == "renamed by the cloud" and got.value == "shared-value"
    assert got.config == {"clientSecret": "cs-local", "extra": 1}  # the masked clientSecret is never pulled
    w.assert_intact()


def test_an_answer_too_slow_to_start_is_cut_at_the_deadline(v: vault.Vault, w: Witness, hostile: HostileCloud) -> None:
    w.create(name="mine", value="local-value")

    def script(req: Request, cloud: FakeCloud) -> Reply | None:
        hostile.stop.wait(5.0)  # says nothing at all
        return Reply(body={"items": []})

    hostile.answer(script)
    started = time.monotonic()
    with pytest.raises(vault.sync.RemoteUnavailableError):
        run(v, hostile, max_total=1.0, timeout=30.0)
    assert time.monotonic() - started < 2.0
    w.assert_intact()


def test_a_first_sync_against_a_malformed_listing_writes_nothing_at_all(
    v: vault.Vault, w: Witness, hostile: HostileCloud
) -> None:
    # Not even sync's own settings: the listing is checked before the vault is touched.
    w.create(name="mine", value="local-value")
    before = w.snapshot()
    hostile.answer(on_first_list(Reply(body={"items": [item(createdAt=-1)]})))
    with pytest.raises(RemoteProtocolError):
        run(v, hostile)
    assert w.snapshot() == before
    w.assert_intact()


class _RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def test_the_stand_in_sends_one_steps_writes_as_one_and_keeps_their_bytes() -> None:
    # uvicorn writes an answer's head and body apart; held to the loop's next turn, they leave as
    # one send. Nothing is lost, reordered or written after close, and a close sends what is held.
    async def run() -> list[bytes]:
        real = _RecordingTransport()
        held = _http._CoalescingTransport(real, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        held.write(b"")
        held.write(bytearray(b"{}"))
        assert real.writes == []
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        held.write(b"a")
        held.write(b"b" * (1 << 16))  # the limit: sent at once, not at the next turn
        assert real.writes[-1] == b"a" + b"b" * (1 << 16)
        held.write(b"last")
        held.close()
        assert real.writes[-1] == b"last" and real.closed
        held.write(b"after close")
        await asyncio.sleep(0)
        return real.writes

    writes = asyncio.run(run())
    assert writes[-1] == b"last" and len(writes) == 3

    async def aborted() -> list[bytes]:
        real = _RecordingTransport()
        held = _http._CoalescingTransport(real, asyncio.get_running_loop())
        held.write(b"dropped")
        held.abort()
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(aborted()) == []
