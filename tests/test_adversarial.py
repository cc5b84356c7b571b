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
* ``TestOneValidationPath``: hostile input at every entry point at once (API, stand-in, import,
  the records seam under sync).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vault
from tests.conftest import FAST, PASSPHRASE
from tests.test_cli import SECRETS, cli, error_line, ok
from vault import _asgi, _http
from vault._api import SecretApi
from vault._http import StandInServer
from vault._vault import raw_records
from vault.cli import _formats as formats


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
