"""The unlock agent: a per-user process that holds unlocked vaults, like ssh-agent holds keys.

``cbk-vault unlock`` starts it (``python -m vault._agent``) and hands it a vault's passphrase
once; the agent opens the vault, drops the passphrase and keeps the unwrapped data key in
memory it asks the OS to keep out of swap and core files. Clients (``_session``) then use the
vault over a Unix socket in a 0700 per-user directory, socket 0600:

* every connection's peer uid is checked (``SO_PEERCRED``): another user cannot connect;
* every call carries a descriptor of the vault file, opened by the client: the agent acts
  only on the file it unlocked, and only when the client could open it itself (read-write
  for writes), so no client makes the agent touch a file the client could not;
* before every call the key slots are compared with those at unlock: a passphrase change or
  re-key (by anyone) locks the vault; a file swapped under the agent fails the engine's
  header check (the key is never applied to another vault id) and locks it too;
* an idle timeout (default 15 minutes) and a hard maximum (default 8 hours) lock it; locking
  wipes the key bytes (best effort) and closes the file; with nothing left, the agent exits.

Concurrent single writes from several clients are group-committed: one frame and one fsync
cover all of them, each client answered only after that fsync.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import queue
import signal
import socket
import socketserver
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from . import _crypto, _format
from ._records import Page, Secret
from ._session import check_private_dir, encode_secret, recv_message, send_message
from ._vault import Vault, engine_of, raw_records
from ._vault import open as open_vault
from .errors import (
    InsecureFileError,
    InvalidRequestError,
    NotUnlockedError,
    VaultError,
)

__all__ = ["DEFAULT_IDLE", "DEFAULT_MAX", "AgentServer", "main"]

DEFAULT_IDLE: Final = 15 * 60.0
DEFAULT_MAX: Final = 8 * 3600.0
#: The longest a vault may stay unlocked, whatever ``--timeout`` asks for.
HARD_MAX: Final = 7 * 24 * 3600.0
_GROUP_LIMIT: Final = 512
#: An agent that was started but never handed a vault exits after this many seconds.
_IDLE_START: Final = 60.0

_READS: Final = {
    ("secret", "fetch"),
    ("secret", "list"),
    ("raw", "all"),
    ("raw", "lookup"),
    ("raw", "fetch"),
    ("raw", "fetch_for_use"),
    ("raw", "setting"),
    ("vault", "len"),
    ("vault", "info"),
}
_WRITES: Final = {
    ("secret", "create"),
    ("secret", "update"),
    ("secret", "delete"),
    ("raw", "put"),
    ("raw", "delete"),
    ("raw", "set_setting"),
}
_ADMIN: Final = {("vault", "compact"), ("vault", "change_passphrase"), ("vault", "begin")}


class _Rollback(Exception):
    """A client's ``rollback`` of its batch: leaves the batch block, which undoes it."""


def _encode(result: Any) -> Any:
    if isinstance(result, Secret):
        return encode_secret(result)
    if isinstance(result, Page):
        return {"items": [encode_secret(s) for s in result.items], "cursor": result.cursor}
    if isinstance(result, tuple):
        return [_encode(r) for r in result]
    if isinstance(result, list):
        return [_encode(r) for r in result]
    return result


#: The longest a group of writes waits for those of other clients that are writing now.
_GROUP_WAIT_MAX: Final = 0.002
#: A client whose write committed this recently counts as writing now.
_ACTIVE_WINDOW: Final = 0.05


@dataclass
class _Write:
    run: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: VaultError | None = None
    #: Who wrote it: the handler thread of one client connection (it has one write in flight at most).
    source: int = field(default_factory=threading.get_ident)


class _Held:
    """One unlocked vault: its handle, the file it is, its key slots at unlock, its deadlines."""

    def __init__(self, v: Vault, ident: tuple[int, int], slots: bytes, idle: float, hard: float) -> None:
        self.vault = v
        self.ident = ident
        self.slots = slots
        self.idle = idle
        self.hard_deadline = time.monotonic() + hard
        self.last_used = time.monotonic()
        self.queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self.writer = threading.Thread(target=self._write_loop, name="cbk-vault-agent-writer", daemon=True)
        self.writer.start()

    def deadline(self) -> float:
        return min(self.last_used + self.idle, self.hard_deadline)

    def _write_loop(self) -> None:
        # Group commit: one frame and one fsync for whatever queued while the previous fsync ran,
        # and for the writes of the other clients that are writing now. Each client has one write
        # in flight at most, and the last commit has just answered it: its next write is usually
        # on its way. So a group waits for as many writes as clients wrote within _ACTIVE_WINDOW,
        # at most as long as the last commit took (capped at _GROUP_WAIT_MAX). A lone writer never
        # waits; without the wait, 4 clients in a loop met in groups of 2 on average.
        recent: dict[int, float] = {}  # source -> when its last write committed
        patience = 0.0
        while True:
            first = self.queue.get()
            if first is None:
                return
            group = [first]
            now = time.monotonic()
            writing = len({first.source} | {src for src, at in recent.items() if now - at < _ACTIVE_WINDOW})
            wait_until = now + patience
            while len(group) < _GROUP_LIMIT:
                try:
                    left = wait_until - time.monotonic() if len(group) < writing else 0.0
                    item = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)
                    break
                group.append(item)
            started = time.monotonic()
            self._commit(group)
            done = time.monotonic()
            patience = min(done - started, _GROUP_WAIT_MAX)
            for write in group:
                recent[write.source] = done
            if len(recent) > 64:
                recent = {src: at for src, at in recent.items() if done - at < _ACTIVE_WINDOW}

    def _commit(self, group: list[_Write]) -> None:
        try:
            with engine_of(self.vault).transaction() as txn:
                for write in group:
                    mark = txn.savepoint()
                    try:
                        write.result = write.run()
                    except VaultError as exc:
                        txn.rollback_to(mark)
                        write.error = exc
        except VaultError as exc:
            for write in group:  # the frame did not commit: none of them is acknowledged
                if write.error is None:
                    write.error, write.result = exc, None
        except BaseException as exc:  # a bug must not leave clients waiting forever
            for write in group:
                if write.error is None:
                    write.error, write.result = VaultError(f"agent error: {type(exc).__name__}"), None
        for write in group:
            write.done.set()

    def submit(self, run: Callable[[], Any]) -> Any:
        write = _Write(run)
        self.queue.put(write)
        write.done.wait()
        if write.error is not None:
            raise write.error
        return write.result

    def close(self) -> None:
        self.queue.put(None)
        try:
            keys = engine_of(self.vault).keys()
        except VaultError:
            keys = None  # closed already
        self.vault.close()
        if keys is not None:
            keys.wipe()


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The agent's socket server: one thread per client connection, vaults shared between them."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.held: dict[str, _Held] = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.ever_held = False
        self.started = time.monotonic()
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o600)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if _peer_uid(conn) != os.getuid():
            # Another user (root aside, who can read our memory anyway): say nothing, close.
            conn.close()
            raise OSError("peer of another user refused")
        return conn, addr

    # --- vault registry -------------------------------------------------------------------------

    def unlock(self, path: str, passphrase: str, fd: int, idle: float, hard: float) -> dict[str, Any]:
        ident = _file_ident(fd, path, write=True)
        v = open_vault(path, passphrase)
        slots = os.pread(fd, _format.LOG_START - _format.SLOT_OFFSETS[0], _format.SLOT_OFFSETS[0])
        with self.lock:
            old = self.held.pop(path, None)
            self.held[path] = _Held(v, ident, slots, idle, hard)
            self.ever_held = True
        if old is not None:
            old.close()
        return self.describe(path)

    def lock_vault(self, path: str | None) -> list[str]:
        with self.lock:
            names = list(self.held) if path is None else ([path] if path in self.held else [])
            gone = [self.held.pop(name) for name in names]
        for held in gone:
            held.close()
        return names

    def describe(self, path: str) -> dict[str, Any]:
        held = self.held[path]
        now = time.monotonic()
        return {
            "path": path,
            "idleTimeout": held.idle,
            "locksIn": max(0.0, held.deadline() - now),
            "hardLocksIn": max(0.0, held.hard_deadline - now),
        }

    def status(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.describe(path) for path in sorted(self.held)]

    def use(self, path: str, fd: int, *, write: bool) -> _Held:
        with self.lock:
            held = self.held.get(path)
            if held is None or time.monotonic() >= held.deadline():
                raise NotUnlockedError(f"vault {path} is not unlocked: run `cbk-vault unlock`")
            held.last_used = time.monotonic()
        if _file_ident(fd, path, write=write) != _file_ident_of_path(path):
            raise InvalidRequestError("the descriptor sent is not the vault file")
        slots = os.pread(fd, len(held.slots), _format.SLOT_OFFSETS[0])
        if slots != held.slots:
            self.lock_vault(path)
            raise NotUnlockedError(f"the key slots of {path} changed since it was unlocked: unlock it again")
        return held

    def expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            late = [path for path, held in self.held.items() if now >= held.deadline()]
        for path in late:
            self.lock_vault(path)
        # Nothing left to hold: the agent's job is done (and one started for nothing gives up soon).
        if not self.held and (self.ever_held or now - self.started > _IDLE_START):
            self.stopping.set()


def _file_ident_of_path(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _file_ident(fd: int, path: str, *, write: bool) -> tuple[int, int]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidRequestError("the descriptor sent is not a regular file")
    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    if write and mode != os.O_RDWR:
        raise InsecureFileError(f"this client cannot write {path}: the agent will not write it for it")
    return st.st_dev, st.st_ino


class _Handler(socketserver.BaseRequestHandler):
    server: AgentServer
    request: socket.socket

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, OSError):
            while not self.server.stopping.is_set():
                message, fds = recv_message(self.request, with_fds=True)
                try:
                    self._answer(message, fds)
                finally:
                    for fd in fds:
                        os.close(fd)

    def _reply(self, result: Any = None, error: VaultError | None = None) -> None:
        if error is not None:
            send_message(self.request, {"error": {"code": error.code, "message": error.message}})
        else:
            send_message(self.request, {"ok": _encode(result)})

    def _answer(self, message: dict[str, Any], fds: list[int]) -> None:
        try:
            result = self._dispatch(message, fds)
        except _Answered:
            return
        except VaultError as exc:
            self._reply(error=exc)
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(error=InvalidRequestError(f"malformed request ({type(exc).__name__})"))
        else:
            self._reply(result)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> Any:
        op = message.get("op")
        server = self.server
        if op == "hello":
            return {"pid": os.getpid(), "version": 1}
        if op == "status":
            return server.status()
        if op == "lock":
            path = message.get("path")
            return server.lock_vault(os.path.realpath(str(path)) if path is not None else None)
        if op == "unlock":
            fd = _one_fd(fds)
            idle = _seconds(message.get("idle"), DEFAULT_IDLE)
            hard = _seconds(message.get("max"), DEFAULT_MAX)
            path = os.path.realpath(str(message["path"]))
            return server.unlock(path, str(message["passphrase"]), fd, idle, min(hard, HARD_MAX))
        if op == "call":
            return self._call(message, fds)
        raise InvalidRequestError("unknown request")

    def _call(self, message: dict[str, Any], fds: list[int], *, in_batch: bool = False) -> Any:
        target, method = str(message["target"]), str(message["method"])
        key = (target, method)
        if key not in _READS and key not in _WRITES and key not in _ADMIN and not in_batch:
            raise InvalidRequestError(f"unknown call {target}.{method}")
        path = os.path.realpath(str(message["path"]))
        held = self.server.use(path, _one_fd(fds), write=key not in _READS)
        args = list(message.get("args") or [])
        kwargs = dict(message.get("kwargs") or {})
        v = held.vault
        if key == ("vault", "info"):
            return {"kdf": [v.kdf.opslimit, v.kdf.memlimit]}
        if key == ("vault", "len"):
            return len(v)
        if key == ("vault", "compact"):
            v.compact()
            return None
        if key == ("vault", "change_passphrase"):
            passphrase, kdf, rekey = args
            params = None if kdf is None else _crypto.KdfParams(int(kdf[0]), int(kdf[1]))
            v.change_passphrase(str(passphrase), kdf=params, rekey=bool(rekey))
            self.server.lock_vault(path)  # its key slots changed: unlock again with the new passphrase
            return None
        if key == ("vault", "begin"):
            if in_batch:
                return None
            return self._batch(held, path)
        run = _bound(v, target, method, args, kwargs)
        if key in _WRITES and not in_batch:
            return held.submit(run)
        return run()

    def _batch(self, held: _Held, path: str) -> None:
        self._reply(None)  # begun; the client's calls follow on this connection
        try:
            with held.vault.batch():
                while True:
                    message, fds = recv_message(self.request, with_fds=True)
                    try:
                        method = message.get("method")
                        if message.get("op") == "call" and message.get("target") == "vault" and method == "commit":
                            break
                        if message.get("op") == "call" and message.get("target") == "vault" and method == "rollback":
                            raise _Rollback
                        self._answer_in_batch(message, fds)
                    finally:
                        for fd in fds:
                            os.close(fd)
        except _Rollback:
            pass
        except VaultError as exc:
            # The commit failed: nothing of the batch was written.
            self._reply(error=exc)
            raise _Answered from None
        return None

    def _answer_in_batch(self, message: dict[str, Any], fds: list[int]) -> None:
        try:
            result = self._call(message, fds, in_batch=True)
        except VaultError as exc:
            self._reply(error=exc)
        else:
            self._reply(result)


class _Answered(Exception):
    """Raised after the handler already sent the answer (a failed batch commit)."""


def _bound(v: Vault, target: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Callable[[], Any]:
    obj: Any = v.secret if target == "secret" else raw_records(v)
    fn = getattr(obj, method)
    return lambda: fn(*args, **kwargs)


def _one_fd(fds: list[int]) -> int:
    if len(fds) != 1:
        raise InvalidRequestError("a vault call carries exactly one descriptor of the vault file")
    return fds[0]


def _seconds(value: object, default: float) -> float:
    if value is None:
        return default
    if type(value) not in (int, float) or not 0 < float(value) <= HARD_MAX:  # type: ignore[arg-type]
        raise InvalidRequestError(f"a timeout must be between 0 and {HARD_MAX:.0f} seconds")
    return float(value)  # type: ignore[arg-type]


# --- the process -----------------------------------------------------------------------------------


def _harden() -> None:
    """Out of core files and debuggers; key pages kept out of swap where the limits allow."""
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no core file, no ptrace by same-uid processes
        # MCL_CURRENT | MCL_FUTURE, only where the limit allows it: a partial lock would make later
        # allocations (Argon2id's 256 MiB) fail instead.
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        if soft == resource.RLIM_INFINITY or soft >= 2 << 30:
            libc.mlockall(1 | 2)


def serve(path: Path) -> int:
    """Run the agent on ``path`` until nothing is unlocked (or SIGTERM). Returns the exit status."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_dir(directory)
    with open(directory / "agent.lock", "a") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                # A dead agent's socket: ours (0700 directory), safe to replace.
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    raise InsecureFileError(f"{path} exists and is not a socket") from None
                path.unlink()
            else:
                probe.close()
                return 0  # another agent is alive: it serves
            finally:
                probe.close()
        old_umask = os.umask(0o177)
        try:
            server = AgentServer(path)
        finally:
            os.umask(old_umask)
    _harden()
    signal.signal(signal.SIGTERM, lambda *_: server.stopping.set())

    def reap() -> None:
        while not server.stopping.wait(0.25):
            server.expire()
        server.shutdown()

    threading.Thread(target=reap, name="cbk-vault-agent-reaper", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.25)
    finally:
        server.lock_vault(None)
        server.server_close()
        with contextlib.suppress(OSError):
            path.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m vault._agent --socket PATH``: started by ``cbk-vault unlock``; not for people."""
    parser = argparse.ArgumentParser(prog="python -m vault._agent")
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    return serve(Path(args.socket))


if __name__ == "__main__":
    raise SystemExit(main())
