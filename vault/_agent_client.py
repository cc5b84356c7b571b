"""The client end of the unlock agent: its socket, its wire protocol, and a connection to one vault it holds.

This is the light half of ``_session``: it imports no cryptography, no msgpack and no engine,
so a command served by the agent (``cbk-vault fetch REF --reveal``) starts as fast as the
interpreter allows. ``_session`` builds :class:`~vault.Vault` handles on top of it and
re-exports its names; the agent (``_agent``) speaks the same framing.

Sockets are ``_socket.socket``, the C type that :class:`socket.socket` extends: importing
:mod:`socket` (its enum tables, selectors) would cost a served ``fetch`` more start-up time
than the rest of this module. The agent passes its :class:`socket.socket` objects to the same
framing functions.

Wire protocol: each message is a 4-byte big-endian length and a UTF-8 JSON object. A
request names an ``op``; the answer is ``{"ok": result}`` or ``{"error": {code, message}}``.
Every call on a vault carries an open descriptor of the vault file (``SCM_RIGHTS``): the
agent acts only on a file the client could open itself, read-write for writes.
"""

from __future__ import annotations

import _socket
import errno
import json
import os
import stat
import struct
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .errors import (
    InsecureFileError,
    InvalidRequestError,
    NotUnlockedError,
    VaultClosedError,
    VaultError,
    VaultNotFoundError,
    error_for_code,
)

__all__ = [
    "AGENT_SOCKET_ENV",
    "MAX_MESSAGE",
    "AgentConnection",
    "agent_socket",
    "answer_of",
    "check_private_dir",
    "connect",
    "lock",
    "open_vault_fd",
    "recv_message",
    "request",
    "resolve_path",
    "send_message",
    "start_agent",
    "status",
    "unlock",
]

#: Overrides where the agent's socket lives (tests; a second agent).
AGENT_SOCKET_ENV: Final = "CBK_VAULT_AGENT_SOCK"
#: Messages larger than this are refused (a value is at most 1 MiB; a list page of 100 is far less).
MAX_MESSAGE: Final = 64 << 20
_LENGTH: Final = struct.Struct(">I")


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    """``_store.resolve_path``, importing the store (and platformdirs) only when the default path is needed."""
    if path is None:
        from ._store import default_path

        return default_path()
    return Path(os.fspath(path)).expanduser()


def agent_socket() -> Path:
    """The agent's socket: ``$CBK_VAULT_AGENT_SOCK``, or ``agent.sock`` in the per-user runtime directory."""
    override = os.environ.get(AGENT_SOCKET_ENV)
    if override:
        return Path(override)
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        # Without $XDG_RUNTIME_DIR platformdirs falls back to /tmp/runtime-<uid> and warns on stderr;
        # that directory is checked like any other before use (ours, 0700).
        warnings.simplefilter("ignore")
        runtime = platformdirs.user_runtime_path("cbk-vault", ensure_exists=False)
    return Path(runtime) / "agent.sock"


def check_private_dir(directory: Path) -> None:
    """The socket's directory must be ours and closed to everyone else (0700, not a symlink)."""
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise InsecureFileError(f"agent directory {directory} is not a directory")
    if st.st_uid != os.geteuid():
        raise InsecureFileError(f"agent directory {directory} is owned by another user")
    if st.st_mode & 0o077:
        raise InsecureFileError(f"agent directory {directory} is open to other users (mode {st.st_mode & 0o777:o})")


# --- framing ------------------------------------------------------------------------------------


def send_message(sock: _socket.socket, obj: Mapping[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise InvalidRequestError("message to the agent is too large")
    frame = _LENGTH.pack(len(data)) + data
    if fds:
        import array

        # socket.send_fds, spelled out: SCM_RIGHTS ancillary data with the descriptors.
        sent = sock.sendmsg([frame], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))])
        if sent < len(frame):
            sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def _recv_exact(sock: _socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionResetError("the agent closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: _socket.socket, *, with_fds: bool = False) -> tuple[dict[str, Any], list[int]]:
    """One message, and the descriptors that came with it (when ``with_fds``: the agent's side)."""
    fds: list[int] = []
    if with_fds:
        from socket import recv_fds

        head, got, _flags, _addr = recv_fds(sock, _LENGTH.size, 4)  # type: ignore[arg-type]
        fds = list(got)
        if not head:
            raise ConnectionResetError("the peer closed the connection")
        if len(head) < _LENGTH.size:
            head += _recv_exact(sock, _LENGTH.size - len(head))
    else:
        head = _recv_exact(sock, _LENGTH.size)
    try:
        (length,) = _LENGTH.unpack(head)
        if length > MAX_MESSAGE:
            raise InvalidRequestError("message too large")
        try:
            obj = json.loads(_recv_exact(sock, length))
        except (ValueError, RecursionError):
            raise InvalidRequestError("malformed message") from None
        if not isinstance(obj, dict):
            raise InvalidRequestError("malformed message")
    except BaseException:
        for fd in fds:  # the descriptors of a message that never arrived whole
            os.close(fd)
        raise
    return obj, fds


# --- the client ------------------------------------------------------------------------------------


def _check_socket(target: Path) -> None:
    """Before anything is sent: the socket and its directory are ours and private.

    In a shared fallback directory (``/tmp/runtime-<uid>``) another user could otherwise plant a
    socket of their own, and ``unlock`` would hand it the passphrase.
    """
    try:
        check_private_dir(target.parent)
        st = os.lstat(target)
    except FileNotFoundError:
        raise NotUnlockedError("no unlock agent is running: run `cbk-vault unlock`") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise InsecureFileError(f"{target} is not a socket of this user's unlock agent")


def connect(path: Path | None = None) -> _socket.socket:
    """A connection to the agent on ``path`` (default: :func:`agent_socket`), after the socket checks."""
    target = path or agent_socket()
    _check_socket(target)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(str(target))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise NotUnlockedError("no unlock agent is running: run `cbk-vault unlock`") from None
        raise NotUnlockedError(f"cannot reach the unlock agent ({exc.strerror or exc})") from None
    # Whatever the path checks said (a directory can be swapped between check and connect), the
    # process at the other end must be ours before it is sent a passphrase or a descriptor.
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _LENGTH.size * 3)
    if int.from_bytes(creds[4:8], sys.byteorder, signed=True) != os.geteuid():
        sock.close()
        raise InsecureFileError(f"{target} is served by another user's process")
    return sock


def answer_of(answer: Mapping[str, Any]) -> Any:
    """The result of an answer, or its error raised as the :class:`~vault.VaultError` it names."""
    if "ok" in answer:
        return answer["ok"]
    error = answer.get("error")
    if not isinstance(error, dict):
        raise VaultError("the unlock agent answered something unexpected")
    raise error_for_code(str(error.get("code", "")), str(error.get("message", "")))


def request(op: str, *, sock_path: Path | None = None, fds: list[int] | None = None, **fields: Any) -> Any:
    """One request on a fresh connection (unlock, lock, status)."""
    sock = connect(sock_path)
    try:
        send_message(sock, {"op": op, **fields}, fds)
        answer, _ = recv_message(sock)
    except OSError:
        # It was exiting (nothing left to hold) or was killed: no agent, as far as we can tell.
        raise NotUnlockedError("the unlock agent stopped while answering: run `cbk-vault unlock`") from None
    finally:
        sock.close()
    return answer_of(answer)


class AgentConnection:
    """One connection to the agent about one vault file: calls go out with a descriptor of that file.

    Opening it only connects (:class:`~vault.NotUnlockedError` when no agent runs) and opens
    the file; whether the agent holds the vault is the first call's answer
    (:class:`~vault.NotUnlockedError` when it does not; :attr:`answered` tells the first
    call's error from a later one's). The key never comes here; results are the agent's JSON (``_session``
    turns them into secrets and pages).
    """

    def __init__(self, path: Path, sock_path: Path | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        #: One request and its answer at a time (and a whole batch, held by the caller): a connection
        #: shared by threads must never read another request's answer.
        self.lock = threading.RLock()
        self._next_id = 0
        self._sock: _socket.socket | None = connect(sock_path)
        self._fd = -1
        try:
            self._fd = open_vault_fd(self.path)
        except BaseException:
            self._sock.close()
            raise
        #: Whether a call on this connection has had a result (not an error) from the agent.
        self.answered = False

    @property
    def closed(self) -> bool:
        return self._sock is None

    def _current_fd(self) -> int:
        # After a compaction (or re-key) the path names a new inode: send that one, as a fresh
        # open by this client proves it may still open the file.
        try:
            st = os.stat(self.path)
        except OSError:
            return self._fd
        fst = os.fstat(self._fd)
        if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
            fresh = open_vault_fd(self.path)
            os.close(self._fd)
            self._fd = fresh
        return self._fd

    def call(self, target: str, method: str, *args: Any, extra: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """``target.method(*args, **kwargs)`` on the agent's open vault; its JSON result.

        ``extra`` adds fields to the request (how the caller reads, for the agent's access log).
        """
        with self.lock:
            sock = self._sock
            if sock is None:
                raise VaultClosedError("the vault is closed")
            self._next_id += 1
            request_id = self._next_id
            message: dict[str, Any] = {
                "op": "call",
                "id": request_id,
                "path": str(self.path),
                "target": target,
                "method": method,
                "args": args,
                "kwargs": kwargs,
            }
            if extra:
                message.update(extra)
            try:
                send_message(sock, message, [self._current_fd()])
                answer, _ = recv_message(sock)
                if answer.get("id") != request_id:
                    raise ConnectionResetError("an answer to another request")
            except OSError as exc:
                self.close()
                if not self.answered:
                    # Gone before the first answer (it exits once nothing is unlocked): nothing holds the vault.
                    raise NotUnlockedError("the unlock agent stopped: run `cbk-vault unlock`") from None
                # The agent died mid-request: a write either committed (one frame, synced) or not.
                raise VaultClosedError(
                    "the unlock agent went away during the call; it may or may not have been applied "
                    f"(run the read again to see): {type(exc).__name__}"
                ) from None
            except BaseException:
                # Interrupted between sending and reading (a signal, a timeout): the answer still in
                # the socket would be read as the next request's. This connection is done.
                self.close()
                raise
            result = answer_of(answer)
            self.answered = True
            return result

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._fd >= 0:
            try:  # noqa: SIM105 - contextlib would be one more import on the CLI's fast path
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def __enter__(self) -> AgentConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_agent(sock_path: Path | None = None, *, wait: float = 10.0) -> Path:
    """Make sure an agent listens on the socket (starting one, detached, if none does)."""
    import subprocess
    import sys
    import time

    target = sock_path or agent_socket()
    try:
        connect(target).close()
        return target
    except NotUnlockedError:
        pass
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_dir(target.parent)
    # The agent inherits nothing it does not need: no passphrase variable, no terminal.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_") or k == AGENT_SOCKET_ENV}
    subprocess.Popen(
        [sys.executable, "-m", "vault._agent", "--socket", str(target)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        env=env,
    )
    deadline = time.monotonic() + wait
    while True:
        try:
            connect(target).close()
            return target
        except NotUnlockedError:
            if time.monotonic() >= deadline:
                raise NotUnlockedError("the unlock agent did not start") from None
            time.sleep(0.01)


def open_vault_fd(path: Path) -> int:
    """The vault file opened by this process: read-write where it may write, else read-only."""
    try:
        try:
            return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except PermissionError:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise VaultNotFoundError(f"no vault at {path}") from None


def unlock(
    path: str | os.PathLike[str] | None,
    passphrase: str | bytes,
    *,
    idle: float | None = None,
    hard: float | None = None,
    sock_path: Path | None = None,
) -> dict[str, Any]:
    """Start the agent if needed and have it unlock the vault; it keeps the key, not the passphrase."""
    target = Path(os.path.abspath(resolve_path(path)))
    text = passphrase.decode("utf-8", "surrogateescape") if isinstance(passphrase, bytes) else passphrase
    sock = start_agent(sock_path)
    fd = open_vault_fd(target)
    try:
        result: dict[str, Any] = request(
            "unlock", sock_path=sock, fds=[fd], path=str(target), passphrase=text, idle=idle, max=hard
        )
    finally:
        os.close(fd)
    return result


def lock(
    path: str | os.PathLike[str] | None = None, *, everything: bool = False, sock_path: Path | None = None
) -> list[str]:
    """Have the agent forget one vault (or all); the paths it forgot. No agent: nothing to forget."""
    try:
        found: list[str] = request(
            "lock", sock_path=sock_path, path=None if everything else os.path.abspath(resolve_path(path))
        )
    except NotUnlockedError:
        return []
    return found


def status(sock_path: Path | None = None) -> list[dict[str, Any]]:
    """What the agent holds, and when each vault locks (seconds from now). No agent: nothing."""
    try:
        held: list[dict[str, Any]] = request("status", sock_path=sock_path)
    except NotUnlockedError:
        return []
    return held
