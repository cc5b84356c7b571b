"""`serve`: the command (token policy, binding, start lines, clean stop) and the in-process server."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from tests.test_server import TOKEN, start_server, stop_server
from vault._http import StandInServer
from vault.cli._parser import build_parser
from vault.cli._serve import serve_command
from vault.testing import memory_vault


def test_serves_an_existing_vault_file_with_the_passphrase_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        sid = v.secret.create(name="Seeded", alias="seeded", type="bearer", value="tok-seeded").id
    proc, base, token = start_server("--path", str(path), env={"CBK_VAULT_PASSPHRASE": PASSPHRASE})
    try:
        assert token.startswith("sk-local-") and len(token) > 20  # the printed default token
        # A real vault: only the printed token opens it ...
        r = httpx.get(f"{base}/v1/secret/@seeded/fetch", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["id"] == sid
        assert "tok-seeded" not in r.text
        # ... any other, or none, is 401.
        assert httpx.get(f"{base}/v1/secret/list", headers={"authorization": "Bearer whatever"}).status_code == 401
        assert httpx.get(f"{base}/v1/secret/list").status_code == 401
        # Writes land in the file: another handle sees them.
        created = httpx.post(
            f"{base}/api/v1/secret/create",
            json={"name": "Via HTTP", "value": "v"},
            headers={"authorization": f"Bearer {token}"},
        ).json()["id"]
    finally:
        err = stop_server(proc)
    assert "tok-seeded" not in err and token not in err
    with vault.open(path, PASSPHRASE) as v:
        assert v.secret.fetch(created).value == "v"


def test_token_from_the_environment_is_the_only_one_accepted() -> None:
    proc, base, printed = start_server("--ephemeral", env={"CBK_VAULT_SERVE_TOKEN": TOKEN})
    try:
        assert printed == "(configured)"
        url = f"{base}/v1/secret/list"
        assert httpx.get(url, headers={"authorization": "Bearer other"}).status_code == 401
        assert httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        stop_server(proc)


def test_ephemeral_vault_directory_is_removed_on_sigterm() -> None:
    proc, base, _ = start_server("--ephemeral", "--verbose")
    try:
        httpx.get(f"{base}/v1/secret/list?meta.secretish=hunter2", headers={"authorization": "Bearer t"})
    finally:
        err = stop_server(proc)
    served = err.split(" for ", 1)[1].split(" at ", 1)[0]
    assert not Path(served).exists() and not Path(served).parent.exists()
    assert "GET /v1/secret/list" in err and "hunter2" not in err  # --verbose logs the path only


def test_non_loopback_bind_without_a_token_is_refused() -> None:
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0"])
    err = io.StringIO()
    opened: list[bool] = []

    def open_vault() -> vault.Vault:
        opened.append(True)
        raise AssertionError("must not open the vault")

    assert serve_command(args, open_vault, stdout=io.StringIO(), stderr=err) == 2
    assert "--token" in err.getvalue() and not opened


def test_serve_command_in_process_prints_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--json", "serve", "--token", TOKEN])  # --json: the CLI's global option
    out, err = io.StringIO(), io.StringIO()
    handle = vault.init(tmp_path / "v.cbkv", PASSPHRASE, kdf=FAST)
    statuses: list[int] = []
    before = signal.getsignal(signal.SIGTERM)

    def poke() -> None:
        # serve_command must run in the main thread (it installs a SIGTERM handler); drive it from here.
        try:
            # Generous bounds: a loaded machine only delays the start line and the answer.
            deadline = time.monotonic() + 120
            while not out.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            start = json.loads(out.getvalue().splitlines()[0])
            r = httpx.get(
                f"{start['baseUrl']}/v1/secret/list", headers={"authorization": f"Bearer {TOKEN}"}, timeout=60
            )
            statuses.append(r.status_code)
        finally:
            # Even when the poke failed, or the server would never stop. Only once serve_command's
            # handler is in: before that, SIGTERM would end the whole test run.
            if signal.getsignal(signal.SIGTERM) is not before:
                os.kill(os.getpid(), signal.SIGTERM)

    poker = threading.Thread(target=poke)
    poker.start()
    code = serve_command(args, lambda: handle, stdout=out, stderr=err)
    poker.join()
    assert code == 0 and statuses == [200]
    assert json.loads(out.getvalue().splitlines()[0])["token"] == "(configured)"
    assert handle.closed  # the command closes the vault it opened
    assert signal.getsignal(signal.SIGTERM) is before  # and puts the old handler back


def test_port_in_use_is_a_clean_error() -> None:
    with memory_vault() as v, StandInServer(v) as running:
        args = build_parser().parse_args(["serve", "--port", str(running.port)])
        err = io.StringIO()
        other = memory_vault()
        assert serve_command(args, lambda: other, stdout=io.StringIO(), stderr=err) == 1
        assert "cannot bind" in err.getvalue() and other.closed


@pytest.mark.skipif(
    shutil.which("cbk-vault") is None and not Path(sys.executable).with_name("cbk-vault").exists(),
    reason="cbk-vault script not installed",
)
def test_cbk_vault_serve_subcommand_end_to_end(tmp_path: Path) -> None:
    """`cbk-vault serve` as the issue names it, when the CLI has registered the hook."""
    script = Path(sys.executable).with_name("cbk-vault")
    help_text = subprocess.run([str(script), "serve", "--help"], capture_output=True, text=True, timeout=30)
    if help_text.returncode != 0 or "--ephemeral" not in help_text.stdout:
        pytest.skip("the CLI does not register `serve` yet")
    proc = subprocess.Popen(
        [str(script), "serve", "--ephemeral"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().split("=", 1)[1]
        proc.stdout.readline()
        r = httpx.post(f"{base}/api/v1/secret/create", json={"name": "cli"}, headers={"authorization": "Bearer x"})
        assert r.status_code == 200 and set(r.json()) == {"id"}
    finally:
        stop_server(proc)


# --- the in-process server over a vault seeded through the core API ----------------------------


def test_local_personal_value_is_hidden_and_unusable_through_the_stand_in() -> None:
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        # The core lets a personal secret hold its owner's value; the stand-in applies the cloud rule.
        pid = v.secret.create(kind="personal", type="bearer", value="own-personal-value").id
        h = {"authorization": f"Bearer {TOKEN}"}
        r = httpx.get(f"{s.base_url}/v1/secret/{pid}/fetch", headers=h)
        assert r.status_code == 200 and "own-personal-value" not in r.text
        assert httpx.post(f"{s.base_url}/v1/secret/{pid}/revoke", json={}, headers=h).status_code == 409
        mint = httpx.post(f"{s.base_url}/v1/secret/{pid}/mint", json={}, headers=h).json()
        # The platform resolves the value before the type: a personal secret has none without a contact.
        assert mint["error"] == "authorization_required" and "url" not in mint
        assert "own-personal-value" not in json.dumps(mint)


def test_masked_client_secret_sent_back_keeps_the_stored_one() -> None:
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        sid = v.secret.create(type="oauth", config={"clientId": "a", "clientSecret": "real-cs"}).id
        h = {"authorization": f"Bearer {TOKEN}"}
        shown = httpx.get(f"{s.base_url}/v1/secret/{sid}/fetch", headers=h).json()["config"]
        shown["scope"] = "read"
        assert httpx.post(f"{s.base_url}/v1/secret/{sid}/update", json={"config": shown}, headers=h).status_code == 200
        assert v.secret.fetch(sid).config == {"clientId": "a", "clientSecret": "real-cs", "scope": "read"}
        # Turning a shared secret personal clears its value (personal secrets hold none).
        httpx.post(f"{s.base_url}/v1/secret/{sid}/update", json={"kind": "personal"}, headers=h)
        assert v.secret.fetch(sid).value is None


def test_blueprint_filter_pages_over_matching_rows() -> None:
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        with v.batch():
            ids = [v.secret.create(name=f"n{i}", blueprint_id="bp1" if i % 4 == 0 else None).id for i in range(260)]
        wanted = [sid for i, sid in enumerate(ids) if i % 4 == 0]
        h = {"authorization": f"Bearer {TOKEN}"}
        page = httpx.get(
            f"{s.base_url}/v1/secret/list", params={"blueprintId": "bp1", "take": 10, "order": "asc"}, headers=h
        )
        got = [i["id"] for i in page.json()["items"]]
        asc = [sid for sid in sorted(wanted, key=lambda x: (v.secret.fetch(x).created_at, x))]
        assert got == asc[:10]
        rest = httpx.get(
            f"{s.base_url}/v1/secret/list",
            params={"blueprintId": "bp1", "order": "asc", "cursor": page.json()["cursor"]},
            headers=h,
        ).json()["items"]
        assert [i["id"] for i in rest] == asc[10:]


def test_concurrent_clients_are_served() -> None:
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                with httpx.Client(base_url=s.base_url, headers={"authorization": f"Bearer {TOKEN}"}) as c:
                    for i in range(10):
                        assert c.post("/v1/secret/create", json={"name": f"w{n}-{i}"}).status_code == 200
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(v) == 40


def test_stand_in_server_api_and_token_validation() -> None:
    with memory_vault() as v:
        with pytest.raises(vault.InvalidRequestError):
            StandInServer(v, token="has space")
        with pytest.raises(vault.InvalidRequestError):
            StandInServer(v, token="t", any_token=True)
        with pytest.raises(vault.InvalidRequestError):
            StandInServer(v, host="0.0.0.0", any_token=True)
        lax = StandInServer(v, any_token=True)
        assert lax.accepts_any_token
        lax.stop()
        server = StandInServer(v)
        assert not server.accepts_any_token and server.token.startswith("sk-local-")
        assert server.base_url == f"http://127.0.0.1:{server.port}" and "127.0.0.1" in repr(server)
        server.start()
        server.stop()


def test_a_failure_while_streaming_becomes_an_error_line() -> None:
    from vault._api import ListQuery, SecretApi

    with memory_vault() as v:
        with v.batch():
            for i in range(101):
                v.secret.create(name=f"s{i}")
        lines = SecretApi(v).stream(ListQuery.from_pairs([]))  # pages of 100, no limit
        first_page = [next(lines) for _ in range(100)]
        assert {x["type"] for x in first_page} == {"item"}
        v.close()
        assert next(lines) == {"type": "error", "data": {"message": "the vault is closed", "code": "VAULT_CLOSED"}}
        assert list(lines) == []


def test_jwt_mint_without_pyjwt_is_501(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    from typing import Any

    real_import = builtins.__import__

    def no_jwt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "jwt":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # A key the platform would sign with: what is missing is only the signing library.
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        sid = v.secret.create(type="jwt", value=pem).id
        monkeypatch.setattr(builtins, "__import__", no_jwt)
        r = httpx.post(f"{s.base_url}/v1/secret/{sid}/mint", json={}, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 501 and r.json()["code"] == "MISSING_DEPENDENCY"
    assert "PRIVATE KEY" not in r.text
