"""The stand-in's HTTP server: the cloud's secret routes on a loopback socket, answered by ``_api``.

:class:`StandInServer` puts :class:`~vault._api.SecretApi` behind ``http.server`` (standard
library only, one thread per connection): routing under ``/v1/secret/`` and
``/api/v1/secret/``, the bearer token, the Host-header check, JSONL streaming, the cloud's
error shapes for routing, auth and size failures. ``cbk-vault serve`` runs it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from ._api import ListQuery, SecretApi
from ._net import is_loopback
from ._vault import Vault
from .errors import InvalidRequestError, MintRefusedError, VaultError

__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "MAX_BODY", "MAX_CONNECTIONS", "HttpError", "StandInServer"]

#: Requests bigger than this are refused before they are read (a value is at most 1 MiB).
MAX_BODY: Final = 4 << 20
#: Connections served at once; more are answered 503 and closed at once. The SDKs keep a few
#: each; a local process opening thousands must not get a thread (and a stack) for each.
MAX_CONNECTIONS: Final = 64
#: A request line and its headers must arrive within this many seconds of the connection (or of
#: the previous answer: it is also the keep-alive idle time): a client that trickles a byte at a
#: time is cut off.
HEADER_TIMEOUT: Final = 20.0
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
_RUNAS_HEADERS: Final = ("x-runas-user-id", "x-runas-userid", "x-runas-child-user-email")
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
    # Each blocking read or write gives up after this long (a client that stops reading our
    # answer); the watchdog's deadlines bound the total time of headers and body.
    timeout = 30.0
    _body_read = False

    def setup(self) -> None:
        super().setup()
        self.server.watch(self, HEADER_TIMEOUT)

    def finish(self) -> None:
        self.server.unwatch(self)
        super().finish()

    def handle_one_request(self) -> None:
        # Every request (the first, or the next on a kept-alive connection) gets the header deadline.
        self.server.watch(self, HEADER_TIMEOUT)
        super().handle_one_request()

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
        # The path is the client's bytes: escaped, so it cannot drive the operator's terminal.
        if self.server.standin.verbose:
            path = _escaped(urlsplit(self.path).path)
            sys.stderr.write(f"cbk-vault serve: {_escaped(str(self.command))} {path}\n")

    def log_error(self, format: str, *args: Any) -> None:
        # http.server reports malformed request lines here, quoting them: escaped, and only with --verbose.
        if self.server.standin.verbose:
            sys.stderr.write(f"cbk-vault serve: {_escaped(format % args)}\n")

    def _serve(self) -> None:
        # The headers are in: from here the body (if any) has its own deadline.
        self.server.watch(self, BODY_TIMEOUT)
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
        self.server.unwatch(self)  # the request is in; each write has the socket's own timeout
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


def _escaped(text: str) -> str:
    """Client-supplied text as one printable line: control, C1 and bidi characters as \\xNN."""
    return "".join(c if c.isprintable() and c not in _BIDI else f"\\x{ord(c):02x}" for c in text[:200])


_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS of them, each under a deadline.

    A watchdog thread shuts down the socket of a connection past its deadline, which ends
    the blocked read in its thread: no connection holds a thread longer than the deadlines.
    """

    daemon_threads = True
    allow_reuse_address = True
    standin: StandInServer

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._deadlines: dict[_Handler, float] = {}
        self._watch_lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, handler, bind_and_activate=True)
        self._watchdog = threading.Thread(target=self._expire, name="cbk-vault-standin-watchdog", daemon=True)
        self._watchdog.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Full: answer without a thread, so a flood costs us one small write per connection.
            with contextlib.suppress(OSError):
                body = _dumps({"message": "Too many connections", "code": "SERVICE_UNAVAILABLE"})
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (or that the watchdog cut off) is routine, not a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        sys.stderr.write(f"cbk-vault serve: error while serving a connection ({type(exc).__name__})\n")

    def watch(self, handler: _Handler, seconds: float) -> None:
        with self._watch_lock:
            self._deadlines[handler] = time.monotonic() + seconds

    def unwatch(self, handler: _Handler) -> None:
        with self._watch_lock:
            self._deadlines.pop(handler, None)

    def _expire(self) -> None:
        while not self._stopping.wait(0.25):
            now = time.monotonic()
            with self._watch_lock:
                late = [h for h, deadline in self._deadlines.items() if deadline <= now]
                for handler in late:
                    del self._deadlines[handler]
            for handler in late:
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()


class StandInServer:
    """The stand-in on a background thread: ``with StandInServer(v) as s: s.base_url, s.token``.

    Every request needs ``Authorization: Bearer <token>``. ``token=None`` (default) makes up
    a random one (``.token``); a given token is the one required. ``any_token=True`` accepts
    any bearer token instead: only for a vault that holds nothing of yours (``--ephemeral``),
    since any local process could then read and change what is served, and only on loopback.
    ``port=0`` picks a free port. The vault is not closed by :meth:`stop`; its owner closes it.
    """

    def __init__(
        self,
        vault: Vault,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        any_token: bool = False,
        verbose: bool = False,
    ) -> None:
        if token is not None and (not token or any(c.isspace() or not c.isprintable() for c in token)):
            raise InvalidRequestError("the token must be non-empty printable text without whitespace")
        if any_token and token is not None:
            raise InvalidRequestError("give a token or any_token=True, not both")
        if any_token and not is_loopback(host):
            raise InvalidRequestError("any_token=True is for loopback only")
        self.vault = vault
        self.accepts_any_token = any_token
        self.token = token if token is not None else "sk-local-" + secrets.token_hex(16)
        self.verbose = verbose
        self.loopback_only = is_loopback(host)
        self._httpd = _Server((host, port), _Handler)
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
