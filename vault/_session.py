"""A session with the unlock agent: its socket, its wire protocol, and vaults it holds the key of.

``cbk-vault unlock`` hands a vault's passphrase to a per-user agent process (``_agent``),
which derives the key once, keeps the vault open and forgets the passphrase. Clients, the
CLI and ``vault.open(path)`` without a passphrase, then use the vault through the agent's
Unix socket: no key derivation, no prompt, no passphrase in any environment. The key never
leaves the agent; values do, to the clients that ask (as they would from the file).

Wire protocol: each message is a 4-byte big-endian length and a UTF-8 JSON object. A
request names an ``op``; the answer is ``{"ok": result}`` or ``{"error": {code, message}}``.
Every call on a vault carries an open descriptor of the vault file (``SCM_RIGHTS``): the
agent acts only on a file the client could open itself, read-write for writes.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import socket
import stat
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from . import _crypto, _vault
from ._accesslog import AccessRecord, current_context
from ._engine import Clock
from ._raw import RawRecords
from ._records import Page, Secret
from ._secret_client import SecretClient
from ._store import IO, resolve_path
from ._vault import Vault
from .errors import (
    InsecureFileError,
    InvalidRequestError,
    NotUnlockedError,
    VaultClosedError,
    VaultError,
    error_for_code,
)

__all__ = [
    "AGENT_SOCKET_ENV",
    "AgentBackend",
    "agent_socket",
    "decode_secret",
    "encode_secret",
    "open_unlocked",
    "recv_message",
    "request",
    "send_message",
    "start_agent",
    "status",
    "unlock",
    "lock",
    "open",
]

#: Overrides where the agent's socket lives (tests; a second agent).
AGENT_SOCKET_ENV: Final = "CBK_VAULT_AGENT_SOCK"
#: Messages larger than this are refused (a value is at most 1 MiB; a list page of 100 is far less).
MAX_MESSAGE: Final = 64 << 20
_LENGTH: Final = struct.Struct(">I")


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


def send_message(sock: socket.socket, obj: Mapping[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise InvalidRequestError("message to the agent is too large")
    frame = _LENGTH.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame], fds)
        if sent < len(frame):
            sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionResetError("the agent closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket, *, with_fds: bool = False) -> tuple[dict[str, Any], list[int]]:
    """One message, and the descriptors that came with it (when ``with_fds``)."""
    fds: list[int] = []
    if with_fds:
        head, got, _flags, _addr = socket.recv_fds(sock, _LENGTH.size, 4)
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


def encode_secret(secret: Secret) -> dict[str, Any]:
    # The cloud's item plus what the vault adds (revision, deletedAt), which the item leaves out.
    return {**secret.to_dict(reveal=True), "revision": secret.revision, "deletedAt": secret.deleted_at}


def decode_secret(obj: Mapping[str, Any]) -> Secret:
    return Secret(
        id=obj["id"],
        created_at=obj["createdAt"],
        updated_at=obj["updatedAt"],
        name=obj["name"],
        description=obj["description"],
        kind=obj["kind"],
        type=obj["type"],
        visibility=obj["visibility"],
        alias=obj["alias"],
        blueprint_id=obj["blueprintId"],
        meta=obj["meta"],
        config=obj["config"],
        value=obj.get("value"),
        revision=int(obj.get("revision") or 0),
        deleted_at=obj.get("deletedAt"),
    )


def decode_access(obj: Mapping[str, Any]) -> AccessRecord:
    return AccessRecord(
        seq=int(obj["seq"]),
        at=int(obj["at"]),
        secret_id=str(obj["secretId"]),
        operation=str(obj["operation"]),
        revision=obj.get("revision"),
        pid=int(obj["pid"]),
        exe=str(obj["exe"]),
        peer_pid=obj.get("peerPid"),
        peer_exe=obj.get("peerExe"),
    )


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


def _connect(path: Path | None = None) -> socket.socket:
    target = path or agent_socket()
    _check_socket(target)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(target))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise NotUnlockedError("no unlock agent is running: run `cbk-vault unlock`") from None
        raise NotUnlockedError(f"cannot reach the unlock agent ({exc.strerror or exc})") from None
    # Whatever the path checks said (a directory can be swapped between check and connect), the
    # process at the other end must be ours before it is sent a passphrase or a descriptor.
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    if struct.unpack("3i", creds)[1] != os.geteuid():
        sock.close()
        raise InsecureFileError(f"{target} is served by another user's process")
    return sock


def _raise_for(answer: Mapping[str, Any]) -> Any:
    if "ok" in answer:
        return answer["ok"]
    error = answer.get("error")
    if not isinstance(error, dict):
        raise VaultError("the unlock agent answered something unexpected")
    raise error_for_code(str(error.get("code", "")), str(error.get("message", "")))


def request(op: str, *, sock_path: Path | None = None, fds: list[int] | None = None, **fields: Any) -> Any:
    """One request on a fresh connection (unlock, lock, status)."""
    with _connect(sock_path) as sock:
        try:
            send_message(sock, {"op": op, **fields}, fds)
            answer, _ = recv_message(sock)
        except OSError:
            # It was exiting (nothing left to hold) or was killed: no agent, as far as we can tell.
            raise NotUnlockedError("the unlock agent stopped while answering: run `cbk-vault unlock`") from None
        return _raise_for(answer)


class AgentBackend:
    """A vault served by the unlock agent: one connection, calls forwarded, the key never here."""

    def __init__(self, path: Path, sock_path: Path | None = None) -> None:
        self._path = Path(os.path.abspath(path))
        # One request and its answer at a time on the connection, and a whole batch at a time: a
        # handle shared by threads (vault.aio runs calls in an executor) must never read another
        # request's answer.
        self._lock = threading.RLock()
        self._next_id = 0
        self._sock: socket.socket | None = _connect(sock_path)
        self._fd = -1
        self._depth = 0
        try:
            self._fd = _open_vault_fd(self._path)
        except BaseException:
            self._sock.close()
            raise
        self.secret: SecretClient = _AgentSecretClient(self)
        self.raw: RawRecords = _AgentRawRecords(self)
        try:
            info = self.call("vault", "info")
        except VaultClosedError:
            # Gone before the first answer (it exits once nothing is unlocked): nothing holds the vault.
            raise NotUnlockedError("the unlock agent stopped: run `cbk-vault unlock`") from None
        self._kdf = _crypto.KdfParams(info["kdf"][0], info["kdf"][1])

    def _current_fd(self) -> int:
        # After a compaction (or re-key) the path names a new inode: send that one, as a fresh
        # open by this client proves it may still open the file.
        try:
            st = os.stat(self._path)
        except OSError:
            return self._fd
        fst = os.fstat(self._fd)
        if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
            fresh = _open_vault_fd(self._path)
            os.close(self._fd)
            self._fd = fresh
        return self._fd

    def call(self, target: str, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            sock = self._sock
            if sock is None:
                raise VaultClosedError("the vault is closed")
            self._next_id += 1
            request_id = self._next_id
            access = current_context()
            try:
                send_message(
                    sock,
                    {
                        "op": "call",
                        "id": request_id,
                        "path": str(self._path),
                        "target": target,
                        "method": method,
                        "args": args,
                        "kwargs": kwargs,
                        # How this client reads (vault.access_context), for the agent's access log;
                        # the agent itself records our pid and executable from the socket.
                        **({"access": access} if access else {}),
                    },
                    [self._current_fd()],
                )
                answer, _ = recv_message(sock)
                if answer.get("id") != request_id:
                    raise ConnectionResetError("an answer to another request")
            except OSError as exc:
                self.close()
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
            return _raise_for(answer)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._sock is None

    @property
    def kdf(self) -> _crypto.KdfParams:
        return self._kdf

    def describe(self) -> str:
        return "closed" if self._sock is None else "via the unlock agent"

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def count(self) -> int:
        return int(self.call("vault", "len"))

    @contextmanager
    def transaction(self) -> Iterator[object]:
        # Other threads' calls wait for the batch, as on a local handle.
        with self._lock, self._batch() as txn:
            yield txn

    @contextmanager
    def _batch(self) -> Iterator[object]:
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.call("vault", "begin")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            if self._sock is not None:
                self.call("vault", "rollback")
            raise
        self._depth = 0
        self.call("vault", "commit")

    def compact(self) -> None:
        self.call("vault", "compact")

    def change_passphrase(self, passphrase: bytes, params: _crypto.KdfParams | None, *, rekey: bool) -> None:
        kdf = None if params is None else [params.opslimit, params.memlimit]
        self.call("vault", "change_passphrase", passphrase.decode("utf-8", "surrogateescape"), kdf, rekey)

    def access_log(self, secret: str | None, since: int | None) -> list[AccessRecord]:
        return [decode_access(r) for r in self.call("vault", "access_log", secret, since)]


class _AgentSecretClient(SecretClient):
    """``v.secret`` through the agent: the same calls, answered by the agent's open vault."""

    def __init__(self, backend: AgentBackend) -> None:
        self._backend = backend

    def __repr__(self) -> str:
        return f"<SecretClient of {str(self._backend.path)!r} via the unlock agent>"

    def create(self, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        return decode_secret(self._backend.call("secret", "create", _plain(request), **_plain(fields)))

    def fetch(self, secret_id: str, *, revision: int | None = None) -> Secret:
        if revision is None:
            return decode_secret(self._backend.call("secret", "fetch", secret_id))
        return decode_secret(self._backend.call("secret", "fetch", secret_id, revision=revision))

    def list(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        order: str = "desc",
        take: int | str | None = 100,
        cursor: str | None = None,
        meta: Mapping[str, Any] | None = None,
        deleted: bool = False,
    ) -> Page:
        extra = {"deleted": deleted} if deleted is not False else {}
        page = self._backend.call(
            "secret", "list", _plain(request), order=order, take=take, cursor=cursor, meta=_plain(meta), **extra
        )
        return Page(items=[decode_secret(i) for i in page["items"]], cursor=page.get("cursor"))

    def update(self, secret_id: str, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        return decode_secret(self._backend.call("secret", "update", secret_id, _plain(request), **_plain(fields)))

    def delete(self, secret_id: str, *, purge: bool = False) -> Secret:
        if purge is False:
            return decode_secret(self._backend.call("secret", "delete", secret_id))
        return decode_secret(self._backend.call("secret", "delete", secret_id, purge=purge))

    def history(self, secret_id: str) -> builtins.list[Secret]:
        return [decode_secret(s) for s in self._backend.call("secret", "history", secret_id)]

    def restore(self, secret_id: str, revision: int) -> Secret:
        return decode_secret(self._backend.call("secret", "restore", secret_id, revision))

    def undelete(self, secret_id: str) -> Secret:
        return decode_secret(self._backend.call("secret", "undelete", secret_id))

    def purge(self, secret_id: str) -> Secret:
        return decode_secret(self._backend.call("secret", "purge", secret_id))


class _AgentRawRecords(RawRecords):
    """The records seam through the agent (sync, import and the CLI work on an unlocked vault too)."""

    def __init__(self, backend: AgentBackend) -> None:
        self._backend = backend

    def all(self) -> list[tuple[Secret, dict[str, Any], bool]]:
        return [(decode_secret(s), ext, bool(has)) for s, ext, has in self._backend.call("raw", "all")]

    def lookup(self, identifier: str) -> Secret:
        return decode_secret(self._backend.call("raw", "lookup", identifier))

    def fetch(self, record_id: str) -> tuple[Secret, dict[str, Any]]:
        secret, ext = self._backend.call("raw", "fetch", record_id)
        return decode_secret(secret), ext

    def fetch_for_use(self, identifier: str) -> Secret:
        return decode_secret(self._backend.call("raw", "fetch_for_use", identifier))

    def put(
        self,
        record_id: str | None,
        fields: Mapping[str, Any],
        *,
        created_at: int | None = None,
        updated_at: int | None = None,
        ext: Mapping[str, Any] | None = None,
    ) -> Secret:
        return decode_secret(
            self._backend.call(
                "raw", "put", record_id, _plain(fields), created_at=created_at, updated_at=updated_at, ext=_plain(ext)
            )
        )

    def delete(self, record_id: str, *, purge: bool = False) -> None:
        if purge is False:
            self._backend.call("raw", "delete", record_id)
        else:
            self._backend.call("raw", "delete", record_id, purge=purge)

    def setting(self, key: str, default: Any = None) -> Any:
        return self._backend.call("raw", "setting", key, default)

    def set_setting(self, key: str, value: Any) -> None:
        self._backend.call("raw", "set_setting", key, value)


def _plain(obj: Any) -> Any:
    """Mappings and sequences as JSON data (SDK request objects and tuples included)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    raise InvalidRequestError(f"{type(obj).__name__} cannot be sent to the unlock agent")


def start_agent(sock_path: Path | None = None, *, wait: float = 10.0) -> Path:
    """Make sure an agent listens on the socket (starting one, detached, if none does)."""
    import subprocess
    import sys
    import time

    target = sock_path or agent_socket()
    try:
        _connect(target).close()
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
            _connect(target).close()
            return target
        except NotUnlockedError:
            if time.monotonic() >= deadline:
                raise NotUnlockedError("the unlock agent did not start") from None
            time.sleep(0.01)


def _open_vault_fd(path: Path) -> int:
    """The vault file opened by this process: read-write where it may write, else read-only."""
    try:
        try:
            return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except PermissionError:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        from .errors import VaultNotFoundError

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
    fd = _open_vault_fd(target)
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


def open(
    path: str | os.PathLike[str] | None = None,
    passphrase: str | bytes | None = None,
    *,
    clock: Clock | None = None,
    lock_timeout: float = 10.0,
    _rng: _crypto.RandomSource | None = None,
    _io: IO | None = None,
    _version: int | None = None,
) -> Vault:
    """Unlock the vault at ``path`` (None: the default path).

    With a ``passphrase``, the key is derived here (Argon2id) and the file read in this
    process. Without one, the vault is used through the unlock agent (``cbk-vault unlock``),
    so an agent process never needs the passphrase in its environment; when the agent does
    not hold this vault, :class:`~vault.NotUnlockedError` says to run ``cbk-vault unlock``.
    """
    if passphrase is None:
        return open_unlocked(path)
    if _version is not None:  # the frozen v1 writer, for golden-file and test-vector generators
        return _vault.open(
            path, passphrase, clock=clock, lock_timeout=lock_timeout, _rng=_rng, _io=_io, _version=_version
        )
    return _vault.open(path, passphrase, clock=clock, lock_timeout=lock_timeout, _rng=_rng, _io=_io)


def open_unlocked(path: str | os.PathLike[str] | None = None, *, sock_path: Path | None = None) -> Vault:
    """The vault at ``path`` through the unlock agent; :class:`~vault.NotUnlockedError` when it is not unlocked."""
    target = resolve_path(path)
    return Vault(AgentBackend(target, sock_path))
