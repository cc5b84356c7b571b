"""Adversarial tests, one class per trust boundary: every byte from outside the owner is hostile.

Each test plays an attacker at one boundary and asserts what SECURITY.md's trust-boundary
table promises: the vault still opens, every acknowledged write is intact, nothing secret
leaks, and the refusal is a typed ``VaultError`` with a code.

* ``TestFileOnDisk``: other local users and processes that can reach the vault's directory.
* ``TestStandInClient``: a local process that talks to the stand-in (``cbk-vault serve``).
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
from vault import _asgi, _http
from vault._api import SecretApi
from vault._http import StandInServer
from vault._vault import raw_records
from vault.cli import _formats as formats


def _intact(path: Path, expected: dict[str, str | None]) -> None:
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
        _intact(made, {"kept": "k"})

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the lock file to another user")
    def test_a_lock_file_owned_by_another_user_is_refused(self, made: Path) -> None:
        lock = made.with_name(made.name + ".lock")
        os.chown(lock, 65534, 65534)
        with pytest.raises(vault.InsecureFileError) as info:
            vault.open(made, PASSPHRASE)
        assert "owned by another user" in info.value.message
        os.chown(lock, 0, 0)
        _intact(made, {"kept": "k"})

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
        _intact(made, {"kept": "k"})


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
