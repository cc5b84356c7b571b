"""ChatBotKitRemote on its own (paths, headers, TLS, tokens, errors) and the ``sync`` CLI hooks."""

from __future__ import annotations

import datetime
import email.utils
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

import vault  # noqa: E402
import vault.sync  # noqa: E402
from tests.conftest import PASSPHRASE  # noqa: E402
from tests.fakecloud import FakeCloud, running  # noqa: E402
from vault.cli._parser import build_parser  # noqa: E402
from vault.cli._sync import sync_command  # noqa: E402
from vault.sync import (  # noqa: E402
    ChatBotKitRemote,
    RemoteAuthError,
    RemoteError,
    RemoteForbiddenError,
    RemoteNotFoundError,
    RemoteProtocolError,
    RemoteUnavailableError,
)

TOKEN = "sk-unit-test-token"


class Recorder:
    def __init__(self, *responses: httpx.Response) -> None:
        self.requests: list[httpx.Request] = []
        self.responses = list(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.responses:
            return self.responses.pop(0)
        return httpx.Response(200, json={"items": []})


def remote_with(rec: Recorder, base_url: str = "https://api.chatbotkit.com", **kw: Any) -> ChatBotKitRemote:
    kw.setdefault("sleep", lambda s: None)
    return ChatBotKitRemote(TOKEN, base_url, transport=httpx.MockTransport(rec), **kw)


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("https://api.chatbotkit.com", "/v1/secret/list"),  # the SDKs drop /api for this host only
        ("https://api.chatbotkit.com/", "/v1/secret/list"),
        ("https://cbk.example.com", "/api/v1/secret/list"),
        ("https://cbk.example.com/platform/", "/platform/api/v1/secret/list"),
        ("http://127.0.0.1:8080", "/api/v1/secret/list"),
    ],
)
def test_paths_follow_the_sdks(base_url: str, path: str) -> None:
    rec = Recorder()
    with remote_with(rec, base_url) as r:
        assert r.list_all() == []
    (req,) = rec.requests
    assert req.method == "GET" and req.url.path == path
    assert dict(req.url.params) == {"order": "asc", "take": "100"}


def test_headers_and_bodies_are_what_the_sdks_send() -> None:
    rec = Recorder(
        httpx.Response(200, json={"id": "abc"}),
        httpx.Response(200, json={"id": "abc"}),
        httpx.Response(200, json={"id": "abc"}),
    )
    with remote_with(rec) as r:
        assert r.create({"name": "n", "value": "v"}) == "abc"
        assert r.update("abc", {"name": "m"}) == "abc"
        r.delete("abc")
    create, update, delete = rec.requests
    for req in rec.requests:
        assert req.method == "POST"
        assert req.headers["authorization"] == f"Bearer {TOKEN}"
        assert req.headers["accept"] == "application/json"
        assert req.headers["content-type"] == "application/json"
    assert create.url.path == "/v1/secret/create" and json.loads(create.content) == {"name": "n", "value": "v"}
    assert update.url.path == "/v1/secret/abc/update"
    assert delete.url.path == "/v1/secret/abc/delete" and json.loads(delete.content) == {}
    assert TOKEN not in str(create.url)


def test_ids_that_would_change_the_path_are_refused() -> None:
    with remote_with(Recorder()) as r:
        for bad in ("../list", "a/b", "a?b", "a#b", "%2e", "", "a b"):
            with pytest.raises(vault.InvalidRequestError):
                r.fetch(bad)


@pytest.mark.parametrize(
    "url",
    ["http://api.chatbotkit.com", "http://10.0.0.5", "ftp://x", "https://user:pw@api.chatbotkit.com", "https://x/?a=1"],
)
def test_unsafe_base_urls_are_refused(url: str) -> None:
    with pytest.raises(vault.InvalidRequestError):
        ChatBotKitRemote(TOKEN, url)


def test_there_is_no_way_to_turn_tls_verification_off() -> None:
    import inspect

    params = inspect.signature(ChatBotKitRemote).parameters
    assert not {"verify", "insecure", "ssl_context", "cert"} & set(params)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[str]:
    """An https server on 127.0.0.1 with a self-signed certificate nobody trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "cert.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.headers.get("authorization", ""))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"items": []}')

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        # Positive control: the server itself works for a client that does trust this certificate.
        url = f"https://127.0.0.1:{server.server_address[1]}"
        trusting = ssl.create_default_context(cafile=str(pem))
        assert httpx.get(url + "/probe", verify=trusting).json() == {"items": []}
        yield url
    finally:
        server.shutdown()
        server.server_close()
        assert all(TOKEN not in h for h in hits)  # the token never reached the untrusted server


def test_an_untrusted_certificate_is_refused(tls_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(__file__)))  # the environment cannot swap the CA bundle
    with ChatBotKitRemote(TOKEN, tls_server, max_retries=0, sleep=lambda s: None) as r:
        with pytest.raises(RemoteUnavailableError) as info:
            r.list_all()
    assert "ConnectError" in info.value.message and TOKEN not in info.value.message


def test_tls_works_through_the_clients_own_deadline_transport(
    tls_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Positive control for the transport sync builds itself (httpcore pool + deadline backend):
    # with the test CA trusted (the only way in is the code's own create_ssl_context call), a
    # listing goes through TLS, start_tls included.
    trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    monkeypatch.setattr(httpx, "create_ssl_context", lambda **kw: trusting)
    with ChatBotKitRemote("sk-trusted-run", tls_server, max_retries=0, sleep=lambda s: None) as r:
        assert r.list_all() == [] and r.requests == 1


def test_token_from_env_then_vault(v: vault.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOTKIT_API_TOKEN", raising=False)
    with pytest.raises(RemoteAuthError) as info:
        ChatBotKitRemote()
    assert "CHATBOTKIT_API_TOKEN" in info.value.message
    v.secret.create(alias="chatbotkit-api-token", value="sk-from-vault")
    rec = Recorder()
    with ChatBotKitRemote(vault=v, transport=httpx.MockTransport(rec)) as r:
        r.list_all()
    assert rec.requests[-1].headers["authorization"] == "Bearer sk-from-vault"
    monkeypatch.setenv("CHATBOTKIT_API_TOKEN", "sk-from-env")
    with ChatBotKitRemote(vault=v, transport=httpx.MockTransport(rec)) as r:
        r.list_all()
    assert rec.requests[-1].headers["authorization"] == "Bearer sk-from-env"
    with ChatBotKitRemote("sk-arg", vault=v, transport=httpx.MockTransport(rec)) as r:
        r.list_all()
    assert rec.requests[-1].headers["authorization"] == "Bearer sk-arg"
    with pytest.raises(vault.InvalidRequestError):
        ChatBotKitRemote("sk-a\r\nX-Evil: 1")


def test_the_token_stays_out_of_repr_pickle_and_errors() -> None:
    import pickle

    echo = httpx.Response(400, json={"message": f"bad header Bearer {TOKEN}", "code": "BAD_REQUEST"})
    with remote_with(Recorder(echo)) as r:
        assert TOKEN not in repr(r)
        with pytest.raises(TypeError):
            pickle.dumps(r)
        with pytest.raises(RemoteError) as info:
            r.list_all()
    assert TOKEN not in str(info.value) and "<token>" in str(info.value)
    assert (info.value.status, info.value.code) == (400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (401, RemoteAuthError, "NOT_AUTHENTICATED"),
        (403, RemoteForbiddenError, "NOT_AUTHORIZED"),
        (404, RemoteNotFoundError, "NOT_FOUND"),
        (409, RemoteError, "CONFLICT"),
    ],
)
def test_error_statuses_become_typed_errors(status: int, cls: type[RemoteError], code: str) -> None:
    body = {"message": "nope", "code": code}
    with remote_with(Recorder(httpx.Response(status, json=body))) as r, pytest.raises(cls) as info:
        r.fetch("abc")
    assert info.value.status == status and info.value.code == code and isinstance(info.value, vault.VaultError)


def test_an_error_without_the_cloud_shape_still_gets_a_code() -> None:
    with remote_with(Recorder(httpx.Response(418, text="<html>teapot</html>"))) as r, pytest.raises(RemoteError) as i:
        r.fetch("abc")
    assert i.value.code == "ERROR_418"


def test_malformed_responses_are_protocol_errors() -> None:
    cases = [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"cursor": "x"}),
        httpx.Response(200, json={"items": [{"name": "no id"}]}),
    ]
    for response in cases:
        with remote_with(Recorder(response)) as r, pytest.raises(RemoteProtocolError):
            r.list_all()
    # A server whose cursor does not advance would page forever: stop.
    page = {"items": [{"id": "aaa", "createdAt": 1, "updatedAt": 1}], "cursor": "aaa"}
    with remote_with(Recorder(*[httpx.Response(200, json=page) for _ in range(3)])) as r:
        with pytest.raises(RemoteProtocolError):
            r.list_all()


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    date = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    target = email.utils.parsedate_to_datetime(date).timestamp()
    sleeps: list[float] = []
    rec = Recorder(httpx.Response(429, headers={"Retry-After": date}, json={"message": "slow", "code": "X"}))
    before = time.time()
    with remote_with(rec, sleep=sleeps.append, max_backoff=10) as r:
        r.list_all()
    after = time.time()
    # The wait is the date less the clock when the answer came, bounded by the clock before and
    # after the call: a slow machine shifts the figure but cannot fail the check.
    assert len(sleeps) == 1 and max(0.0, target - after) - 1e-6 <= sleeps[0] <= target - before + 1e-6


def test_5xx_uses_exponential_backoff_and_updates_are_retried() -> None:
    sleeps: list[float] = []
    rec = Recorder(
        httpx.Response(502, json={"message": "x", "code": "BAD_GATEWAY"}),
        httpx.Response(503, json={"message": "x", "code": "SERVICE_UNAVAILABLE"}),
        httpx.Response(200, json={"id": "abc"}),
    )
    with remote_with(rec, sleep=sleeps.append) as r:
        assert r.update("abc", {"name": "x"}) == "abc"
    assert sleeps == [0.25, 0.5] and len(rec.requests) == 3


def test_import_vault_works_without_httpx() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "import vault\n"
        "try:\n    import vault.sync\nexcept ImportError:\n    print('sync needs httpx')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "sync needs httpx"


def test_all_is_the_public_api() -> None:
    public = {n for n in vars(vault.sync) if n[0].isalpha() and n != "annotations"}
    assert set(vault.sync.__all__) == public


# --- the CLI hooks ---------------------------------------------------------------------------


def cli(argv: list[str], vault_path: Path) -> int:
    """``cbk-vault sync ARGV`` in process: the CLI's own parser, then the sync command."""
    args = build_parser().parse_args(["sync", *argv])
    return sync_command(args, lambda: vault.open(vault_path, PASSPHRASE))


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloud]:
    with running() as c:
        monkeypatch.setenv("CHATBOTKIT_API_TOKEN", c.token)
        yield c


def test_cli_dry_run_then_push(
    v: vault.Vault, vault_path: Path, cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    v.secret.create(name="Stripe", value="sk_live_canary")
    assert cli(["--dry-run", "--base-url", cloud.url], vault_path) == 0
    out = capsys.readouterr().out
    assert ("dry run" in out and "Stripe" in out and "would" not in out) or "create in the cloud: 1" in out
    assert cloud.writes() == []
    assert cli(["push", "--base-url", cloud.url], vault_path) == 0
    captured = capsys.readouterr()
    assert "created in the cloud: 1" in captured.out and "Stripe" in captured.out
    assert "sk_live_canary" not in captured.out + captured.err
    assert len(cloud.secrets) == 1
    assert cli(["--base-url", cloud.url, "--json"], vault_path) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["createdRemote"] == [] and report["conflicts"] == [] and report["direction"] == "both"
    # The global --json before the command name counts too (sync's own --json used to reset it to False).
    args = build_parser().parse_args(["--json", "sync", "pull", "--base-url", cloud.url])
    assert sync_command(args, lambda: vault.open(vault_path, PASSPHRASE)) == 0
    assert json.loads(capsys.readouterr().out)["direction"] == "pull"


def test_cli_reports_conflicts_with_exit_code_9(
    v: vault.Vault, vault_path: Path, cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    s = v.secret.create(name="Shared", value="1")
    assert cli(["--base-url", cloud.url], vault_path) == 0
    (rid,) = cloud.secrets
    v.secret.update(s.id, description="here")
    cloud.edit(rid, description="there")
    capsys.readouterr()
    assert cli(["--base-url", cloud.url], vault_path) == 9
    out = capsys.readouterr().out
    assert "conflicts: 1" in out and "--prefer" in out
    assert cli(["--base-url", cloud.url, "--prefer", "remote"], vault_path) == 0
    with vault.open(vault_path, PASSPHRASE) as again:
        assert again.secret.fetch(s.id).description == "there"


def test_cli_base_url_from_env(
    v: vault.Vault, vault_path: Path, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATBOTKIT_BASE_URL", cloud.url)
    v.secret.create(name="x")
    assert cli(["push"], vault_path) == 0 and len(cloud.secrets) == 1
    assert os.environ["CHATBOTKIT_BASE_URL"] == cloud.url


def test_cli_shows_progress_only_on_a_terminal(
    v: vault.Vault, vault_path: Path, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    v.secret.create(name="Visible", value="hidden-canary")
    err, out = Tty(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert cli(["push", "--base-url", cloud.url], vault_path) == 0
    assert "sync: 1/1 create-remote Visible" in err.getvalue()
    assert "hidden-canary" not in err.getvalue() + out.getvalue()
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    v.secret.create(name="Second")
    assert cli(["push", "--base-url", cloud.url], vault_path) == 0
    assert plain.getvalue() == ""


@pytest.mark.parametrize(
    "text",
    [
        '{"items": [{"id": "aaa", "createdAt": NaN, "updatedAt": 1}]}',
        '{"items": [], "x": Infinity}',
        '{"items": [], "x": -Infinity}',
        '{"items": [], "x": ' + "[" * 200_000 + "]" * 200_000 + "}",
    ],
)
def test_non_json_constants_and_runaway_nesting_are_protocol_errors(text: str) -> None:
    response = httpx.Response(200, content=text.encode(), headers={"content-type": "application/json"})
    with remote_with(Recorder(response)) as r, pytest.raises(RemoteProtocolError):
        r.list_all()


def test_an_undecodable_content_encoding_is_a_protocol_error() -> None:
    response = httpx.Response(200, stream=httpx.ByteStream(b"not gzip at all"), headers={"content-encoding": "gzip"})
    with remote_with(Recorder(response)) as r, pytest.raises(RemoteProtocolError):
        r.list_all()


def test_a_fingerprint_of_nan_is_a_typed_error() -> None:
    from vault.sync._run import _Fingerprints

    with pytest.raises(vault.VaultError) as info:
        _Fingerprints(b"k" * 32).fields({"name": "n", "meta": {"x": float("nan")}})
    assert isinstance(info.value, vault.InvalidRequestError)


def test_cli_shows_cloud_names_without_control_characters(
    v: vault.Vault, vault_path: Path, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    evil = "evil\x1b]0;pwned\x07\x1b[2J\rname"
    cloud.add(name=evil)
    err, out = Tty(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert cli(["--dry-run", "--base-url", cloud.url], vault_path) == 0
    assert r"evil\x1b]0;pwned\x07\x1b[2J\rname" in out.getvalue()
    assert assert_no_controls(out.getvalue())
    assert cli(["--base-url", cloud.url], vault_path) == 0
    assert r"evil\x1b]0;pwned\x07\x1b[2J\rname" in err.getvalue() + out.getvalue()
    # The progress line's own "\r\033[K" is ours; nothing else non-printable gets through.
    assert assert_no_controls(err.getvalue().replace("\r\033[K", "")) and assert_no_controls(out.getvalue())
    json_out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", json_out)
    v.secret.create(name="x")
    assert cli(["--json", "--base-url", cloud.url], vault_path) == 0
    assert json.loads(json_out.getvalue())["createdRemote"][0]["name"] == "x"


def assert_no_controls(text: str) -> bool:
    return all(ch.isprintable() or ch == "\n" for ch in text)


class SlowClock:
    """A clock that each request and each sleep moves forward: a server that takes its time."""

    def __init__(self, per_request: float) -> None:
        self.now = 0.0
        self.per_request = per_request

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_total_time_of_a_call_is_bounded_by_one_deadline() -> None:
    clock = SlowClock(per_request=25.0)
    timeouts: list[float] = []
    starts: list[float] = []

    def slow_503(request: httpx.Request) -> httpx.Response:
        starts.append(clock.now)
        timeouts.append(request.extensions["timeout"]["read"])
        clock.now += clock.per_request  # each attempt uses up its time before failing
        return httpx.Response(503, json={"message": "busy", "code": "UNAVAILABLE"})

    with (
        ChatBotKitRemote(
            TOKEN,
            transport=httpx.MockTransport(slow_503),
            timeout=30.0,
            max_retries=50,
            max_backoff=1.0,
            max_total=60.0,
            sleep=clock.sleep,
            clock=clock,
        ) as r,
        pytest.raises(RemoteUnavailableError),
    ):
        r.fetch("abc")
    assert starts and all(t < 60.0 for t in starts)  # no attempt starts past the deadline
    assert all(t <= 60.0 - s + 1e-9 for t, s in zip(timeouts, starts, strict=True))  # timeout cut to what is left
    assert timeouts[0] == 30.0 and timeouts[-1] < 30.0
    assert clock.now <= 60.0 + 25.0  # at most one attempt's own time past the start of the last one


def test_the_marker_lookup_after_a_failed_create_spends_the_same_budget() -> None:
    clock = SlowClock(per_request=20.0)
    seen: list[tuple[str, float, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, clock.now, request.extensions["timeout"]["read"]))
        clock.now += clock.per_request
        if request.url.path.endswith("/create"):
            return httpx.Response(500, json={"message": "oops", "code": "INTERNAL"})
        return httpx.Response(200, json={"items": []})

    with (
        ChatBotKitRemote(
            TOKEN,
            transport=httpx.MockTransport(handler),
            timeout=30.0,
            max_retries=50,
            max_backoff=1.0,
            max_total=50.0,
            sleep=clock.sleep,
            clock=clock,
        ) as r,
        pytest.raises(RemoteUnavailableError),
    ):
        r.create({"name": "x"}, marker="ref:abc")
    lookups = [(t, timeout) for path, t, timeout in seen if path.endswith("/list")]
    assert lookups and all(t < 50.0 and timeout <= 50.0 - t + 1e-9 for t, timeout in lookups)
    assert all(t < 50.0 for _, t, _ in seen)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "[::1]", "127.0.0.2"])
def test_plain_http_is_allowed_for_loopback_addresses_and_localhost(host: str) -> None:
    # Names that merely look local (localhost.localdomain, ip6-localhost) are refused: see
    # tests/test_adversarial.py (its "the cloud" section). The stand-in's Host check still accepts them (vault._net).
    with ChatBotKitRemote(TOKEN, f"http://{host}:8080", transport=httpx.MockTransport(Recorder())) as r:
        assert r.base_url.startswith("http://")
