"""The offline ChatBotKit stand-in: the cloud's secret REST API, answered from a vault.

Two layers:

* :class:`SecretApi` applies the cloud's rules to JSON-shaped requests (dict in, dict out):
  values never returned, ``config.clientSecret`` masked, 409 for a personal secret with a
  value, the cloud's take clamp and cursor paging, ``{message, code}`` errors. ``vault.aio``
  uses it too, so the async facade and the HTTP server cannot drift apart.
* :class:`StandInServer` puts it behind ``http.server`` (standard library only, one thread
  per connection): routing under ``/v1/secret/`` and ``/api/v1/secret/``, the bearer token,
  JSONL streaming. ``cbk-vault serve`` (``vault.cli._serve``) runs it.

Every choice where the cloud's behaviour is inferred or has no local meaning is listed in
``docs/TESTING.md``.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import secrets
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from . import _auth, _records
from ._records import Page, Secret
from ._vault import Vault
from .errors import ConflictError, InvalidRequestError, MintRefusedError, NotFoundError, VaultError

__all__ = ["SecretApi", "StandInServer"]

#: Requests bigger than this are refused before they are read (a value is at most 1 MiB).
MAX_BODY: Final = 4 << 20
#: Environment variable read for the token when ``--token`` is not given (argv is visible in ``ps``).
TOKEN_ENV: Final = "CBK_VAULT_SERVE_TOKEN"  # noqa: S105 - a variable name, not a token

_PREFIXES: Final = ("/api/v1/secret/", "/v1/secret/")
# action -> the one method the cloud's route answers to.
_ROUTES: Final[dict[str, str]] = {
    "list": "GET",
    "create": "POST",
    "fetch": "GET",
    "update": "POST",
    "delete": "POST",
    "verify": "POST",
    "authenticate": "POST",
    "revoke": "POST",
    "mint": "POST",
    "proxy": "POST",
}
_COLLECTION_ACTIONS: Final = frozenset({"list", "create"})
_RUNAS_HEADERS: Final = ("x-runas-user-id", "x-runas-userid", "x-runas-child-user-email")
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_DEFAULT_MESSAGES: Final[dict[int, tuple[str, str]]] = {
    400: ("Bad request", "BAD_REQUEST"),
    401: ("Not authenticated", "NOT_AUTHENTICATED"),
    403: ("Not authorized", "NOT_AUTHORIZED"),
    404: ("Not found", "NOT_FOUND"),
    405: ("Method not allowed", "METHOD_NOT_ALLOWED"),
    409: ("Conflict", "CONFLICT"),
    413: ("Content too large", "CONTENT_TOO_LARGE"),
    500: ("Internal server error", "INTERNAL_SERVER_ERROR"),
    501: ("Not implemented", "NOT_IMPLEMENTED"),
}


class HttpError(Exception):
    """An error answer that is not one of the vault's own errors (routing, auth, size)."""

    def __init__(self, status: int, message: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        default, code = _DEFAULT_MESSAGES[status]
        super().__init__(message or default)
        self.status = status
        self.body = {"message": message or default, "code": code}
        self.headers = dict(headers or {})


def clamp_take(value: object) -> int:
    """The cloud's take rule: 0, missing or not a number gives 100; negative gives 1; at most 100."""
    number: int | None = None
    if type(value) is int:
        number = value
    elif type(value) is str:
        with contextlib.suppress(ValueError):
            number = int(value.strip())
    if not number:
        return 100
    return max(1, min(100, number))


def _stream_limit(value: object) -> int | None:
    """JSONL stops once this many items went out; only a positive ``take`` sets a limit."""
    try:
        number = int(value) if type(value) in (int, str) else 0  # type: ignore[call-overload]
    except ValueError:
        return None
    return number if number > 0 else None


def _joi_unknown(keys: list[str]) -> str:
    # Joi's wording for a key the schema does not know.
    return "; ".join(f'"{k[:64]}" is not allowed' for k in keys)


def _object_body(body: object) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequestError('"value" must be of type object')
    return body


def _empty_body(body: object) -> None:
    obj = _object_body(body)
    if obj:
        raise InvalidRequestError(_joi_unknown(sorted(obj)))


@dataclass(frozen=True, slots=True)
class ListQuery:
    """``list``'s parameters as the cloud reads them from the query string."""

    cursor: str | None = None
    order: str = "desc"
    take: object = None
    meta: dict[str, str] = field(default_factory=dict)
    blueprint_id: str | None = None

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> ListQuery:
        values: dict[str, str] = {}
        meta: dict[str, str] = {}
        for key, value in pairs:
            if key.startswith("meta.") and len(key) > 5:
                meta[key[5:]] = value
            elif key.startswith("meta[") and key.endswith("]") and len(key) > 6:
                meta[key[5:-1]] = value
            else:
                # Repeated plain keys: the last wins. Unknown keys are ignored (inferred).
                values[key] = value
        return cls(
            cursor=values.get("cursor") or None,
            order=values.get("order", "desc"),
            take=values.get("take"),
            meta=meta,
            blueprint_id=values.get("blueprintId") or None,
        )

    @classmethod
    def from_mapping(cls, request: Mapping[str, Any] | None) -> ListQuery:
        """The SDK's ``list(request)`` dict: ``cursor``, ``order``, ``take``, ``meta``."""
        request = dict(request or {})
        unknown = sorted(set(request) - {"cursor", "order", "take", "meta", "blueprintId"})
        if unknown:
            raise InvalidRequestError(_joi_unknown(unknown))
        meta = request.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise InvalidRequestError('"meta" must be of type object')
        return cls(
            cursor=request.get("cursor") or None,
            order=str(request.get("order") or "desc"),
            take=request.get("take"),
            meta={str(k): _query_text(v) for k, v in meta.items() if v is not None},
            blueprint_id=request.get("blueprintId") or None,
        )


def _query_text(value: object) -> str:
    # What a value becomes once an SDK has put it in a query string.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SecretApi:
    """The cloud's secret resource over a :class:`~vault.Vault`: JSON-shaped in, JSON-shaped out.

    Every method raises :class:`~vault.VaultError` subclasses whose ``status`` and
    ``to_dict()`` are the cloud's HTTP answer. ``frontend_url`` is where the
    authenticate URLs of ``verify``/``authenticate`` point (the stand-in's own address).
    """

    def __init__(self, vault: Vault, *, frontend_url: str = "http://127.0.0.1") -> None:
        self.vault = vault
        self.frontend_url = frontend_url.rstrip("/")

    # --- reads ---------------------------------------------------------------------------

    def list(self, query: ListQuery) -> dict[str, Any]:
        """One page: ``{"items": [...], "cursor": <last id>}``; an empty page has no cursor."""
        return self._page(query, clamp_take(query.take), query.cursor).to_dict()

    def stream(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        """The JSONL list: ``{"type":"item","data":...}`` per secret, paging internally.

        Stops on an empty page, or once ``take`` items went out when ``take`` was given
        (a whole page at a time, so like the cloud it can overshoot by part of a page).
        A failure while streaming becomes a ``{"type":"error",...}`` line.
        """
        size = clamp_take(query.take)
        limit = _stream_limit(query.take)
        cursor = query.cursor
        sent = 0
        while True:
            try:
                page = self._page(query, size, cursor)
            except VaultError as exc:
                yield {"type": "error", "data": exc.to_dict()}
                return
            if not page.items:
                return
            for item in page.items:
                yield {"type": "item", "data": item.to_dict()}
            sent += len(page.items)
            if limit is not None and sent >= limit:
                return
            cursor = page.cursor

    def _page(self, query: ListQuery, size: int, cursor: str | None) -> Page:
        meta: dict[str, Any] = dict(query.meta) or {}
        if query.blueprint_id is None:
            return self.vault.secret.list(order=query.order, take=size, cursor=cursor, meta=meta or None)
        # The server-side blueprintId filter is not in the core list: filter page by page.
        items: list[Secret] = []
        while len(items) < size:
            page = self.vault.secret.list(order=query.order, take=100, cursor=cursor, meta=meta or None)
            if not page.items:
                break
            for item in page.items:
                if item.blueprint_id == query.blueprint_id:
                    items.append(item)
                    if len(items) == size:
                        break
            cursor = page.cursor
        return Page(items=items, cursor=items[-1].id if items else None)

    def fetch(self, secret_id: str) -> dict[str, Any]:
        """The item without its value; ``config.clientSecret`` masked."""
        return self._get(secret_id).to_dict()

    def _get(self, secret_id: str) -> Secret:
        # Metadata only: the stand-in never returns a value, so it never decrypts one here.
        return self.vault._lookup(secret_id)

    def _get_with_value(self, secret_id: str) -> Secret:
        # verify, revoke and mint act on the value itself (it never leaves the server).
        return self.vault.secret.fetch(secret_id)

    # --- writes --------------------------------------------------------------------------

    def _checked(self, body: object) -> dict[str, Any]:
        obj = _object_body(body)
        problems: list[str] = []
        unknown = sorted(k for k in obj if k not in _records.FIELDS)
        if unknown:
            problems.append(_joi_unknown(unknown))
        for key, value in obj.items():
            if key in _records.FIELDS:
                try:
                    _records.check_field(_records.FIELDS[key], value)
                except InvalidRequestError as exc:
                    problems.append(exc.message)
        if problems:
            raise InvalidRequestError("; ".join(problems))
        return obj

    def create(self, body: object) -> dict[str, str]:
        """``{"id": ...}``. A personal secret with a non-empty value is a 409, as on the cloud."""
        fields = self._checked(body)
        if fields.get("kind") == "personal":
            if fields.get("value"):
                raise ConflictError("Personal secrets cannot have a value")
            fields["value"] = None
        if fields.get("value") == "":
            fields["value"] = None
        return {"id": self.vault.secret.create(fields).id}

    def update(self, secret_id: str, body: object) -> dict[str, str]:
        """``{"id": <real id>}``; left-out fields (alias included) stay as they are."""
        fields = self._checked(body)
        stored = self._get(secret_id)
        if fields.get("kind") == "personal" and fields.get("value"):
            raise ConflictError("Personal secrets cannot have a value")
        if "value" in fields and stored.kind == "personal":
            fields["value"] = None  # the cloud writes a value only onto a stored shared secret
        if fields.get("kind") == "personal" and stored.kind != "personal":
            fields["value"] = None  # becoming personal: keep "personal secrets hold no value" true
        if fields.get("value") == "":
            fields["value"] = None
        return {"id": self.vault.secret.update(stored.id, fields).id}

    def delete(self, secret_id: str, body: object = None) -> dict[str, str]:
        _empty_body(body)
        return {"id": self.vault.secret.delete(secret_id).id}

    # --- use-time routes -----------------------------------------------------------------------

    def authenticate_url(self, secret_id: str) -> str:
        # The cloud's shape (<frontend>/secrets/<id>/manager/authenticate?...), without the signed state.
        return f"{self.frontend_url}/secrets/{quote(secret_id, safe='')}/manager/authenticate?cbk=1&auth=1&unfurl=0"

    def verify(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """``{"id", "status"}``, plus ``action`` when unauthenticated. "Authenticated" means
        the secret (after reference resolution) holds a value."""
        _empty_body(body)
        secret = self._get_with_value(secret_id)
        if secret.kind == "personal":
            raise ConflictError("Personal secrets can only be verified in the context of a contact")
        effective = _auth.resolve(self.vault, secret)
        if effective.value:
            return {"id": secret.id, "status": "authenticated"}
        return {
            "id": secret.id,
            "status": "unauthenticated",
            "action": {"type": "authenticate", "url": self.authenticate_url(secret.id)},
        }

    def authenticate(self, secret_id: str, body: object = None) -> dict[str, str]:
        _empty_body(body)
        secret = self._get(secret_id)
        if secret.kind != "shared":
            raise ConflictError("Only shared secrets can be authenticated without a contact")
        return {"id": secret.id, "url": self.authenticate_url(secret.id)}

    def revoke(self, secret_id: str, body: object = None) -> dict[str, str]:
        """Clear a shared secret's value (409 for personal, 404 when there is none); the row stays."""
        _empty_body(body)
        secret = self._get_with_value(secret_id)
        if secret.kind != "shared":
            raise ConflictError("Only shared secrets can be revoked")
        if not secret.value:
            raise NotFoundError("Secret value not found")
        return {"id": self.vault.secret.update(secret.id, value=None).id}

    def mint(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """``{"token", "expiresAt"}`` for jwt (signed locally) and oauth (the stored access token).

        Refusals raise :class:`~vault.MintRefusedError`, whose ``to_dict()`` is the
        mint route's ``{error, message, url?}`` shape. The request body is ignored, as on the cloud.
        """
        secret = self._get_with_value(secret_id)
        try:
            token, expires = _auth.mint(secret, self.vault)
        except MintRefusedError as exc:
            if exc.error == "authorization_required" and exc.url is None and secret.kind == "shared":
                exc.url = self.authenticate_url(secret.id)
            raise
        return {"token": token, "expiresAt": expires}

    def proxy(self, secret_id: str, body: object = None) -> dict[str, Any]:
        # Offline means no upstream: the cloud would forward the request to the internet.
        raise _NotOffline("proxy forwards requests to the internet; the offline stand-in does not")


class _NotOffline(VaultError):
    code = "NOT_IMPLEMENTED"
    status = 501


# --- HTTP ---------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """A loopback name or address (IPv4, IPv6 in brackets or not). Shared with the sync client,
    which allows plain http only to such a host; kept here so the server never imports httpx."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass
class _Reply:
    status: int
    body: Any = None
    lines: Iterator[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' httpx clients expect
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms per request.
    disable_nagle_algorithm = True
    server_version = "cbk-vault-standin"
    sys_version = ""
    # A socket timeout per connection: a client that opens a connection and sends nothing (or
    # half a body) must not hold a thread forever.
    timeout = 30.0
    _body_read = False

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by default: request lines carry identifiers and filters, and tests read stderr.
        if self.server.standin.verbose:
            sys.stderr.write(f"cbk-vault serve: {self.command} {urlsplit(self.path).path}\n")

    def _serve(self) -> None:
        try:
            reply = self._answer()
        except HttpError as exc:
            reply = _Reply(exc.status, exc.body, headers=exc.headers)
        except MintRefusedError as exc:
            reply = _Reply(exc.status, exc.to_dict())
        except VaultError as exc:
            headers = {"X-Failure-Code": exc.code} if exc.status == 403 else {}
            reply = _Reply(exc.status, exc.to_dict(), headers=headers)
        except Exception:  # a bug must not kill the thread silently nor leak its text to clients
            sys.stderr.write("cbk-vault serve: internal error while answering a request\n")
            reply = _Reply(500, HttpError(500).body)
        self._send(reply)

    def _has_body(self) -> bool:
        return bool(self.headers.get("transfer-encoding")) or self.headers.get("content-length", "0").strip() not in (
            "",
            "0",
        )

    def _read_body(self) -> Any:
        if self.headers.get("transfer-encoding") is not None:
            # http.server reads no chunked bodies: the value would be lost silently and the chunks
            # read as the next request. The cloud's clients always send Content-Length.
            self.close_connection = True
            raise HttpError(400, "Transfer-Encoding is not supported; send Content-Length")
        length_text = self.headers.get("content-length")
        if not length_text:
            return None
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "Invalid content-length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the unread body would poison the next request
            raise HttpError(413, f"Request body is larger than {MAX_BODY} bytes")
        try:
            raw = self.rfile.read(length)
        except OSError:  # the socket timeout: a client that announced a body and never sent it
            self.close_connection = True
            raise HttpError(400, "Request body not received in time") from None
        if len(raw) < length:
            self.close_connection = True  # the client stopped sending: nothing after it can be framed
            raise HttpError(400, "Request body shorter than its content-length")
        if not raw.strip():
            return None
        try:
            return json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; deep nesting is RecursionError
            raise InvalidRequestError("Invalid JSON body") from None

    def _answer(self) -> _Reply:
        standin = self.server.standin
        try:
            return self._route_and_answer(standin)
        except BaseException:
            if not self._body_read and self._has_body():
                # Refused before the body was read: reading it would let an unauthenticated client
                # make us take in MAX_BODY bytes; leaving it would corrupt the next request.
                self.close_connection = True
            raise

    def _route_and_answer(self, standin: StandInServer) -> _Reply:
        self._body_read = False
        parts = urlsplit(self.path)
        route = _route(parts.path)
        if route is None:
            raise HttpError(404)
        action, secret_id = route
        if standin.loopback_only and not is_loopback(_host_of(self.headers.get("host", ""))):
            # DNS rebinding: a web page on another name must not reach a loopback server.
            raise HttpError(403, "Host not allowed", headers={"X-Failure-Code": "NOT_AUTHORIZED"})
        standin.check_token(self.headers.get("authorization"))
        if any(self.headers.get(h) for h in _RUNAS_HEADERS):
            raise HttpError(401, "Not authenticated: there are no child users offline")
        allowed = _ROUTES[action]
        if self.command != allowed:
            raise HttpError(405, headers={"Allow": allowed})
        self._body_read = True  # from here on the body is either read or the connection closed
        body = self._read_body()
        api = standin.api
        if action == "list":
            query = ListQuery.from_pairs(parse_qsl(parts.query, keep_blank_values=True))
            if "application/jsonl" in (self.headers.get("accept") or ""):
                return _Reply(200, lines=api.stream(query))
            return _Reply(200, api.list(query))
        if action == "create":
            return _Reply(200, api.create(body))
        assert secret_id is not None
        handler: Callable[[str, object], Any] = getattr(api, action)
        if action == "fetch":
            return _Reply(200, api.fetch(secret_id))
        return _Reply(200, handler(secret_id, body))

    def _send(self, reply: _Reply) -> None:
        if reply.lines is not None:
            self._send_stream(reply)
            return
        try:
            data = _dumps(reply.body)
        except ValueError:  # NaN/Infinity from a vault written before they were refused
            sys.stderr.write("cbk-vault serve: a response could not be written as JSON\n")
            reply = _Reply(500, HttpError(500).body)
            data = _dumps(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_stream(self, reply: _Reply) -> None:
        assert reply.lines is not None
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/jsonl; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            for line in reply.lines:
                try:
                    data = _dumps(line) + b"\n"
                except ValueError:
                    data = _dumps({"type": "error", "data": HttpError(500).body}) + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading; nothing left to say


def _no_constant(name: str) -> Any:
    # Python's json reads NaN/Infinity; JSON has no such words, and the vault refuses them.
    raise ValueError(f"{name} is not JSON")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _route(path: str) -> tuple[str, str | None] | None:
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix) :].split("/")
            break
    else:
        return None
    if len(rest) == 1 and rest[0] in _COLLECTION_ACTIONS:
        return rest[0], None
    if len(rest) == 2 and rest[0] and rest[1] in _ROUTES and rest[1] not in _COLLECTION_ACTIONS:
        return rest[1], unquote(rest[0])
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: StandInServer


class StandInServer:
    """The stand-in on a background thread: ``with StandInServer(v) as s: s.base_url, s.token``.

    ``token=None`` (default) accepts any bearer token and makes up a printable one in
    ``.token``; a given token is the only one accepted. ``port=0`` picks a free port.
    The vault is not closed by :meth:`stop`; its owner closes it.
    """

    def __init__(
        self,
        vault: Vault,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        verbose: bool = False,
    ) -> None:
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise InvalidRequestError("the token must be non-empty and contain no whitespace")
        self.vault = vault
        self.accepts_any_token = token is None
        self.token = token if token is not None else "sk-local-" + secrets.token_hex(16)
        self.verbose = verbose
        self.loopback_only = is_loopback(host)
        self._httpd = _Server((host, port), _Handler, bind_and_activate=True)
        self._httpd.standin = self
        self._thread: threading.Thread | None = None
        self.api = SecretApi(vault, frontend_url=self.base_url)

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://host:port``; the SDKs append ``/api/v1/secret/...``."""
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def check_token(self, header: str | None) -> None:
        """The cloud's rule: the token is the second space-separated word; the scheme is not checked."""
        words = (header or "").split(" ")
        given = words[1] if len(words) > 1 else ""
        if not given:
            raise HttpError(401)
        if not self.accepts_any_token and not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HttpError(401)

    def start(self) -> StandInServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="cbk-vault-standin", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<StandInServer {self.base_url}>"
