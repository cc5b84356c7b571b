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
from ._accesslog import AccessRecord, access_context, exe_of
from ._agent_client import check_private_dir, recv_message, send_message
from ._records import Page, Secret
from ._session import encode_secret
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
#: Seconds a client may stay silent inside a batch before it is rolled back and disconnected.
BATCH_IDLE: Final = 30.0
#: Seconds a batch may last in all: it holds every other client's writes meanwhile.
BATCH_MAX: Final = 120.0
#: An agent that was started but never handed a vault exits after this many seconds.
_IDLE_START: Final = 60.0

_READS: Final = {
    ("secret", "fetch"),
    ("secret", "list"),
    ("secret", "history"),
    ("raw", "all"),
    ("raw", "value_tags"),
    ("raw", "lookup"),
    ("raw", "fetch"),
    ("raw", "fetch_for_use"),
    ("raw", "setting"),
    ("vault", "len"),
    ("vault", "info"),
    ("vault", "access_log"),
}
_WRITES: Final = {
    ("secret", "create"),
    ("secret", "update"),
    ("secret", "delete"),
    ("secret", "restore"),
    ("secret", "undelete"),
    ("secret", "purge"),
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
    if isinstance(result, AccessRecord):
        return result.to_dict()
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

    def __init__(
        self, v: Vault, ident: tuple[int, int], slots: tuple[int, bytes, bytes] | None, idle: float, hard: float
    ) -> None:
        self.vault = v
        self.ident = ident
        self.slots = slots
        self.idle = idle
        self.hard_deadline = time.monotonic() + hard
        self.last_used = time.monotonic()
        self.queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self.state = threading.Lock()
        self.closed = False
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
                self._fail_pending()
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
                    except Exception as exc:
                        # A malformed call (bad arguments) fails alone, not the others in its group.
                        txn.rollback_to(mark)
                        write.error = InvalidRequestError(f"malformed request ({type(exc).__name__})")
        except InvalidRequestError:
            if len(group) > 1:
                # Too large for one frame together: each on its own, so size alone fails nobody.
                for write in group:
                    write.error = write.result = None
                for write in group:
                    self._commit([write])
                return
            group[0].error, group[0].result = InvalidRequestError("the change is too large for one commit"), None
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

    def _fail_pending(self) -> None:
        with self.state:
            self.closed = True
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.error = NotUnlockedError("the vault was locked before this write ran; nothing was written")
                item.done.set()

    def submit(self, run: Callable[[], Any]) -> Any:
        write = _Write(run)
        with self.state:
            if self.closed:
                raise NotUnlockedError("the vault was locked: run `cbk-vault unlock`")
            self.queue.put(write)
        write.done.wait()
        if write.error is not None:
            raise write.error
        return write.result

    def close(self) -> None:
        with self.state:
            self.closed = True  # a batch in progress rolls back at its next message
            self.queue.put(None)
        try:
            keys = engine_of(self.vault).keys()
        except VaultError:
            keys = None  # closed already
        self.vault.close()
        if keys is not None:
            keys.wipe()


def _peer_creds(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def _peer_uid(sock: socket.socket) -> int:
    return _peer_creds(sock)[1]


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
        if not os.path.isabs(path) or ident != _file_ident_of_path(path):
            raise InvalidRequestError("unlock names a vault by its absolute path and sends that file")
        v = open_vault(path, passphrase)
        engine_of(v).keys().lock_in_memory()
        slots = _live_slot(fd)
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
        if _file_ident(fd, path, write=write) != _file_ident_of_path(path):
            raise InvalidRequestError("the descriptor sent is not the vault file")
        if _live_slot(fd) != held.slots:
            self.lock_vault(path)
            raise NotUnlockedError(f"the key slots of {path} changed since it was unlocked: unlock it again")
        with self.lock:
            held.last_used = time.monotonic()  # only a client that passed the checks keeps it unlocked
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


def _live_slot(fd: int) -> tuple[int, bytes, bytes] | None:
    """The key slot that opens the vault (generation, salt, wrapped key): what a passphrase change
    or re-key alters. Compaction may move it from slot B to slot A; that is no change."""
    try:
        _index, slot = _format.choose_slot(os.pread(fd, _format.LOG_START, 0))
    except VaultError:
        return None
    return slot.generation, slot.salt, slot.wrapped


def _file_ident_of_path(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _file_ident(fd: int, path: str, *, write: bool) -> tuple[int, int]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidRequestError("the descriptor sent is not a regular file")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & getattr(os, "O_PATH", 0) or flags & os.O_ACCMODE == os.O_WRONLY:
        raise InvalidRequestError("the descriptor sent cannot read the vault file")
    mode = flags & os.O_ACCMODE
    if write and mode != os.O_RDWR:
        raise InsecureFileError(f"this client cannot write {path}: the agent will not write it for it")
    return st.st_dev, st.st_ino


class _Handler(socketserver.BaseRequestHandler):
    server: AgentServer
    request: socket.socket
    peer: tuple[int, str | None] = (0, None)

    def handle(self) -> None:
        # Every value this connection reads is logged as read by its peer: the pid comes from the
        # kernel (SO_PEERCRED), not from anything the client says.
        peer_pid, _uid = _peer_creds(self.request)
        self.peer = (peer_pid, exe_of(peer_pid))
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, OSError):
            while not self.server.stopping.is_set():
                message, fds = recv_message(self.request, with_fds=True)
                try:
                    self._answer(message, fds)
                finally:
                    for fd in fds:
                        os.close(fd)

    _request_id: Any = None

    def _reply(self, result: Any = None, error: VaultError | None = None) -> None:
        # The request's id goes back with its answer: a client never takes one answer for another.
        if error is not None:
            answer = {"id": self._request_id, "error": {"code": error.code, "message": error.message}}
            send_message(self.request, answer)
        else:
            send_message(self.request, {"id": self._request_id, "ok": _encode(result)})

    def _answer(self, message: dict[str, Any], fds: list[int]) -> None:
        self._request_id = message.get("id")
        access = message.get("access")
        operation = access.get("operation") if isinstance(access, dict) else None
        try:
            with access_context(
                operation if isinstance(operation, str) and 0 < len(operation) <= 64 else None,
                peer_pid=self.peer[0] if self.peer[0] > 0 else None,
                peer_exe=self.peer[1],
            ):
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
        if key not in _READS and key not in _WRITES and key not in _ADMIN:
            raise InvalidRequestError(f"unknown call {target[:32]}.{method[:32]}")
        path = os.path.realpath(str(message["path"]))
        held = self.server.use(path, _one_fd(fds), write=key not in _READS)
        args = list(message.get("args") or [])
        kwargs = dict(message.get("kwargs") or {})
        v = held.vault
        if key == ("vault", "info"):
            return {"kdf": [v.kdf.opslimit, v.kdf.memlimit]}
        if key == ("vault", "len"):
            return len(v)
        if key == ("vault", "access_log"):
            secret, since = args
            return v.access_log(secret, since)
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
        # A batch holds the vault's writer lock: it is bounded by an idle time (a client that goes
        # quiet) and a total time (one that keeps talking), and ends when the vault locks.
        self.request.settimeout(BATCH_IDLE)
        deadline = time.monotonic() + BATCH_MAX
        try:
            with held.vault.batch():
                self._reply(None)  # begun: entering the transaction succeeded; the client's calls follow
                while True:
                    message, fds = recv_message(self.request, with_fds=True)
                    try:
                        self._request_id = message.get("id")
                        method = message.get("method")
                        is_vault = message.get("op") == "call" and message.get("target") == "vault"
                        if held.closed:
                            raise NotUnlockedError(f"{path} was locked during the batch; nothing of it was written")
                        if time.monotonic() > deadline:
                            raise InvalidRequestError(f"a batch may last at most {BATCH_MAX:.0f} s; it was rolled back")
                        if is_vault and method == "commit":
                            break
                        if is_vault and method == "rollback":
                            raise _Rollback
                        self._answer_in_batch(message, fds)
                    finally:
                        for fd in fds:
                            os.close(fd)
        except _Rollback:
            pass
        except TimeoutError:
            raise ConnectionResetError("batch idle too long; rolled back") from None
        except VaultError as exc:
            # Entering the transaction failed (no "begun" was sent), or the commit did, or the batch
            # ended early: the one answer pending is this error; nothing of the batch was written.
            self._reply(error=exc)
            raise _Answered from None
        finally:
            self.request.settimeout(None)
        return None

    def _answer_in_batch(self, message: dict[str, Any], fds: list[int]) -> None:
        self._request_id = message.get("id")
        try:
            if message.get("op") != "call":
                raise InvalidRequestError("only calls on the vault inside a batch")
            with access_context(peer_pid=self.peer[0] if self.peer[0] > 0 else None, peer_exe=self.peer[1]):
                result = self._call(message, fds, in_batch=True)
        except VaultError as exc:
            self._reply(error=exc)
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(error=InvalidRequestError(f"malformed request ({type(exc).__name__})"))
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
