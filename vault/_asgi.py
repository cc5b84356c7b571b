"""The stand-in as an ASGI application: the cloud's secret routes, answered by ``_api``.

One application serves every way in: ``cbk-vault serve`` runs it under uvicorn on a loopback
socket (``_http``), and ``vault.testing.transport()`` hands it to an httpx client in process,
with no socket, no thread and no port. HTTP framing lives here, in the cloud's order
(docs/FIDELITY.md, "The cloud's request pipeline"): routing under ``/v1/`` and ``/api/v1/``
(the secret routes, the contact-scoped ones, the platform catalogue), the stand-in's own
Host-header check, Next's body parser (1 MiB, plain-text ``Invalid JSON``), ``HEAD`` and
``OPTIONS``, the method, a POST's content type, the bearer token and run-as headers, the list
``Accept`` formats (JSON, JSONL, CSV, event stream), and the cloud's error shapes. The route
semantics are ``_api``'s; the field and list rules ``_rules``'.
"""

from __future__ import annotations

import asyncio
import decimal
import functools
import hmac
import itertools
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from ._accesslog import PeerLookup, exe_of, peer_lookup
from ._api import JSON_NULL, ListQuery, SecretApi
from ._net import is_loopback
from ._vault import Vault
from .errors import InvalidRequestError, VaultError

__all__ = ["BODY_TIMEOUT", "MAX_BODY", "PEER_SCOPE_KEY", "HttpError", "StandInApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Next's default body limit ('1mb', 1,048,576 bytes). A longer body is 413 whatever the route,
#: method or token; an announced longer one is refused before it is read.
MAX_BODY: Final = 1 << 20
#: The whole body must arrive within this many seconds of the headers.
BODY_TIMEOUT: Final = 30.0
#: After a 413 the rest of the body is read and dropped (at most this much, while it keeps
#: coming), so a client still writing it reads the answer instead of a connection reset.
_DRAIN_LIMIT: Final = 16 * MAX_BODY
_DRAIN_IDLE: Final = 1.0

_PREFIXES: Final = ("/api/v1/", "/v1/")
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
# The secret routes that may read a value (as the cloud uses it): their reads are logged with
# the peer process, found from the connection (the stand-in's fetch never returns a value).
_VALUE_ACTIONS: Final = frozenset({"verify", "revoke", "mint", "proxy"})
#: Where the server puts a connection's peer lookup (a ``PeerLookup``) in the ASGI scope.
PEER_SCOPE_KEY: Final = "cbk_vault.peer"
# platform/pages/api/v1/contact/[contactId]/secret/[secretId]/*.js
_CONTACT_ACTIONS: Final = frozenset({"verify", "authenticate", "revoke", "mint", "proxy"})
_RUNAS_HEADERS: Final = (b"x-runas-user-id", b"x-runas-userid", b"x-runas-child-user-email")
# packages/http-codes: the default message of each status the stand-in answers by itself.
_DEFAULT_MESSAGES: Final[dict[int, tuple[str, str]]] = {
    400: ("Bad request", "BAD_REQUEST"),
    401: ("Not authenticated", "NOT_AUTHENTICATED"),
    403: ("Not authorized", "NOT_AUTHORIZED"),
    404: ("Not found", "NOT_FOUND"),
    405: ("Method not allowed", "METHOD_NOT_ALLOWED"),
    409: ("Conflict", "CONFLICT"),
    # packages/errors errorToErrorResponse: what a failure below the route becomes.
    500: ("System error occurred", "GENERIC_ERROR"),
    501: ("Not implemented", "NOT_IMPLEMENTED"),
    503: ("Service unavailable", "SERVICE_UNAVAILABLE"),
}
# packages/http-codes codeToStatusMap, for an error that ends a stream before its first item.
_CODE_STATUS: Final[dict[str, int]] = {
    "BAD_REQUEST": 400,
    "NOT_AUTHENTICATED": 401,
    "NO_SUBSCRIPTION": 402,
    "NOT_AUTHORIZED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "TIMEOUT": 408,
    "CONFLICT": 409,
    "UNPROCESSABLE_ENTITY": 422,
    "TOO_MANY_REQUESTS": 429,
    "LIMITS_REACHED": 429,
    "NOT_IMPLEMENTED": 501,
    "BAD_GATEWAY": 502,
    "SERVICE_UNAVAILABLE": 503,
    "GATEWAY_TIMEOUT": 504,
}
_JSON: Final = "application/json"
# platform/lib/stream.ts: the Accept values a list answers, and the content type it answers with.
_STREAM_FORMATS: Final = frozenset({"application/jsonl", "text/csv", "text/event-stream"})
_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
# What JavaScript's String.prototype.trim removes (WhiteSpace and LineTerminator).
_JS_SPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# The `content-type` package Next parses the header with (RFC 7231 media type and parameters).
_TCHARS: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE: Final = re.compile(rf"{_TCHARS}/{_TCHARS}")
_PARAMETER: Final = re.compile(
    rf'; *({_TCHARS}) *= *("(?:[\x0b\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\x0b\x20-\xff])*"|{_TCHARS}) *'
)
_QUOTED_PAIR: Final = re.compile(r"\\([\x0b\x20-\xff])")


class HttpError(Exception):
    """An error answer that is not one of the vault's own errors (routing, auth, framing)."""

    def __init__(self, status: int, message: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        default, code = _DEFAULT_MESSAGES[status]
        super().__init__(message or default)
        self.status = status
        self.body = {"message": message or default, "code": code}
        self.headers = dict(headers or {})


class _ParserError(Exception):
    """Next's body parser refusing a request: the message is the whole body, in plain text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large() -> _ParserError:
    return _ParserError(413, "Body exceeded 1mb limit")


@dataclass
class _Reply:
    status: int
    data: bytes = b""
    content_type: str | None = _JSON
    chunks: Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drain: bool = False  # read and drop the rest of the request body before finishing


@dataclass(frozen=True)
class _Route:
    scope: str  # "secret", "contact" or "platform"
    action: str
    method: str
    secret_id: str | None = None
    contact_id: str | None = None


@dataclass
class _Exchange:
    """One request as the pipeline sees it; ``body_read`` says whether its body was taken in."""

    method: str
    path: str
    query: str
    headers: _Headers
    receive: Receive
    body_read: bool = False
    body_done: bool = False
    #: Finds the process that sent the request (the access log's peer of the reads it makes).
    peer: PeerLookup | None = None

    async def drain(self) -> None:
        """Read and drop what is left of the body, bounded by _DRAIN_LIMIT and _DRAIN_IDLE."""
        left = _DRAIN_LIMIT
        while left > 0 and not self.body_done:
            try:
                message = await asyncio.wait_for(self.receive(), _DRAIN_IDLE)
            except asyncio.TimeoutError:
                return
            if message["type"] == "http.disconnect":
                return
            left -= len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)


def _this_process() -> tuple[int | None, str | None]:
    return os.getpid(), exe_of(os.getpid())


def escaped(text: str) -> str:
    """Client-supplied text as one printable line: control, C1 and bidi characters as ``\\xNN``."""
    return "".join(c if c.isprintable() and c not in _BIDI else f"\\x{ord(c):02x}" for c in text[:200])


def _no_constant(name: str) -> Any:
    # Python's json reads NaN/Infinity; JSON.parse does not.
    raise ValueError(f"{name} is not JSON")


def _js_float(text: str) -> float | None:
    # JSON.parse reads 1e400 as Infinity, which the platform's JSON.stringify of the body writes as null.
    number = float(text)
    return number if math.isfinite(number) else None


def dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8, with the three characters line readers split on written as escapes.

    httpx's ``iter_lines`` (what the official SDK streams JSONL with) breaks a line at U+2028,
    U+2029 and U+0085 as well as at newlines; escaped, a secret's name holding one stays one line.
    """
    text = _ENCODER.encode(obj)
    # translate() looks up every character; the scans for the three are far cheaper (an item is
    # encoded on every fetch), and almost no answer holds one.
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.translate(_LINE_BREAKS)
    return text.encode()


_LINE_BREAKS: Final = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}
# One encoder for every answer: json.dumps with any option builds a new one per call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _js_trim(text: str) -> str:
    return text.strip(_JS_SPACE)


def _route(path: str) -> _Route | None:
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            parts = path[len(prefix) :].split("/")
            break
    else:
        return None
    # A dynamic segment must be non-empty on the wire for Next to match it; blank after decoding
    # and trimming it is a 400 from requiredUrlParam (checked later, after the token).
    match parts:
        case ["secret", action] if action in _COLLECTION_ACTIONS:
            return _Route("secret", action, _ROUTES[action])
        case ["secret", sid, action] if sid and action in _ROUTES and action not in _COLLECTION_ACTIONS:
            return _Route("secret", action, _ROUTES[action], secret_id=unquote(sid))
        case ["contact", cid, "secret", "list"] if cid:
            return _Route("contact", "list", "GET", contact_id=unquote(cid))
        case ["contact", cid, "secret", sid, action] if cid and sid and action in _CONTACT_ACTIONS:
            return _Route("contact", action, "POST", secret_id=unquote(sid), contact_id=unquote(cid))
        case ["platform", "secret", "list"]:
            return _Route("platform", "list", "GET")
        case ["platform", "secret", "search"]:
            return _Route("platform", "search", "POST")
    return None


def _required(param: str | None) -> str:
    """platform/lib/query.get.ts ``requiredUrlParam``: trimmed, and a blank one is 400."""
    value = _js_trim(param or "")
    if not value:
        raise HttpError(400)
    return value


def _host_of(header: str) -> str:
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@functools.lru_cache(maxsize=64)
def _loopback_host(header: str) -> bool:
    """Whether a Host header names this machine. Cached: every request asks, clients send the
    same few values, and parsing the address costs more than the route; bounded, so a client
    sending a new Host each time only evicts."""
    return is_loopback(_host_of(header))


def _media_type(header: str) -> str | None:
    """platform/lib/header.ts ``getContentTypeHeader``/``getAcceptHeader``: the first media type,
    parameters dropped, trimmed and lower-cased; empty or ``*/*`` is none."""
    value = _js_trim(header.split(",")[0].split(";")[0]).lower()
    return None if value in ("", "*/*") else value


def _parsed_content_type(header: str) -> tuple[str, dict[str, str]]:
    """The media type and parameters as Next's parser reads them; a malformed header is text/plain."""
    header = header or "text/plain"
    index = header.find(";")
    media = _js_trim(header if index == -1 else header[:index])
    if not _MEDIA_TYPE.fullmatch(media):
        return "text/plain", {}
    parameters: dict[str, str] = {}
    if index != -1:
        position = index
        while (found := _PARAMETER.match(header, position)) is not None:
            position = found.end()
            value = found.group(2)
            if value.startswith('"'):
                value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
            parameters[found.group(1).lower()] = value
        if position != len(header):
            return "text/plain", {}
    return media.lower(), parameters


def _parse_body(headers: _Headers, raw: bytes) -> Any:
    """Next's ``parseBody``: the body decoded by its charset; JSON types parsed, others left as text."""
    media, parameters = _parsed_content_type(headers.get("content-type"))
    try:
        text = raw.decode(parameters.get("charset") or "utf-8", "replace")
    except (LookupError, UnicodeError, TypeError):  # a charset the decoder does not know, or cannot use
        raise _ParserError(400, "Invalid body") from None
    text = text.removeprefix("\ufeff")  # the decoder strips a byte order mark
    if media not in ("application/json", "application/ld+json"):
        return text
    if not text:
        return {}  # an empty JSON body is {} ("a common client-side mistake")
    try:
        parsed = json.loads(text, parse_constant=_no_constant, parse_float=_js_float)
    except (ValueError, RecursionError):  # deep nesting is RecursionError
        raise _ParserError(400, "Invalid JSON") from None
    # JSON's null and "no body" both parse to None; the routes answer them differently (A7, A8).
    return JSON_NULL if parsed is None else parsed


class StandInApp:
    """The stand-in's ASGI application over a vault.

    Every route needs ``Authorization: Bearer <token>``: ``token`` (default: a random one,
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
        in_process: bool = False,
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
        #: Requests come from this process (vault.testing.transport): it is the peer of their reads.
        self.in_process = in_process
        self.api = SecretApi(vault, frontend_url=frontend_url)

    def __repr__(self) -> str:
        return f"<StandInApp {self.vault!r}>"

    def check_token(self, header: str | None) -> None:
        """The token is the second single-space-separated word of ``Authorization``, trimmed.

        As on the cloud (platform/lib/session.get.js): ``Bearer  tok`` (two spaces) has an
        empty second word and is refused; words after the token are ignored. Unlike the cloud,
        which never looks at the first word, only the ``Bearer`` scheme (any case) is accepted,
        so a ``Basic`` header meant for another service is never taken for a token (a
        deliberate difference, docs/FIDELITY.md B1).
        """
        words = (header or "").split(" ")
        given = _js_trim(words[1]) if len(words) > 1 else ""
        if words[0].lower() != "bearer" or not given:
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
        exchange = _Exchange(method, path, scope.get("query_string", b"").decode("latin-1"), headers, receive)
        exchange.peer = scope.get(PEER_SCOPE_KEY) or (_this_process if self.in_process else None)
        try:
            reply = await self._answer(exchange)
        except _ParserError as exc:
            reply = _Reply(exc.status, exc.message.encode(), content_type=None, drain=exc.status == 413)
        except HttpError as exc:
            reply = _Reply(exc.status, dumps(exc.body), headers=exc.headers)
        except VaultError as exc:
            reply = _error_reply(exc)
        except Exception:  # a bug must not leak its text to clients
            sys.stderr.write("cbk-vault serve: internal error while answering a request\n")
            reply = _Reply(500, dumps(HttpError(500).body))
        if not exchange.body_read and headers.has_body():
            # Refused before the body was read (an unknown route, the Host check, an announced
            # length over the limit, a body cut short): whatever is left of it cannot be framed.
            reply.headers["Connection"] = "close"
        await self._send(reply, exchange, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, exchange: _Exchange) -> _Reply:
        """The cloud's pipeline: Next's body parser, preflight, method, content type, session, route."""
        route = _route(exchange.path)
        if route is None:
            raise HttpError(404)
        headers = exchange.headers
        if self.loopback_only and not _loopback_host(headers.get("host")):
            # DNS rebinding: a web page on another name must not reach a loopback server. The
            # stand-in's own check, before anything is read.
            raise HttpError(403, "Host not allowed", headers={"X-Failure-Code": "NOT_AUTHORIZED"})
        body = _parse_body(headers, await _read_body(exchange))
        # platform/lib/method.ts withPreflight, withGet/withPost
        if exchange.method == "HEAD":
            return _Reply(200, content_type=None)
        if exchange.method == "OPTIONS":
            return _Reply(200, dumps({}))
        if exchange.method != route.method:
            raise HttpError(405)
        if route.method == "POST" and _media_type(headers.get("content-type")) != _JSON:
            raise HttpError(400)
        # platform/lib/session.get.js getSession
        self.check_token(headers.get("authorization") or None)
        if any(headers.get_bytes(h).strip(b" \t") for h in _RUNAS_HEADERS):
            raise HttpError(401)  # no child users offline: the cloud's answer for an unknown one
        if route.scope == "secret":
            return self._secret_route(route, exchange, body)
        api = self.api
        if route.scope == "contact":  # no contacts offline: _api answers 404 (J1, J2)
            contact_id = _required(route.contact_id)
            if route.action == "list":
                fmt = _accept_format(headers)  # withStream reads Accept before the handler runs
                page = api.contact_list(contact_id, _list_query(exchange))
                return _Reply(200, dumps(page)) if fmt == _JSON else _stream_reply(fmt, _item_events(page))
            return _Reply(200, dumps(api.contact_use(contact_id, _js_trim(route.secret_id or ""), route.action, body)))
        if route.action == "list":  # the platform catalogue (J3, J4)
            fmt = _accept_format(headers)
            if fmt == _JSON:
                return _Reply(200, dumps(api.catalogue_list(_list_query(exchange))))
            return _stream_reply(fmt, api.catalogue_stream(_list_query(exchange)))
        return _Reply(200, dumps(api.catalogue_search(body)))

    def _secret_route(self, route: _Route, exchange: _Exchange, body: Any) -> _Reply:
        api = self.api
        if route.action == "list":
            fmt = _accept_format(exchange.headers)
            query = _list_query(exchange)
            if fmt == _JSON:
                return _Reply(200, dumps(api.list(query)))
            return _stream_reply(fmt, api.stream(query))
        if route.action == "create":
            return _Reply(200, dumps(api.create(body)))
        secret_id = _required(route.secret_id)
        if route.action == "fetch":
            return _Reply(200, dumps(api.fetch(secret_id)))
        handler: Callable[[str, object], Any] = getattr(api, route.action)
        if route.action in _VALUE_ACTIONS and exchange.peer is not None:
            # Looked up here, before the engine's lock is taken (a bounded but slow walk of /proc
            # under it would stall every other thread), only for value routes, once per connection.
            with peer_lookup(exchange.peer):
                return _Reply(200, dumps(handler(secret_id, body)))
        return _Reply(200, dumps(handler(secret_id, body)))

    async def _send(self, reply: _Reply, exchange: _Exchange, send: Send) -> None:
        out: list[tuple[bytes, bytes]] = []
        if reply.content_type is not None:
            out.append((b"content-type", reply.content_type.encode()))
        if reply.chunks is None:
            out.append((b"content-length", str(len(reply.data)).encode()))
        out.append((b"cache-control", b"no-store"))
        out += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        data = b"" if exchange.method == "HEAD" else reply.data
        if reply.drain:
            # The whole answer goes out first; the connection ends once the body is dropped.
            await send({"type": "http.response.body", "body": data, "more_body": True})
            await exchange.drain()
            await send({"type": "http.response.body", "body": b""})
            return
        if reply.chunks is None:
            await send({"type": "http.response.body", "body": data})
            return
        for chunk in reply.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _error_reply(exc: VaultError) -> _Reply:
    body = exc.to_dict()
    if exc.status == 500 and "code" in body:
        # packages/errors errorToErrorResponse: every failure below the route is GENERIC_ERROR.
        body = {**body, "code": "GENERIC_ERROR"}
    extra = {"X-Failure-Code": exc.code} if exc.status == 403 else {}
    try:
        return _Reply(exc.status, dumps(body), headers=extra)
    except ValueError:
        return _Reply(500, dumps(HttpError(500).body))


def _list_query(exchange: _Exchange) -> ListQuery:
    return ListQuery.from_pairs(parse_qsl(exchange.query, keep_blank_values=True))


def _accept_format(headers: _Headers) -> str:
    """platform/lib/stream.ts ``withStream``: JSON, JSONL, CSV or an event stream; else 400."""
    accept = _media_type(headers.get("accept")) or _JSON
    if accept != _JSON and accept not in _STREAM_FORMATS:
        raise HttpError(400, "Unsupported accept header")
    return accept


def _stream_reply(fmt: str, events: Iterator[dict[str, Any]]) -> _Reply:
    """A list as a stream. Nothing to send is an empty body; a failure before the first item is
    an ordinary error answer (the cloud awaits the first event before it answers)."""
    first = next(events, None)
    if first is None:
        return _Reply(200, content_type=fmt)
    if first.get("type") == "error":
        error = dict(first.get("data") or {})
        return _Reply(_CODE_STATUS.get(str(error.get("code")), 500), dumps(error))
    format_events = {"application/jsonl": _jsonl, "text/csv": _csv, "text/event-stream": _event_stream}[fmt]
    return _Reply(200, content_type=fmt, chunks=format_events(_guarded(itertools.chain([first], events))))


def _guarded(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    # The answer has started: a bug while paging becomes the stream's error event, not a traceback.
    try:
        yield from events
    except Exception:
        sys.stderr.write("cbk-vault serve: internal error while streaming a list\n")
        yield {"type": "error", "data": _generic_error()}


def _item_events(page: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    return ({"type": "item", "data": item} for item in page.get("items") or [])


def _generic_error() -> dict[str, str]:
    return HttpError(500).body


def _jsonl(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        try:
            yield dumps(event) + b"\n"
        except ValueError:  # NaN/Infinity from a vault written before they were refused
            yield dumps({"type": "error", "data": _generic_error()}) + b"\n"
            return


def _event_stream(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    # `event: <type>\ndata: <JSON>\n\n` per event.
    for event in events:
        try:
            data = dumps(event.get("data"))
        except ValueError:
            yield b"event: error\ndata: " + dumps(_generic_error()) + b"\n\n"
            return
        yield b"event: " + str(event.get("type")).encode() + b"\ndata: " + data + b"\n\n"


def _csv(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    # The first event's field names (when it is an item), then each item's values in double
    # quotes with `"` doubled. Anything but an item (an error) is left out.
    for index, event in enumerate(events):
        if event.get("type") != "item":
            continue
        item: dict[str, Any] = event.get("data") or {}
        if index == 0:
            yield (",".join(item) + "\n").encode()
        row = ",".join('"' + _js_string(value).replace('"', '""') + '"' for value in item.values())
        yield (row + "\n").encode()


def _js_string(value: Any) -> str:
    """``value?.toString() || ''`` in JavaScript: null is empty, objects ``[object Object]``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _js_number(float(value)) if isinstance(value, float) or abs(value) >= 10**21 else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join("" if item is None else _js_string(item) for item in value)
    return "[object Object]"


def _js_number(number: float) -> str:
    """``Number.prototype.toString``: shortest digits, plain between 1e-7 and 1e21."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == int(number) and abs(number) < 1e21:
        return str(int(number))
    text = repr(number)
    mantissa, _, exponent = text.partition("e")
    if not exponent:
        return text
    power = int(exponent)
    if -7 < power < 21:
        return format(decimal.Decimal(text), "f")
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


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


async def _read_body(exchange: _Exchange) -> bytes:
    """The raw body, read whole within BODY_TIMEOUT and MAX_BODY (Next's ``raw-body`` limits).

    Every request's body is read, whatever its route, method or token, as Next's parser does
    before any route code: what an unauthenticated client can make the stand-in hold is
    bounded by MAX_BODY per connection and the connection cap.
    """
    length_text = exchange.headers.get("content-length").strip()
    if length_text:
        try:
            length = int(length_text)
        except ValueError:
            raise _ParserError(400, "Invalid body") from None
        if length > MAX_BODY:
            raise _too_large()  # before reading any of it
        if length < 0:
            raise _ParserError(400, "Invalid body")
    chunks: list[bytes] = []
    size = 0

    def take(message: Message) -> bool:
        """One message of the body in; whether it was the last."""
        nonlocal size
        if message["type"] == "http.disconnect":
            raise _ParserError(400, "Invalid body")
        chunk = message.get("body", b"")
        size += len(chunk)
        exchange.body_done = not message.get("more_body", False)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
        return exchange.body_done

    async def collect() -> None:
        while not take(await exchange.receive()):
            pass

    # A request that announces no body (most: every GET) is whole once its headers are in, so its
    # one receive cannot wait (h11 ends such a request at its headers) and needs no timer; one
    # that announces a body, or somehow goes on, is read under BODY_TIMEOUT.
    if exchange.headers.has_body() or not take(await exchange.receive()):
        try:
            if sys.version_info >= (3, 11):
                # The deadline on this task itself: wait_for would run collect() as a task of its
                # own, one more task and one more trip through the event loop for every request.
                async with asyncio.timeout(BODY_TIMEOUT):
                    await collect()
            else:
                await asyncio.wait_for(collect(), BODY_TIMEOUT)
        except asyncio.TimeoutError:
            raise _ParserError(400, "Invalid body") from None
    exchange.body_read = True
    return b"".join(chunks)
