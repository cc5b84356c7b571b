"""The stand-in on a loopback socket: the ASGI application (``_asgi``) under uvicorn, bounded.

uvicorn (the ``serve`` extra) is the server ``cbk-vault serve`` and ``vault.testing.serve()``
run. What a local process can make it spend is bounded here: at most MAX_CONNECTIONS
connections (more are answered 503 and closed before anything is parsed), request headers
within HEADER_TIMEOUT of the connection or of the previous answer, the body within the
application's BODY_TIMEOUT. Clients that hang up early are not logged. Each connection carries a
lookup of its peer process (``_peer``, bounded), which the application runs at the first request
to a value route, before the vault's lock is taken, so the access log names the client that read
it. An answer's head and body leave in one ``send`` (``_CoalescingTransport``): half the ``send``
calls and segments per answer, which took about a fifth off the server's CPU per fetch in
bench/serve_load.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Final, cast

from . import _peer
from ._asgi import PEER_SCOPE_KEY, StandInApp
from ._net import is_loopback
from ._vault import Vault
from .errors import InvalidRequestError, MissingDependencyError

__all__ = ["HEADER_TIMEOUT", "MAX_CONNECTIONS", "StandInServer"]

#: Connections served at once; more are answered 503 and closed at once. The SDKs keep a few
#: each; a local process opening thousands must not make us hold state for each.
MAX_CONNECTIONS: Final = 64
#: A request line and its headers must arrive within this many seconds of the connection (or of
#: the previous answer: it is also the keep-alive idle time): a client that trickles a byte at a
#: time is cut off.
HEADER_TIMEOUT: Final = 20.0
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'retry-after: 1\r\ncontent-length: 61\r\n\r\n{"message":"Too many connections","code":"SERVICE_UNAVAILABLE"}'
)


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("the stand-in server needs uvicorn: pip install 'cbk-vault[serve]'") from None
    return uvicorn


def _bounded_protocol() -> type[Any]:
    """uvicorn's h11 protocol with a connection cap, a deadline for request headers, and
    each connection's writes held to the loop's next turn (``_CoalescingTransport``).

    uvicorn arms a timer only after an answer (keep-alive), so a client that opens a
    connection and trickles its headers a byte at a time would hold it forever.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            transport = _CoalescingTransport(transport, asyncio.get_running_loop())
            super().connection_made(transport)
            self._peer = _ConnectionPeer(transport)
            if len(self.connections) > MAX_CONNECTIONS:
                transport.write(_BUSY)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            in_flight = self.cycle is not None and not self.cycle.response_complete
            if not in_flight and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # the headers are in; the body has the application's deadline
                # The request's task has been created but not run yet: the application finds
                # this connection's peer lookup in the scope (the access log's peer of its reads).
                cast("dict[str, Any]", self.cycle.scope)[PEER_SCOPE_KEY] = self._peer

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return BoundedH11Protocol


class _ConnectionPeer:
    """The process at the other end of one connection, looked up at its first request to a value
    route and kept for the connection's later requests (a lookup walks /proc: see ``_peer``)."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        self._family = getattr(sock, "family", None)
        self._sock = sock
        self._local = transport.get_extra_info("sockname")
        self._remote = transport.get_extra_info("peername")
        self._found: tuple[int | None, str | None] | None = None

    def __call__(self) -> tuple[int | None, str | None]:
        if self._found is None:
            pid: int | None = None
            if self._family == socket.AF_UNIX:
                pid = _peer.unix_peer(self._sock)
            elif self._family in (socket.AF_INET, socket.AF_INET6) and self._local and self._remote:
                pid = _peer.tcp_peer(tuple(self._local[:2]), tuple(self._remote[:2]))
            self._found = (pid, _peer.exe_of(pid) if pid is not None else None)
        return self._found


class _CoalescingTransport(asyncio.Transport):
    """The connection's transport, with the writes made in one step of the event loop sent as one.

    uvicorn writes an answer's status line and headers, then its body: two ``send`` calls and
    two segments for every answer, and a client that wakes up twice to read it. Held until the
    loop's next turn (or until _HOLD_LIMIT bytes are held, so a long list still meets the
    transport's flow control), they leave together; the bytes and their order are unchanged.
    Closing sends what is held first; aborting drops it, as the transport's own abort does.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= _HOLD_LIMIT:
            self._flush()

    def _flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._size = 0
        self._transport.abort()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._flush()
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


#: Held bytes that are sent at once rather than at the loop's next turn (asyncio's own high-water mark).
_HOLD_LIMIT: Final = 1 << 16


class StandInServer:
    """The stand-in on a background thread: ``with StandInServer(v) as s: s.base_url, s.token``.

    Every request needs ``Authorization: Bearer <token>``. ``token=None`` (default) makes up
    a random one (``.token``); a given token is the one required. ``any_token=True`` accepts
    any bearer token instead: only for a vault that holds nothing of yours (``--ephemeral``),
    since any local process could then read and change what is served, and only on loopback.
    ``port=0`` picks a free port. The vault is not closed by :meth:`stop`; its owner closes it.
    Needs uvicorn (``pip install 'cbk-vault[serve]'``).
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
        if any_token and not is_loopback(host):
            raise InvalidRequestError("any_token=True is for loopback only")
        uvicorn = _uvicorn()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, so asyncio turns Nagle off on accepted connections (no 40 ms stalls).
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(128)
            self._socket.setblocking(False)
            self.vault = vault
            self.app = StandInApp(
                vault,
                token=token,
                any_token=any_token,
                loopback_only=is_loopback(host),
                frontend_url=self.base_url,
                verbose=verbose,
            )
        except BaseException:
            self._socket.close()
            raise
        config = uvicorn.Config(
            self.app,
            http=_bounded_protocol(),
            lifespan="off",
            log_config=None,
            log_level="critical",  # the application reports what matters; clients that hang up are routine
            access_log=False,
            # No proxy sits in front of a loopback stand-in, and the application reads neither the
            # client address nor the scheme: X-Forwarded-* rewriting would be work on every request.
            proxy_headers=False,
            timeout_keep_alive=int(HEADER_TIMEOUT),
            server_header=False,
            date_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    @property
    def token(self) -> str:
        return self.app.token

    @property
    def accepts_any_token(self) -> bool:
        return self.app.accepts_any_token

    @property
    def api(self) -> Any:
        return self.app.api

    @property
    def host(self) -> str:
        return str(self._socket.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """``http://host:port``; the SDKs append ``/api/v1/secret/...``."""
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start(), never lost in a thread
            self._failed = exc

    def start(self) -> StandInServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cbk-vault-standin", daemon=True)
            self._thread.start()
            while not self._server.started and self._thread.is_alive():
                self._thread.join(0.01)
            if self._failed is not None or not self._server.started:
                raise RuntimeError("the stand-in server did not start") from self._failed
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
            self._thread = None
        self._socket.close()

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<StandInServer {self.base_url}>"
