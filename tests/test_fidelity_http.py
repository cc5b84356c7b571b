"""The stand-in's HTTP framing against the platform's source (docs/FIDELITY.md, sections A, B, H, J).

One test (or a few) per row: the request as a client sends it, the answer the cloud's source
gives. The cloud's pipeline, in order: Next's body parser (413, 400 ``Invalid JSON``, plain
text, before anything else) → ``HEAD``/``OPTIONS`` (200) → method (405) → a POST's content
type (400) → token and run-as (401) → ``Accept`` on lists (400) → the route.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from vault import _asgi
from vault._http import StandInServer
from vault.errors import StorageError, VaultError
from vault.testing import memory_vault

TOKEN = "sk-fidelity-http"
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON_CT = {"content-type": "application/json"}
LIMIT = 1 << 20  # Next's default body limit, '1mb' read by the `bytes` package


@pytest.fixture(scope="module")
def server() -> Iterator[StandInServer]:
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        yield s


@pytest.fixture
def fresh() -> Iterator[StandInServer]:
    """A server over its own empty vault, for tests that count what a list returns."""
    with memory_vault() as v, StandInServer(v, token=TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def anon(server: StandInServer) -> Iterator[httpx.Client]:
    """No token: what every client gets before the session layer."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def http(server: StandInServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as client:
        yield client


def client_for(s: StandInServer) -> httpx.Client:
    return httpx.Client(base_url=s.base_url, headers=AUTH, timeout=30)


def make(http: httpx.Client, **body: Any) -> str:
    r = http.post("/v1/secret/create", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def error(r: httpx.Response, status: int, code: str, message: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"message", "code"} and body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body


def plain(r: httpx.Response, status: int, text: str) -> None:
    """Next's own answers (``sendError``): the message as the body, no content type."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.content == text.encode()
    assert "content-type" not in r.headers


def raw_exchange(s: StandInServer, request: bytes, wait: float = 15.0) -> tuple[bytes, bool]:
    """Send raw bytes; return the answer and whether the server then closed the connection."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=wait) as sock:
        sock.sendall(request)
        data = b""
        closed = False
        try:
            while True:
                head, sep, rest = data.partition(b"\r\n\r\n")
                if sep and len(rest) >= _content_length(head):
                    closed = sock.recv(1) == b""
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return data, closed


def _content_length(head: bytes) -> int:
    for line in head.decode("latin-1").lower().split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


SECRET_ROUTES = [
    ("GET", "/v1/secret/list"),
    ("POST", "/v1/secret/create"),
    ("GET", "/api/v1/secret/x/fetch"),
    ("POST", "/api/v1/secret/x/update"),
    ("POST", "/v1/secret/x/delete"),
    ("POST", "/v1/secret/x/verify"),
    ("POST", "/v1/secret/x/authenticate"),
    ("POST", "/v1/secret/x/revoke"),
    ("POST", "/v1/secret/x/mint"),
    ("POST", "/v1/secret/x/proxy"),
]


# --- A1, A2: the method comes before the token, and the 405 has no Allow -------------------------


@pytest.mark.parametrize(("method", "path"), SECRET_ROUTES)
def test_a1_a2_a_wrong_method_is_405_before_the_token_and_without_allow(
    anon: httpx.Client, method: str, path: str
) -> None:
    wrong = "POST" if method == "GET" else "GET"
    r = anon.request(wrong, path, headers=JSON_CT)
    error(r, 405, "METHOD_NOT_ALLOWED", "Method not allowed")
    assert "allow" not in r.headers
    error(anon.put(path, json={}), 405, "METHOD_NOT_ALLOWED")


# --- A3, A4: HEAD and OPTIONS are answered before method and token -------------------------------


@pytest.mark.parametrize(("method", "path"), SECRET_ROUTES)
def test_a3_head_is_200_with_no_body_before_any_check(anon: httpx.Client, method: str, path: str) -> None:
    r = anon.head(path)
    assert r.status_code == 200 and r.content == b""
    assert "content-type" not in r.headers


@pytest.mark.parametrize(("method", "path"), SECRET_ROUTES)
def test_a4_options_is_200_empty_object_before_any_check(anon: httpx.Client, method: str, path: str) -> None:
    r = anon.options(path)
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["content-type"] == "application/json"
    assert not [h for h in r.headers if h.startswith("access-control-")]  # still no CORS


def test_a3_a4_preflight_does_not_reach_the_route(http: httpx.Client) -> None:
    before = http.get("/v1/secret/list").json()["items"]
    assert http.options("/v1/secret/create").json() == {}
    assert http.head("/v1/secret/create").status_code == 200
    assert http.get("/v1/secret/list").json()["items"] == before  # nothing was created


# --- A5: a POST needs the JSON content type, checked before the token -------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "*/*", "application/jsonl"]
)
def test_a5_a_post_without_the_json_content_type_is_400_before_the_token(
    anon: httpx.Client, http: httpx.Client, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    for client in (anon, http):
        r = client.post("/v1/secret/create", content=b'{"name":"a5"}', headers=headers)
        error(r, 400, "BAD_REQUEST", "Bad request")
    for action in ("delete", "verify", "authenticate", "revoke", "mint", "proxy"):
        error(http.post(f"/v1/secret/x/{action}", content=b"{}", headers=headers), 400, "BAD_REQUEST", "Bad request")


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=UTF-8", "application/json;charset=utf-8"]
)
def test_a5_the_media_type_is_compared_lower_cased_without_parameters(http: httpx.Client, content_type: str) -> None:
    r = http.post("/v1/secret/create", content=b'{"name":"a5-ok"}', headers={"content-type": content_type})
    assert r.status_code == 200 and set(r.json()) == {"id"}


# --- A6, A7: Next's JSON parser answers first, in plain text ------------------------------------


@pytest.mark.parametrize("body", [b"{bad", b"   ", b"NaN", b'{"x": Infinity}', b"[" * 100_000, b"\xff{}"])
def test_a6_unparseable_json_is_400_plain_text_before_the_token(anon: httpx.Client, body: bytes) -> None:
    plain(anon.post("/v1/secret/create", content=body, headers=JSON_CT), 400, "Invalid JSON")


@pytest.mark.parametrize(("method", "path"), SECRET_ROUTES)
def test_a6_every_route_and_method_gets_the_parser_first(anon: httpx.Client, method: str, path: str) -> None:
    # The parser runs before the route code: a GET with a JSON body, a wrong method, no token.
    for m in ("GET", "POST", "HEAD", "OPTIONS"):
        r = anon.request(m, path, content=b"{bad", headers=JSON_CT)
        assert r.status_code == 400, (m, path)
        if m != "HEAD":
            assert r.content == b"Invalid JSON"


def test_a6_only_a_json_content_type_is_parsed(http: httpx.Client) -> None:
    # A text body is not parsed: the POST's content-type check answers instead.
    text = {"content-type": "text/plain"}
    error(http.post("/v1/secret/create", content=b"{bad", headers=text), 400, "BAD_REQUEST")
    # application/ld+json is parsed by Next as JSON, then refused by the content-type check.
    ld = {"content-type": "application/ld+json"}
    plain(http.post("/v1/secret/create", content=b"{bad", headers=ld), 400, "Invalid JSON")
    error(http.post("/v1/secret/create", content=b"{}", headers=ld), 400, "BAD_REQUEST")


def test_a6_an_unknown_charset_is_400_invalid_body(anon: httpx.Client) -> None:
    r = anon.post("/v1/secret/create", content=b"{}", headers={"content-type": "application/json; charset=x-nope"})
    plain(r, 400, "Invalid body")


def test_a6_invalid_utf8_is_decoded_with_replacement_characters(http: httpx.Client) -> None:
    # Node decodes the body as UTF-8 with U+FFFD for bad bytes before JSON.parse sees it.
    r = http.post("/v1/secret/create", content=b'{"name":"a\xffb"}', headers=JSON_CT)
    assert r.status_code == 200, r.text
    assert http.get(f"/v1/secret/{r.json()['id']}/fetch").json()["name"] == "a\ufffdb"


def test_a6_a_utf8_byte_order_mark_is_dropped(http: httpx.Client) -> None:
    r = http.post("/v1/secret/create", content=b'\xef\xbb\xbf{"name":"bom"}', headers=JSON_CT)
    assert r.status_code == 200
    assert http.get(f"/v1/secret/{r.json()['id']}/fetch").json()["name"] == "bom"


def test_a7_an_empty_json_body_is_an_empty_object(http: httpx.Client) -> None:
    sid = http.post("/v1/secret/create", content=b"", headers=JSON_CT).json()["id"]
    item = http.get(f"/v1/secret/{sid}/fetch").json()
    assert (item["name"], item["kind"], item["type"]) == ("", "shared", "plain")
    assert http.post(f"/v1/secret/{sid}/delete", content=b"", headers=JSON_CT).json() == {"id": sid}


# --- A11: 1 MiB, Next's answer, before the token ------------------------------------------------


def test_a11_a_body_of_exactly_one_mebibyte_is_read(http: httpx.Client) -> None:
    # Insignificant whitespace pads the body to the limit: the parser reads it, the route answers.
    small = b'{"name":"padded","value":"v"}'
    body = small[:-1] + b" " * (LIMIT - len(small)) + b"}"
    assert len(body) == LIMIT
    r = http.post("/v1/secret/create", content=body, headers=JSON_CT)
    assert r.status_code == 200, r.text


def test_a11_one_byte_more_is_413_plain_text_before_the_token(anon: httpx.Client, http: httpx.Client) -> None:
    body = b'{"value":"' + b"x" * (LIMIT - 11) + b'"}'
    for client in (anon, http):
        plain(client.post("/v1/secret/create", content=body, headers=JSON_CT), 413, "Body exceeded 1mb limit")
    # Whatever the route, method or content type: the parser reads every body.
    plain(anon.request("GET", "/v1/secret/list", content=body), 413, "Body exceeded 1mb limit")


def test_a11_an_announced_length_over_the_limit_is_refused_unread_and_closed(server: StandInServer) -> None:
    request = (
        b"POST /api/v1/secret/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (LIMIT + 1)
    )
    data, closed = raw_exchange(server, request)  # the body never comes: the answer must not wait
    assert data.startswith(b"HTTP/1.1 413") and data.endswith(b"\r\n\r\nBody exceeded 1mb limit") and closed


def test_a11_a_chunked_body_over_the_limit_is_413(server: StandInServer) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    request = (
        b"POST /api/v1/secret/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body
    )
    data, closed = raw_exchange(server, request)
    assert data.startswith(b"HTTP/1.1 413") and closed


# --- A12: exactly application/json -------------------------------------------------------------


def test_a12_json_answers_are_exactly_application_json(http: httpx.Client, anon: httpx.Client) -> None:
    sid = make(http, name="a12")
    for r in (
        http.get("/v1/secret/list"),
        http.get(f"/v1/secret/{sid}/fetch"),
        http.post(f"/v1/secret/{sid}/update", json={"name": "a12b"}),
        http.get("/v1/secret/nope/fetch"),
        anon.get("/v1/secret/list"),
    ):
        assert r.headers["content-type"] == "application/json", r.request.url
    r = http.get("/v1/secret/list", headers={"accept": "application/jsonl"})
    assert r.headers["content-type"] == "application/jsonl"


# --- A15: unexpected errors are 500 GENERIC_ERROR ------------------------------------------------


def test_a15_a_bug_is_500_generic_error_without_its_text(
    server: StandInServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> Any:
        raise RuntimeError("internal detail /home/owner/secret-path")

    monkeypatch.setattr(server.app.api, "fetch", boom)
    r = http.get("/v1/secret/x/fetch")
    error(r, 500, "GENERIC_ERROR", "System error occurred")
    assert "secret-path" not in r.text


def test_a15_a_500_vault_error_is_generic_error_with_its_message(
    server: StandInServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def storage(*args: Any) -> Any:
        raise StorageError("the vault file could not be read")

    monkeypatch.setattr(server.app.api, "fetch", storage)
    error(http.get("/v1/secret/x/fetch"), 500, "GENERIC_ERROR", "the vault file could not be read")

    class Generic(VaultError):
        code = "GENERIC_ERROR"
        status = 500

    def generic(*args: Any) -> Any:
        raise Generic("Cannot find secret reference")

    monkeypatch.setattr(server.app.api, "fetch", generic)
    error(http.get("/v1/secret/x/fetch"), 500, "GENERIC_ERROR", "Cannot find secret reference")


# --- A18: the path identifier is trimmed ---------------------------------------------------------


def test_a18_the_path_identifier_is_trimmed(http: httpx.Client) -> None:
    sid = make(http, name="a18")
    assert http.get(f"/v1/secret/%20{sid}%20/fetch").json()["id"] == sid
    assert http.get(f"/v1/secret/%09{sid}%C2%A0/fetch").json()["id"] == sid  # JavaScript's trim
    assert http.post(f"/v1/secret/%20{sid}/update", json={"description": "t"}).json() == {"id": sid}


def test_a18_a_blank_identifier_is_400(http: httpx.Client) -> None:
    error(http.get("/v1/secret/%20%20/fetch"), 400, "BAD_REQUEST", "Bad request")
    error(http.post("/v1/secret/%20/delete", json={}), 400, "BAD_REQUEST", "Bad request")


# --- B2, B3, B5: the token is the second single-space word; run-as says only "Not authenticated"


def test_b2_words_after_the_token_are_ignored(anon: httpx.Client) -> None:
    r = anon.get("/v1/secret/list", headers={"authorization": f"Bearer {TOKEN} trailing words"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "header", [f"Bearer  {TOKEN}", f"Bearer\t{TOKEN}", "Bearer", TOKEN, f"Token {TOKEN}", f"Basic {TOKEN}"]
)
def test_b1_b3_b4_only_the_second_single_space_word_of_a_bearer_header(anon: httpx.Client, header: str) -> None:
    # Two spaces make the second word empty (B3); other schemes stay refused on purpose (B1).
    error(anon.get("/v1/secret/list", headers={"authorization": header}), 401, "NOT_AUTHENTICATED", "Not authenticated")


def test_b3_the_second_word_is_trimmed_like_javascript(anon: httpx.Client) -> None:
    assert anon.get("/v1/secret/list", headers={"authorization": f"bearer {TOKEN}\t x"}).status_code == 200
    assert anon.get("/v1/secret/list", headers={"authorization": f"bearer {TOKEN}\tx"}).status_code == 401
    nbsp = b"bearer " + TOKEN.encode() + b"\xa0"  # latin-1 on the wire, trimmed by JavaScript's trim
    assert anon.get("/v1/secret/list", headers={"authorization": nbsp}).status_code == 200


@pytest.mark.parametrize("header", ["x-runas-user-id", "x-runas-userid", "x-runas-child-user-email"])
def test_b5_run_as_is_401_with_the_default_message(http: httpx.Client, header: str) -> None:
    error(http.get("/v1/secret/list", headers={header: "child"}), 401, "NOT_AUTHENTICATED", "Not authenticated")


# --- H2, H3: the first media type, lower-cased; anything else is 400 after the token -------------


@pytest.mark.parametrize(
    ("accept", "streams"),
    [
        ("application/json, application/jsonl", False),
        ("APPLICATION/JSONL", True),
        ("application/jsonl; q=0.9, application/json", True),
        ("application/jsonl ;charset=utf-8", True),
        ("*/*", False),
        ("", False),
    ],
)
def test_h2_only_the_first_media_type_counts(http: httpx.Client, accept: str, streams: bool) -> None:
    make(http, name="h2")
    r = http.get("/v1/secret/list", headers={"accept": accept})
    assert r.status_code == 200
    if streams:
        assert r.headers["content-type"] == "application/jsonl"
        assert all(json.loads(line)["type"] == "item" for line in r.text.splitlines())
    else:
        assert r.headers["content-type"] == "application/json" and "items" in r.json()


@pytest.mark.parametrize("accept", ["text/html", "text/html, application/jsonl", "application/*", "application/xml"])
def test_h3_an_unsupported_accept_is_400_after_the_token(http: httpx.Client, anon: httpx.Client, accept: str) -> None:
    r = http.get("/v1/secret/list", headers={"accept": accept})
    error(r, 400, "BAD_REQUEST", "Unsupported accept header")
    error(anon.get("/v1/secret/list", headers={"accept": accept}), 401, "NOT_AUTHENTICATED")
    # Only the lists read Accept (H1).
    assert http.post("/v1/secret/create", json={}, headers={"accept": accept}).status_code == 200


# --- H9, H10: CSV and event-stream lists ---------------------------------------------------------


def test_h9_csv_has_a_header_line_and_quoted_values(fresh: StandInServer) -> None:
    with client_for(fresh) as http:
        sid = make(http, name='say "hi", ok', meta={"k": 1}, config={"clientSecret": "s"}, value="never-shown")
        r = http.get("/v1/secret/list", headers={"accept": "text/csv"})
        assert r.status_code == 200 and r.headers["content-type"] == "text/csv"
        item = http.get(f"/v1/secret/{sid}/fetch").json()
    header, row, end = r.text.split("\n")
    assert end == "" and "never-shown" not in r.text
    assert header == "id,alias,name,description,blueprintId,kind,type,config,visibility,meta,createdAt,updatedAt"
    assert row == (
        f'"{sid}","","say ""hi"", ok","","","shared","plain","[object Object]","private","[object Object]",'
        f'"{item["createdAt"]}","{item["updatedAt"]}"'
    )


def test_h9_csv_pages_like_jsonl_and_an_empty_list_is_an_empty_body(fresh: StandInServer) -> None:
    with client_for(fresh) as http:
        empty = http.get("/v1/secret/list", headers={"accept": "text/csv"})
        assert empty.status_code == 200 and empty.content == b"" and empty.headers["content-type"] == "text/csv"
        ids = [make(http, name=f"c{i}") for i in range(130)]
        lines = http.get("/v1/secret/list", headers={"accept": "text/csv"}).text.splitlines()
        assert len(lines) == 131 and lines[0].startswith("id,")
        # The same rows in the same order as the JSONL stream (secrets made in one millisecond sort by id).
        jsonl = http.get("/v1/secret/list", headers={"accept": "application/jsonl"}).text.splitlines()
        streamed = [json.loads(line)["data"]["id"] for line in jsonl if line]
        assert sorted(streamed) == sorted(ids)
        assert [line.split(",")[0].strip('"') for line in lines[1:]] == streamed
        few = http.get("/v1/secret/list", params={"take": "5"}, headers={"accept": "text/csv"}).text.splitlines()
        assert len(few) == 6


def test_h10_event_stream_frames_each_item(fresh: StandInServer) -> None:
    with client_for(fresh) as http:
        empty = http.get("/v1/secret/list", headers={"accept": "text/event-stream"})
        assert empty.status_code == 200 and empty.content == b""
        assert empty.headers["content-type"] == "text/event-stream"
        ids = [make(http, name=f"e{i}\u2028") for i in range(3)]
        r = http.get("/v1/secret/list", params={"order": "asc"}, headers={"accept": "text/event-stream"})
        assert r.headers["content-type"] == "text/event-stream"
        # The list's own order (createdAt, then id): secrets made in one millisecond sort by id.
        listed = [item["id"] for item in http.get("/v1/secret/list", params={"order": "asc"}).json()["items"]]
    assert sorted(listed) == sorted(ids)
    events = r.text.split("\n\n")
    assert events[-1] == "" and len(events) == 4
    for sid, event in zip(listed, events[:-1], strict=True):
        kind, data = event.split("\n")
        assert kind == "event: item" and data.startswith("data: ")
        assert json.loads(data[len("data: ") :])["id"] == sid


def test_h9_h10_a_failure_on_the_first_page_is_an_http_error(
    fresh: StandInServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(query: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "error", "data": {"message": "Not found", "code": "NOT_FOUND"}}

    monkeypatch.setattr(fresh.app.api, "stream", broken)
    with client_for(fresh) as http:
        for accept in ("application/jsonl", "text/csv", "text/event-stream"):
            error(http.get("/v1/secret/list", headers={"accept": accept}), 404, "NOT_FOUND", "Not found")


def test_h9_h10_a_later_failure_is_an_error_event(fresh: StandInServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def half(query: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "item", "data": {"id": "a", "n": None}}
        yield {"type": "error", "data": {"message": "System error occurred", "code": "GENERIC_ERROR"}}

    monkeypatch.setattr(fresh.app.api, "stream", half)
    with client_for(fresh) as http:
        sse = http.get("/v1/secret/list", headers={"accept": "text/event-stream"}).text
        csv = http.get("/v1/secret/list", headers={"accept": "text/csv"}).text
    assert sse == (
        'event: item\ndata: {"id":"a","n":null}\n\n'
        'event: error\ndata: {"message":"System error occurred","code":"GENERIC_ERROR"}\n\n'
    )
    assert csv == 'id,n\n"a",""\n'  # CSV drops everything but items


# --- J2: contact-scoped routes: method, content type and token, then 404 ------------------------

CONTACT_ROUTES = [
    ("GET", "/v1/contact/c1/secret/list"),
    ("GET", "/api/v1/contact/c1/secret/list"),
    *[("POST", f"/v1/contact/c1/secret/x/{a}") for a in ("verify", "authenticate", "revoke", "mint", "proxy")],
    ("POST", "/api/v1/contact/c1/secret/x/mint"),
]


@pytest.mark.parametrize(("method", "path"), CONTACT_ROUTES)
def test_j2_contact_routes_check_method_content_type_and_token_then_404(
    anon: httpx.Client, http: httpx.Client, method: str, path: str
) -> None:
    wrong = "POST" if method == "GET" else "GET"
    error(anon.request(wrong, path, headers=JSON_CT), 405, "METHOD_NOT_ALLOWED")
    assert anon.head(path).status_code == 200
    if method == "POST":
        error(anon.post(path, content=b"{}"), 400, "BAD_REQUEST", "Bad request")
    # A body the contact proxy's schema accepts: on the cloud it is validated before the contact lookup.
    body = {"url": "https://example.com/"} if path.endswith("/proxy") else {}
    error(anon.request(method, path, json=body if method == "POST" else None), 401, "NOT_AUTHENTICATED")
    error(http.request(method, path, json=body if method == "POST" else None), 404, "NOT_FOUND", "Not found")


def test_j2_the_contact_list_reads_accept_before_the_contact(http: httpx.Client) -> None:
    path = "/v1/contact/c1/secret/list"
    error(http.get(path, headers={"accept": "text/html"}), 400, "BAD_REQUEST", "Unsupported accept header")
    error(http.get(path, headers={"accept": "application/jsonl"}), 404, "NOT_FOUND")
    error(http.get("/v1/contact/%20/secret/list"), 400, "BAD_REQUEST")


def test_j2_other_contact_paths_are_not_routes(http: httpx.Client) -> None:
    for path in ("/v1/contact/c1/secret/x/fetch", "/v1/contact//secret/list", "/v1/contact/c1/secret/create"):
        error(http.get(path), 404, "NOT_FOUND")


# --- J3, J4: the platform catalogue, empty offline -----------------------------------------------


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_j3_the_catalogue_list_is_empty(http: httpx.Client, anon: httpx.Client, prefix: str) -> None:
    path = f"{prefix}/platform/secret/list"
    r = http.get(path)
    assert r.status_code == 200 and r.json() == {"items": []} and r.headers["content-type"] == "application/json"
    assert http.get(path, params={"cursor": "x", "take": "5"}).json() == {"items": []}
    for accept in ("application/jsonl", "text/csv", "text/event-stream"):
        s = http.get(path, headers={"accept": accept})
        assert s.status_code == 200 and s.content == b"" and s.headers["content-type"] == accept
    error(http.get(path, headers={"accept": "text/html"}), 400, "BAD_REQUEST", "Unsupported accept header")
    error(anon.get(path), 401, "NOT_AUTHENTICATED")
    error(anon.post(path, json={}), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_j4_the_catalogue_search_validates_and_finds_nothing(
    http: httpx.Client, anon: httpx.Client, prefix: str
) -> None:
    path = f"{prefix}/platform/secret/search"
    for body in ({"search": "google"}, {"search": "google", "take": 100}, {}, {"search": "  "}):
        r = http.post(path, json=body)
        assert r.status_code == 200 and r.json() == {"items": []}, (body, r.text)
    refused: list[Any] = [{"search": 5}, {"search": ""}, {"take": 0}, {"take": 101}, {"take": 1.5}]
    for body in [*refused, {"search": "x", "other": 1}, [1]]:
        error(http.post(path, json=body), 400, "BAD_REQUEST")
    error(anon.post(path, json={"search": "google"}), 401, "NOT_AUTHENTICATED")
    error(anon.get(path), 405, "METHOD_NOT_ALLOWED")
    error(http.post(path, content=b"{}"), 400, "BAD_REQUEST", "Bad request")


# --- what stays the stand-in's own: the Host check first, unknown paths as JSON 404 --------------


def test_the_host_check_still_comes_before_the_body(server: StandInServer) -> None:
    request = (
        b"POST /api/v1/secret/create HTTP/1.1\r\nHost: evil.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    data, closed = raw_exchange(server, request)
    assert data.startswith(b"HTTP/1.1 403") and closed


def test_a16_unknown_paths_stay_json_404(anon: httpx.Client) -> None:
    # Kept (A16): the cloud's Next answers its own 404 page; the status is the same.
    error(anon.get("/v1/secret/abc"), 404, "NOT_FOUND", "Not found")
    error(anon.post("/v1/secret/abc/fetch/more", json={}), 404, "NOT_FOUND")
    assert anon.head("/v1/secret/abc").status_code == 404


def test_the_body_limit_is_next_s_default() -> None:
    assert _asgi.MAX_BODY == LIMIT


def test_a15_a_bug_while_streaming_ends_the_stream_with_a_generic_error(
    fresh: StandInServer, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def buggy(query: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "item", "data": {"id": "a"}}
        raise RuntimeError("internal detail")

    monkeypatch.setattr(fresh.app.api, "stream", buggy)
    with client_for(fresh) as http:
        lines = http.get("/v1/secret/list", headers={"accept": "application/jsonl"}).text.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"type": "item", "data": {"id": "a"}},
        {"type": "error", "data": {"message": "System error occurred", "code": "GENERIC_ERROR"}},
    ]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "internal detail" not in err
