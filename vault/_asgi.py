"""The stand-in as an ASGI application: the cloud's secret routes, answered by ``_api``.

One application serves every way in: ``cbk-vault serve`` runs it under uvicorn on a loopback
socket (``_http``), and ``vault.testing.transport()`` hands it to an httpx client in process,
with no socket, no thread and no port. HTTP framing lives here: routing under
``/v1/secret/`` and ``/api/v1/secret/``, the bearer token, the Host-header check, methods,
the body (size and time caps, JSON), JSONL streaming, the cloud's error shapes. The route
semantics are ``_api``'s; the field and list rules ``_rules``'.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from ._api import ListQuery, SecretApi
from ._net import is_loopback
from ._vault import Vault
from .errors import InvalidRequestError, MintRefusedError, VaultError

__all__ = ["BODY_TIMEOUT", "MAX_BODY", "HttpError", "StandInApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Requests bigger than this are refused before they are read (a value is at most 1 MiB).
MAX_BODY: Final = 4 << 20
#: The whole body must arrive within this many seconds of the headers.
BODY_TIMEOUT: Final = 30.0

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
_RUNAS_HEADERS: Final = (b"x-runas-user-id", b"x-runas-userid", b"x-runas-child-user-email")
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
    503: ("Service unavailable", "SERVICE_UNAVAILABLE"),
}
_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


class HttpError(Exception):
    """An error answer that is not one of the vault's own errors (routing, auth, size)."""

    def __init__(self, status: int, message: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        default, code = _DEFAULT_MESSAGES[status]
        super().__init__(message or default)
        self.status = status
        self.body = {"message": message or default, "code": code}
        self.headers = dict(headers or {})


@dataclass
class _Reply:
    status: int
    body: Any = None
    lines: Iterator[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def escaped(text: str) -> str:
    """Client-supplied text as one printable line: control, C1 and bidi characters as ``\\xNN``."""
    return "".join(c if c.isprintable() and c not in _BIDI else f"\\x{ord(c):02x}" for c in text[:200])


def _no_constant(name: str) -> Any:
    # Python's json reads NaN/Infinity; JSON has no such words, and the vault refuses them.
    raise ValueError(f"{name} is not JSON")


def dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8, with the three characters line readers split on written as escapes.

    httpx's ``iter_lines`` (what the official SDK streams JSONL with) breaks a line at U+2028,
    U+2029 and U+0085 as well as at newlines; escaped, a secret's name holding one stays one line.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.translate(_LINE_BREAKS).encode()


_LINE_BREAKS: Final = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


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


def _host_of(header: str) -> str:
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class StandInApp:
    """The stand-in's ASGI application over a vault.

    Every request needs ``Authorization: Bearer <token>``: ``token`` (default: a random one,
    in ``.token``), or any bearer token when ``any_token=True``. ``loopback_only`` makes it
    refuse requests whose Host header is not a loopback name (a DNS-rebinding defence for
    a socket on 127.0.0.1; an in-process transport has no socket to rebind). ``frontend_url``
    is where the authenticate URLs of verify/authenticate point.
    """

    def __init__(
        self,
        vault: Vault,
        *,
        token: str | None = None,
        any_token: bool = False,
        loopback_only: bool = True,
        frontend_url: str = "http://127.0.0.1",
        verbose: bool = False,
    ) -> None:
        if token is not None and (not token or any(c.isspace() or not c.isprintable() for c in token)):
            raise InvalidRequestError("the token must be non-empty printable text without whitespace")
        if any_token and token is not None:
            raise InvalidRequestError("give a token or any_token=True, not both")
        self.vault = vault
        self.token = token if token is not None else "sk-local-" + secrets.token_hex(16)
        self.accepts_any_token = any_token
        self.loopback_only = loopback_only
        self.verbose = verbose
        self.api = SecretApi(vault, frontend_url=frontend_url)

    def __repr__(self) -> str:
        return f"<StandInApp {self.vault!r}>"

    def check_token(self, header: str | None) -> None:
        """``Authorization: Bearer <token>``, and nothing else.

        The cloud takes the second word whatever the scheme; the stand-in accepts only the
        ``Bearer`` scheme the SDKs send, so a ``Basic`` header meant for another service is
        never taken for a token (a deliberate difference, listed in docs/TESTING.md).
        """
        scheme, _, given = (header or "").partition(" ")
        given = given.strip(" ")
        if scheme.lower() != "bearer" or not given or " " in given:
            raise HttpError(401)
        if not self.accepts_any_token and not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HttpError(401)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not a route of this API
            return
        method: str = scope["method"]
        # Routing reads the path as sent: an id like "(Pay API/v2)" arrives with its "/" encoded,
        # and the decoded path would split it. (httpx's in-process transport leaves the query on.)
        raw = scope.get("raw_path")
        path: str = raw.split(b"?", 1)[0].decode("latin-1") if raw else scope["path"]
        if self.verbose:
            # The client's bytes, escaped: they must not drive the operator's terminal.
            sys.stderr.write(f"cbk-vault serve: {escaped(method)} {escaped(path)}\n")
        headers = _Headers(scope.get("headers") or [])
        body_read = False
        try:
            reply, body_read = await self._answer(scope, method, path, headers, receive)
        except HttpError as exc:
            reply = _Reply(exc.status, exc.body, headers=exc.headers)
        except MintRefusedError as exc:
            reply = _Reply(exc.status, exc.to_dict())
        except VaultError as exc:
            extra = {"X-Failure-Code": exc.code} if exc.status == 403 else {}
            reply = _Reply(exc.status, exc.to_dict(), headers=extra)
        except Exception:  # a bug must not leak its text to clients
            sys.stderr.write("cbk-vault serve: internal error while answering a request\n")
            reply = _Reply(500, HttpError(500).body)
        if not body_read and headers.has_body():
            # Refused before the body was read: reading it would let an unauthenticated client make
            # us take in MAX_BODY bytes; leaving it unread would corrupt the next request.
            reply.headers["Connection"] = "close"
        await self._send(reply, method, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(
        self, scope: Scope, method: str, path: str, headers: _Headers, receive: Receive
    ) -> tuple[_Reply, bool]:
        route = _route(path)
        if route is None:
            raise HttpError(404)
        action, secret_id = route
        if self.loopback_only and not is_loopback(_host_of(headers.get("host"))):
            # DNS rebinding: a web page on another name must not reach a loopback server.
            raise HttpError(403, "Host not allowed", headers={"X-Failure-Code": "NOT_AUTHORIZED"})
        self.check_token(headers.get("authorization") or None)
        if any(headers.get_bytes(h) for h in _RUNAS_HEADERS):
            raise HttpError(401, "Not authenticated: there are no child users offline")
        allowed = _ROUTES[action]
        if method != allowed:
            raise HttpError(405, headers={"Allow": allowed})
        try:
            body = await _read_body(headers, receive)
        except HttpError as exc:
            exc.headers["Connection"] = "close"  # whatever is left of the body cannot be framed
            raise
        api = self.api
        if action == "list":
            query_string = scope.get("query_string", b"").decode("latin-1")
            query = ListQuery.from_pairs(parse_qsl(query_string, keep_blank_values=True))
            if "application/jsonl" in headers.get("accept"):
                return _Reply(200, lines=api.stream(query)), True
            return _Reply(200, api.list(query)), True
        if action == "create":
            return _Reply(200, api.create(body)), True
        assert secret_id is not None
        if action == "fetch":
            return _Reply(200, api.fetch(secret_id)), True
        handler: Callable[[str, object], Any] = getattr(api, action)
        return _Reply(200, handler(secret_id, body)), True

    async def _send(self, reply: _Reply, method: str, send: Send) -> None:
        if reply.lines is not None:
            await self._send_stream(reply, send)
            return
        try:
            data = dumps(reply.body)
        except ValueError:  # NaN/Infinity from a vault written before they were refused
            sys.stderr.write("cbk-vault serve: a response could not be written as JSON\n")
            reply = _Reply(500, HttpError(500).body)
            data = dumps(reply.body)
        out = [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store"),
        ]
        out += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})

    async def _send_stream(self, reply: _Reply, send: Send) -> None:
        assert reply.lines is not None
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", b"application/jsonl; charset=utf-8"), (b"cache-control", b"no-store")],
            }
        )
        for line in reply.lines:
            try:
                data = dumps(line) + b"\n"
            except ValueError:
                await send(
                    {
                        "type": "http.response.body",
                        "body": dumps({"type": "error", "data": HttpError(500).body}) + b"\n",
                        "more_body": True,
                    }
                )
                break
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class _Headers:
    """Request headers by lower-case name (the first of repeated ones), decoded as latin-1."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw: dict[bytes, bytes] = {}
        for name, value in raw:
            self._raw.setdefault(name.lower(), value)

    def get(self, name: str) -> str:
        return self._raw.get(name.encode(), b"").decode("latin-1")

    def get_bytes(self, name: bytes) -> bytes:
        return self._raw.get(name, b"")

    def has_body(self) -> bool:
        return b"transfer-encoding" in self._raw or self.get("content-length").strip() not in ("", "0")


async def _read_body(headers: _Headers, receive: Receive) -> Any:
    """The JSON body (None when empty), read whole within BODY_TIMEOUT and MAX_BODY."""
    length_text = headers.get("content-length").strip()
    if length_text:
        try:
            length = int(length_text)
        except ValueError:
            raise HttpError(400, "Invalid content-length") from None
        if length < 0 or length > MAX_BODY:
            raise HttpError(413, f"Request body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0

    async def collect() -> None:
        nonlocal size
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "Request body not received")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise HttpError(413, f"Request body is larger than {MAX_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return

    try:
        await asyncio.wait_for(collect(), BODY_TIMEOUT)
    except asyncio.TimeoutError:
        raise HttpError(400, "Request body not received in time") from None
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; deep nesting is RecursionError
        raise InvalidRequestError("Invalid JSON body") from None
