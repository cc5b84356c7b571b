"""ChatBotKitRemote: the cloud's secret API over httpx, the way the official SDKs call it.

The only module that imports httpx (an optional extra: ``cbk-vault[sync]``). Every
foreign error is translated here, once, into the ``RemoteError`` branch of the
VaultError tree::

    VaultError
    └── RemoteError                     the cloud's code, e.g. CONFLICT, BAD_REQUEST
        ├── RemoteAuthError             NOT_AUTHENTICATED  401, or no token at all
        ├── RemoteForbiddenError        NOT_AUTHORIZED     403
        ├── RemoteNotFoundError (KeyError) NOT_FOUND       404
        ├── RemoteUnavailableError      UNAVAILABLE        retries and time budget used up, network down
        └── RemoteProtocolError         BAD_RESPONSE       a response that breaks the API's shape

Safety rules kept here: TLS verification is always on for https and there is no
switch to turn it off; plain http is accepted only for a loopback address literal
(127.0.0.0/8, ::1) or ``localhost`` (tests and a local stand-in; names that merely look
local may resolve anywhere); redirects are never followed (the token would go with them); the
token never appears in a repr, a URL or an error message.

Every byte of an answer is the cloud's to choose, so what an answer may cost is capped
before the work is done: a body is streamed and refused past ``MAX_BODY`` (an error body
is read up to ``MAX_ERROR_BODY``), never decompressed (``accept-encoding: identity``; any
other encoding is refused), parsed with numbers bounded (no integer literal past 20
digits, no number past a double), and the call's one deadline covers every socket
operation of every attempt, body included (see ``_DeadlineBackend``).
"""

from __future__ import annotations

import email.utils
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeGuard

import httpcore
import httpx

from .._net import is_loopback_address
from ..errors import (
    InvalidRequestError,
    RemoteAuthError,
    RemoteError,
    RemoteForbiddenError,
    RemoteNotFoundError,
    RemoteProtocolError,
    RemoteUnavailableError,
)

if TYPE_CHECKING:
    from .._vault import Vault

__all__ = [
    "DEFAULT_BASE_URL",
    "MARKER_KEY",
    "MAX_BODY",
    "MAX_CONCURRENCY",
    "MAX_ERROR_BODY",
    "MAX_REMOTE_ID",
    "TOKEN_ALIAS",
    "TOKEN_ENV",
    "ChatBotKitRemote",
    "remote_id_ok",
]

DEFAULT_BASE_URL: Final = "https://api.chatbotkit.com"
TOKEN_ENV: Final = "CHATBOTKIT_API_TOKEN"  # noqa: S105 - a variable name, not a token
#: A vault secret with this alias holds the API token when neither an argument nor the env var does.
TOKEN_ALIAS: Final = "chatbotkit-api-token"  # noqa: S105 - an alias, not a token
#: The meta key a pushed secret carries in the cloud: "<vault ref>:<local id>".
MARKER_KEY: Final = "cbkVaultRef"

#: The longest cloud id taken (the cloud's are 25-character cuids): it goes into URL paths, links and the index.
MAX_REMOTE_ID: Final = 128

#: The largest answer read. The biggest legitimate one is a list page: 100 items (``take`` caps at
#: 100), each with meta and config at the vault's 64 KiB limits, a 64 KiB description and a 1 KiB
#: name, about 19.3 MiB of JSON; the rest is room for JSON's escapes (a quote or backslash costs 2
#: bytes, a control character 6). A larger answer is refused with RemoteProtocolError, unread.
MAX_BODY: Final = 32 << 20
#: An error answer is read only this far: only its ``message`` (shortened to 200 characters) and
#: ``code`` are used. A longer one is dropped, and the error keeps its status.
MAX_ERROR_BODY: Final = 64 << 10
#: The longest integer literal parsed: msgpack (and so the vault) holds -2**63..2**64-1, 20 digits.
#: int() is quadratic in the digits, and Python 3.10 has no limit of its own.
_MAX_INT_DIGITS: Final = 20

#: The longest list cursor sent back (the cloud's is the last item's id, 25 characters).
_MAX_CURSOR: Final = 1024

_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
#: The most requests one remote sends at once (sync's ``concurrency`` is capped here). The
#: stand-in serves 64 connections; the cloud's rate limit is per token, so more workers only
#: meet 429 sooner (docs/SYNC.md, "Concurrency").
MAX_CONCURRENCY: Final = 16
_MAX_ITEMS: Final = 1_000_000  # the vault's own record cap; a listing longer than this is a runaway server
_MAX_MESSAGE: Final = 200


def _resolve_token(token: str | None, vault: Vault | None, token_secret: str) -> tuple[str, str | None]:
    """The token, and the id of the vault record it was read from (None: argument or env)."""
    source: str | None = None
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None and vault is not None:
        from ..errors import NotFoundError

        try:
            record = vault.secret.fetch(token_secret)
        except NotFoundError:
            token = None
        else:
            token, source = record.value, record.id
    if not token:
        raise RemoteAuthError(
            f"no ChatBotKit API token: pass token=, set {TOKEN_ENV}, or store it in the vault as @{TOKEN_ALIAS}",
            status=0,
        )
    token = token.strip()
    # A newline or space would let the token split or forge a header line.
    if not token or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise InvalidRequestError("the API token must be one word of printable characters")
    return token, source


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with every operation cut to the deadline of the call in progress.

    httpcore gives each socket read the request's fixed read timeout, so a peer that sends one
    byte just before each timeout (in the status line, the headers or the body) keeps a response
    alive for as long as it likes. Here each connect, TLS handshake, read and write waits at most
    until the deadline set for the calling thread (``begin``/``end`` around each attempt), and one
    that starts past it fails at once with httpcore's timeout, so no answer outlives its call.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._inner = httpcore.SyncBackend()
        self._clock = clock
        self._local = threading.local()

    def begin(self, deadline: float) -> None:
        """Bound every socket operation on this thread by ``deadline`` (on the remote's clock)."""
        self._local.deadline = deadline

    def end(self) -> None:
        """Stop bounding this thread's socket operations."""
        self._local.deadline = None

    def cut(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` shortened to the time left; ``error`` when none is."""
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - self._clock()
        if left <= 0:
            raise error("the call's time budget is spent")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        """A TCP connection whose stream keeps to the deadline."""
        stream = self._inner.connect_tcp(
            host, port, self.cut(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        """Not used (no ``uds``); kept whole so the backend is complete."""
        stream = self._inner.connect_unix_socket(path, self.cut(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's own retries are off; kept for the interface)."""
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads, writes and TLS handshake end by the backend's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, backend: _DeadlineBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read, waiting no longer than the time left."""
        return self._inner.read(max_bytes, self._backend.cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write (``sendall``'s timeout bounds the whole write), within the time left."""
        self._inner.write(buffer, self._backend.cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the connection."""
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        """The TLS handshake (its timeout bounds the whole handshake), within the time left."""
        tls = self._inner.start_tls(ssl_context, server_hostname, self._backend.cut(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        """What the inner stream knows (socket, peer address, TLS object)."""
        return self._inner.get_extra_info(info)


#: httpcore's errors as httpx's, most specific first (what httpx.HTTPTransport does, in one table).
_HTTPCORE_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
)
_HTTPCORE: Final = tuple(theirs for theirs, _ in _HTTPCORE_ERRORS)


def _transport_error(exc: Exception) -> httpx.TransportError:
    # Anything else is a bug, not the network: it propagates as it is.
    return next(ours for theirs, ours in _HTTPCORE_ERRORS if isinstance(exc, theirs))(type(exc).__name__)


class _BodyStream(httpx.SyncByteStream):
    """httpcore's response body for httpx, with httpcore's errors translated."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except _HTTPCORE as exc:
            raise _transport_error(exc) from None

    def close(self) -> None:
        """Give the connection back (or drop it, if the body was not read to its end)."""
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class _Transport(httpx.BaseTransport):
    """httpx over an httpcore pool whose sockets keep to the call's deadline (``_DeadlineBackend``).

    The same request and response plumbing as ``httpx.HTTPTransport`` (HTTP/1.1, TLS verified
    against certifi's CA bundle, no proxy, nothing taken from the environment), built from
    httpcore's public API because ``HTTPTransport`` has no way to give its pool a backend.
    """

    def __init__(self, backend: _DeadlineBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            # verify=True is the default; spelt out because it must never change.
            # trust_env=False: the CA bundle is certifi's, not whatever SSL_CERT_FILE points at.
            ssl_context=httpx.create_ssl_context(verify=True, trust_env=False),
            # One connection per sync worker at most (``sync(concurrency=...)`` is capped at
            # MAX_CONCURRENCY), so no worker ever waits in the pool for another's socket.
            max_connections=MAX_CONCURRENCY,
            keepalive_expiry=5.0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pool; errors come out as httpx's."""
        assert isinstance(request.stream, httpx.SyncByteStream)
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            resp = self._pool.handle_request(req)
        except _HTTPCORE as exc:
            raise _transport_error(exc) from None
        return httpx.Response(
            status_code=resp.status, headers=resp.headers, stream=_BodyStream(resp.stream), extensions=resp.extensions
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


class _Gate:
    """Held closed while any thread sleeps out a 429: the other threads of one remote wait for it.

    A 429 (or any retryable answer with ``Retry-After``) speaks about the token, not about one
    request: while one worker waits as it was told, every worker waits, or their requests would
    meet 429 too and spend their retries. The thread that was told sleeps (the injected
    ``sleep``) with the gate held; the others block until no thread holds it, each within its
    own call's deadline.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep every other request of this remote from starting for the duration of the block."""
        with self._cond:
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                if not self._holders:
                    self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Block until no thread holds the gate; False when it is still held after ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._holders, timeout=max(0.0, timeout))


class _Answer:
    """One attempt's outcome: the status, the headers, and the body as read within its cap
    (None: an error body past ``MAX_ERROR_BODY`` or in an encoding we did not ask for)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: httpx.Headers, body: bytes | None) -> None:
        self.status, self.headers, self.body = status, headers, body


class ChatBotKitRemote:
    """The cloud's secret resource: list (all pages), fetch, create, update, delete.

    ``token``: the API token; when None, ``$CHATBOTKIT_API_TOKEN``, then the value of the
    vault secret ``token_secret`` (``@chatbotkit-api-token``) if ``vault`` is given.
    ``transport``: an httpx transport to use instead of the network (tests).
    ``max_retries``/``max_backoff``/``max_total``: retries on 429 and 5xx, the longest single
    wait (a longer Retry-After gives up instead of waiting), and the whole call's time budget.
    """

    def __init__(
        self,
        token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        vault: Vault | None = None,
        token_secret: str = "@" + TOKEN_ALIAS,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_backoff: float = 30.0,
        max_total: float = 120.0,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            raise InvalidRequestError("base_url is not a valid URL") from None
        if url.scheme not in ("https", "http") or not url.host:
            raise InvalidRequestError("base_url must be an https:// URL")
        if url.scheme == "http" and not is_loopback_address(url.host):
            # A token sent in clear text over the network is a token given away.
            raise InvalidRequestError(
                "base_url must use https (plain http is allowed only for 127.0.0.0/8, [::1] or localhost)"
            )
        if url.userinfo or url.query or url.fragment:
            raise InvalidRequestError("base_url must not carry credentials, a query or a fragment")
        self._token, source = _resolve_token(token, vault, token_secret)
        #: The vault record the token was read from, if any: sync never pushes it.
        self.token_record_id: str | None = source
        # The SDKs build /api/v1/... and drop "/api" only for the hosted API's host.
        prefix = "/v1" if url.host == "api.chatbotkit.com" else "/api/v1"
        self._root = url.copy_with(path=url.path.rstrip("/") + prefix)
        self.base_url = str(url)
        self._max_retries = max(0, max_retries)
        self._max_backoff = max(0.0, max_backoff)
        self._max_total = max(0.0, max_total)
        self._timeout = max(0.001, timeout)
        self._page_size = max(1, min(100, page_size))
        self._sleep = sleep
        self._clock = clock
        self._backend = _DeadlineBackend(clock)
        self._client = httpx.Client(
            # A transport given (tests) has no sockets to bound: the deadline is then checked
            # between body chunks only.
            transport=transport if transport is not None else _Transport(self._backend),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # no proxy or CA bundle swapped in by environment variables
            # identity: a compressed answer could inflate a thousandfold past MAX_BODY on the way in.
            headers={"accept": "application/json", "accept-encoding": "identity", "user-agent": "cbk-vault-sync"},
        )
        #: Requests sent (including retries), for the CLI's summary and tests.
        self.requests = 0
        # Sync's workers share this remote: the counter and the 429 gate are theirs in common.
        self._count_lock = threading.Lock()
        self._gate = _Gate()

    def __repr__(self) -> str:
        return f"<ChatBotKitRemote {self.base_url!r}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("ChatBotKitRemote holds an API token and cannot be pickled")

    def is_token(self, value: str | None) -> bool:
        """Is ``value`` the API token in use? (Sync keeps such a record local, whatever its alias.)"""
        if not value:
            return False
        return hmac.compare_digest(value.strip().encode("utf-8"), self._token.encode("utf-8"))

    def token_digest(self, digest: Callable[[str], str | None]) -> str | None:
        """``digest`` of the token: sync compares it with its keyed fingerprints of values it did
        not decrypt this time (unchanged since the last sync), to keep a value equal to the token local."""
        return digest(self._token)

    def close(self) -> None:
        """Close the HTTP client (only one this remote created itself)."""
        self._client.close()

    def __enter__(self) -> ChatBotKitRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the resource ---------------------------------------------------------------------

    def list_all(self, *, meta: Mapping[str, str] | None = None, deadline: float | None = None) -> list[dict[str, Any]]:
        """Every secret (no values), oldest first, following the cursor until an empty page.

        ``deadline`` (on the ``clock``): when given, every page request must finish by then;
        otherwise each page has its own ``max_total`` budget.
        """
        return [item for page in self.list_pages(meta=meta, deadline=deadline) for item in page]

    def list_pages(
        self, *, meta: Mapping[str, str] | None = None, deadline: float | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """``list_all``, one page at a time: sync parses each page as it comes and keeps no raw answer."""
        count = 0
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            params: dict[str, str] = {"order": "asc", "take": str(self._page_size)}
            if cursor is not None:
                params["cursor"] = cursor
            for key, want in (meta or {}).items():
                params[f"meta.{key}"] = want
            body = self._call("GET", "/secret/list", params=params, deadline=deadline)
            page = body.get("items") if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise RemoteProtocolError("the list response has no items array")
            if not page:
                return
            for item in page:
                item_id = item.get("id") if isinstance(item, dict) else None
                if not remote_id_ok(item_id):
                    raise RemoteProtocolError("a listed secret has no id, or one that is not a plain path segment")
                if item_id in seen:
                    raise RemoteProtocolError("the listing repeated a secret (the cursor did not advance)")
                seen.add(item_id)
            count += len(page)
            if count > _MAX_ITEMS:
                raise RemoteProtocolError(f"the listing passed {_MAX_ITEMS} secrets")
            nxt = body.get("cursor")
            if isinstance(nxt, str) and nxt:
                # It goes back in the next query string: text that cannot be sent (a lone
                # surrogate, a control character) or that grows without bound is not a cursor.
                if len(nxt) > _MAX_CURSOR or not (nxt.isascii() and nxt.isprintable()):
                    raise RemoteProtocolError(
                        f"the list response's cursor is not printable ASCII of at most {_MAX_CURSOR} characters"
                    )
                cursor = nxt
            else:
                cursor = page[-1]["id"]
            yield page

    def fetch(self, secret_id: str) -> dict[str, Any]:
        """One secret's item by id (no value; ``config.clientSecret`` masked)."""
        body = self._call("GET", f"/secret/{_segment(secret_id)}/fetch")
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise RemoteProtocolError("the fetch response is not a secret")
        return body

    def create(self, body: Mapping[str, Any], *, marker: str | None = None) -> str:
        """Create a secret; returns its id.

        A 5xx or a dropped connection may come after the cloud stored the secret, so before
        retrying, a create that carries ``marker`` looks it up by ``meta.cbkVaultRef`` and
        returns the one that exists: a retry never makes a duplicate.
        """

        def recover(deadline: float) -> Any:
            """Find the secret an interrupted create left behind, by its marker (None: it was not created)."""
            if marker is None:
                return None
            # The lookup spends the create's own budget: the whole call stays bounded.
            found = self.list_all(meta={MARKER_KEY: marker}, deadline=deadline)
            return {"id": found[0]["id"]} if found else None

        return _id_of(self._call("POST", "/secret/create", json=dict(body), recover=recover))

    def update(self, secret_id: str, body: Mapping[str, Any]) -> str:
        """Update a secret with the request body; returns the cloud's id for it."""
        return _id_of(self._call("POST", f"/secret/{_segment(secret_id)}/update", json=dict(body)))

    def delete(self, secret_id: str) -> None:
        """Delete a secret in the cloud."""
        self._call("POST", f"/secret/{_segment(secret_id)}/delete", json={})

    # --- transport ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: dict[str, Any] | None = None,
        recover: Callable[[float], Any] | None = None,
        deadline: float | None = None,
    ) -> Any:
        """One request series: retries included, it ends by ``deadline`` (default: now + max_total).

        Each attempt's httpx timeout is cut to the time left, and no attempt starts after the
        deadline, so a slow server cannot stretch the series past its budget.
        """
        url = self._root.copy_with(path=self._root.path + path)
        headers = {"authorization": f"Bearer {self._token}"}
        if json is not None:
            headers["content-type"] = "application/json"
        if deadline is None:
            deadline = self._clock() + self._max_total
        attempt = 0
        while True:
            attempt += 1
            answer: _Answer | None = None
            failure = ""
            if not self._gate.wait(deadline - self._clock()):
                # Another worker was told to back off for longer than this call may last.
                raise RemoteUnavailableError(
                    f"ChatBotKit asked to wait past this call's {self._max_total:g} s budget", status=429
                )
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RemoteUnavailableError(
                    f"ChatBotKit did not answer within the {self._max_total:g} s budget ({attempt - 1} attempts)",
                    status=0,
                )
            try:
                with self._count_lock:
                    self.requests += 1
                answer = self._attempt(method, url, params, json, headers, deadline, min(self._timeout, remaining))
            except httpx.TransportError as exc:
                # The exception text names the host, never the headers; keep only its class.
                failure = f"network error ({type(exc).__name__})"
            if answer is not None:
                if answer.status == 200:
                    return _json_body(answer.body)
                if answer.status not in _RETRY_STATUS:
                    raise self._error_for(answer)
                failure = f"HTTP {answer.status}"
            if recover is not None and (answer is None or answer.status != 429):
                # 429 is refused before any work; anything else may have been applied.
                found = recover(deadline)
                if found is not None:
                    return found
            delay = self._delay(attempt, answer)
            if attempt > self._max_retries or delay is None or self._clock() + delay >= deadline:
                if answer is not None and answer.status in _RETRY_STATUS:
                    err = self._error_for(answer)
                    raise RemoteUnavailableError(
                        f"ChatBotKit kept failing after {attempt} attempts: {err.message}",
                        code=err.code,
                        status=answer.status,
                    )
                raise RemoteUnavailableError(f"ChatBotKit unreachable after {attempt} attempts: {failure}", status=0)
            if answer is not None and (answer.status == 429 or "retry-after" in answer.headers):
                # The server asked the token to slow down: every worker holds off, not only this one.
                with self._gate.held():
                    self._sleep(delay)
            else:
                self._sleep(delay)

    def _attempt(
        self,
        method: str,
        url: httpx.URL,
        params: Mapping[str, str] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
        deadline: float,
        timeout: float,
    ) -> _Answer:
        """One request, its body streamed within its cap; every socket operation ends by ``deadline``."""
        self._backend.begin(deadline)
        try:
            with self._client.stream(method, url, params=params, json=json, headers=headers, timeout=timeout) as r:
                ok = r.status_code == 200
                body = self._read(r, MAX_BODY if ok else MAX_ERROR_BODY, deadline, strict=ok)
                return _Answer(r.status_code, r.headers, body)
        finally:
            self._backend.end()

    def _read(self, response: httpx.Response, cap: int, deadline: float, *, strict: bool) -> bytes | None:
        """The body, at most ``cap`` bytes, by ``deadline``.

        ``strict`` (a 200): an encoded or oversized body is a RemoteProtocolError. Otherwise (an
        error answer, read only for its message) such a body is dropped: None.
        """
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            if strict:
                raise RemoteProtocolError(
                    "ChatBotKit sent a compressed body (content-encoding), though asked for identity"
                )
            return None
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            if strict:
                raise RemoteProtocolError(f"ChatBotKit's answer is larger than the {cap >> 20} MiB cap ({cap} bytes)")
            return None
        body = bytearray()
        # A response built in memory (an httpx.MockTransport's) arrives already read.
        chunks = [response.content] if response.is_stream_consumed else response.iter_raw()
        for chunk in chunks:
            body += chunk
            if len(body) > cap:
                if strict:
                    raise RemoteProtocolError(
                        f"ChatBotKit's answer is larger than the {cap >> 20} MiB cap ({cap} bytes)"
                    )
                return None
            if self._clock() >= deadline:
                # Our own transport cuts every read at the deadline; this covers a given one.
                raise RemoteUnavailableError(
                    f"ChatBotKit's answer did not arrive within the {self._max_total:g} s budget", status=0
                )
        return bytes(body)

    def _delay(self, attempt: int, answer: _Answer | None) -> float | None:
        """How long to wait before the next attempt; None when the server asks for too long."""
        if answer is not None and "retry-after" in answer.headers:
            wait = _retry_after(answer.headers["retry-after"])
            if wait is not None:
                return wait if wait <= self._max_backoff else None
        # Like the Node SDK: 250 ms, doubling.
        return float(min(self._max_backoff, 0.25 * 2 ** (attempt - 1)))

    def _error_for(self, answer: _Answer) -> RemoteError:
        status = answer.status
        message, code = f"HTTP error {status}", f"ERROR_{status}"
        try:
            body = None if answer.body is None else _decode(answer.body)
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("message"), str) and body["message"]:
                message = body["message"]
            if isinstance(body.get("code"), str) and body["code"]:
                code = body["code"]
        message = self._clean(message)
        if len(code) > 64 or not code.replace("_", "").isalnum():
            code = f"ERROR_{status}"
        text = f"ChatBotKit {status} {code}: {message}"
        cls: type[RemoteError] = RemoteError
        if status == 401:
            cls = RemoteAuthError
            text += f" (check the API token: argument, {TOKEN_ENV}, or @{TOKEN_ALIAS} in the vault)"
        elif status == 403:
            cls = RemoteForbiddenError
        elif status == 404:
            cls = RemoteNotFoundError
        return cls(text, code=code, status=status)

    def _clean(self, message: str) -> str:
        # A server that echoes the Authorization header must not get the token into our errors.
        message = message.replace(self._token, "<token>")
        message = "".join(ch if ch.isprintable() else " " for ch in message)
        return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _retry_after(raw: str) -> float | None:
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def remote_id_ok(value: object) -> TypeGuard[str]:
    """A cloud id sync can use: 1..128 printable ASCII characters that cannot change a URL path.

    Ids travel in request paths and are kept in the vault (links, the link index), so anything
    that could change the path (``/ ? # % \\``, ``..``, spaces, controls) is refused, not escaped.
    The one rule for ids we send and ids the cloud sends.
    """
    return (
        type(value) is str
        and 0 < len(value) <= MAX_REMOTE_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and not any(c in value for c in "/?#%\\")
        and ".." not in value
    )


def _segment(secret_id: str) -> str:
    if not remote_id_ok(secret_id):
        raise InvalidRequestError("a remote secret id must be a plain path segment")
    return secret_id


def _no_constant(name: str) -> NoReturn:
    # Python's json accepts NaN/Infinity, JSON does not: a body holding one is not the API's.
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    # Before int(): its cost is quadratic in the digits (a 32 MiB literal would take hours).
    if len(text) - text.startswith("-") > _MAX_INT_DIGITS:
        raise ValueError("an integer longer than any field can hold")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)  # linear in the text's length
    if not math.isfinite(value):
        raise ValueError("a number past a double's range")  # 1e400 parses as inf
    return value


def _decode(data: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, numbers bounded; nesting that would exhaust the stack is a ValueError too."""
    try:
        return json.loads(data, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _json_body(data: bytes | None) -> Any:
    try:
        return _decode(data or b"")
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RemoteProtocolError("ChatBotKit answered 200 with a body that is not JSON") from None


def _id_of(body: Any) -> str:
    if not isinstance(body, dict) or not remote_id_ok(body.get("id")):
        raise RemoteProtocolError("the response has no secret id, or one that is not a plain path segment")
    result: str = body["id"]
    return result
