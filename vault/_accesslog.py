"""The access log: a sealed, hash-chained record of every read of a secret value, in sidecar files.

Each read of a value (``fetch``, the records seam's ``fetch``/``fetch_for_use``, and so ``run``,
``export``, ``read``, ``inject``, the keyring, the stand-in's use-time routes, sync's pushes, the
unlock agent) makes one record: time (the vault's clock), secret id, revision, operation, and who
(pid and executable of the reading process, plus the peer's pid and executable when the reader
serves another process: the unlock agent from ``SO_PEERCRED``, the stand-in from its socket, or any
caller through :func:`access_context`).

Layout (docs/FORMAT.md, "Access log"): ``<vault>.access`` is the current segment, appended in place
under its ``flock``; ``<vault>.access.old`` the previous one. A segment is a 112-byte header with its
tag, then frames ``len | ~len | nonce || secretbox(K_alog_box, records) | tag``, each tag a keyed
BLAKE2b over the previous tag and the frame, starting from the header tag; a segment's header links
to the last tag of the one before. Both subkeys come from the vault's data key: nothing is in clear.

Off the read's path: a read puts its record in this process's buffer (a tuple on a deque, well
under a microsecond) and returns. The buffer is sealed as one frame and written with one ``pwrite``
when it holds FLUSH_RECORDS records (by the read that fills it), FLUSH_DELAY after its first record
(by one daemon thread per process), at ``close``, at interpreter exit, and before any read of the
log, so ``v.access_log()`` always shows this process's own reads. The first read of a handle, and
every read after a write failed, writes its record before the value is returned, so a log that
cannot be written refuses reads. A crash of the process loses at most the buffered records: at
most FLUSH_RECORDS reads, all of the last FLUSH_DELAY or so. A forked child starts with an empty
buffer: the parent's records are written by the parent, once. A background write that fails is
retried by the daemon thread with a backoff (at most RETRY_MAX apart), so an idle process does not
keep them until its next read. The file's flock is waited for at most the vault's ``lock_timeout``
(another process holding it fails a read that must write, and makes close and exit give up with a
warning, never hang). A re-key writes every buffer of this process for the vault first.

Durability: no fsync per read or per batch (a read stays a read). The daemon thread syncs the file
about SYNC_DELAY after a write (and ``close`` and rotation do), so an OS crash or power loss can
lose about the last second of records as well.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import contextvars
import logging
import os
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final

from . import _crypto, _format
from ._format import corrupt
from ._log import tail_is_torn
from ._peer import exe_of
from ._store import AccessFile
from .errors import CorruptVaultError, InvalidRequestError, KeyChangedError

__all__ = [
    "AccessKeys",
    "AccessLog",
    "AccessRecord",
    "PeerLookup",
    "access_context",
    "current_context",
    "exe_of",
    "peer_lookup",
    "surface",
]

log = logging.getLogger("vault")

MAGIC: Final = b"CBKVALOG"
VERSION: Final = 1
_HEADER: Final = struct.Struct(">8sB7s16sQQ32s")  # magic, version, reserved, vault id, segment, first seq, link
HEADER_SIZE: Final = _HEADER.size + _crypto.TAG_SIZE  # 112
_HEAD: Final = _format.FRAME_HEAD
_TAG: Final = _crypto.TAG_SIZE
RECORD_PAD: Final = 64
MIN_SEALED: Final = _crypto.NONCE_SIZE + _crypto.MAC_SIZE + RECORD_PAD
MAX_SEALED: Final = 64 << 10
#: A frame's records, packed, stay under this (a batch is split in two until they do), so a
#: padded, sealed frame never exceeds MAX_SEALED.
_FRAME_PLAIN: Final = MAX_SEALED - 1024
#: A frame holds at most this many records (readers refuse more).
MAX_BATCH: Final = 4096
#: A segment is rotated (copied to ``.old``) once it reaches this size: the log never exceeds
#: about twice this (~10,000 records per segment at the least).
SEGMENT_MAX: Final = 2 << 20
#: The buffer is written by the read that brings it to this many records: a crash of the process
#: loses at most this many (and a read pays the write once per this many).
FLUSH_RECORDS: Final = 128
#: ...or this many seconds after its first record, by the daemon thread: a crash loses at most the
#: reads of about this long.
FLUSH_DELAY: Final = 0.1
#: An OS crash can lose the records of about this long: the daemon thread's fdatasync delay.
SYNC_DELAY: Final = 1.0
#: After a failed write the daemon thread tries again, 2 * FLUSH_DELAY later, then twice as long
#: each time, but never more than this apart: a full disk that frees up, or a lock released, sees
#: the waiting records written within this, with no read or close needed.
RETRY_MAX: Final = 2.0
_ZERO_TAG: Final = bytes(_TAG)
MAX_TEXT: Final = 4096

#: Operations of the records the log writes about itself.
LOG_NEW: Final = "log-new"  # a log begins (no earlier log was found)
LOG_RESET: Final = "log-reset"  # a log begins after the earlier one was unreadable (kept as .access.damaged)


class AccessKeys:
    """The access log's subkeys of a vault's data key: one for record boxes, one for the chain."""

    __slots__ = ("box", "chain", "vault_id")

    def __init__(self, data_key: bytes, vault_id: bytes) -> None:
        self.box = _crypto.subkey(data_key, b"cbkv2-alog-box")
        self.chain = _crypto.subkey(data_key, b"cbkv2-alog-mac")
        self.vault_id = vault_id

    def __repr__(self) -> str:
        return "AccessKeys(<hidden>)"


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One read of a secret's value, as the access log holds it.

    ``at`` is epoch milliseconds (the vault's clock); ``operation`` says how (``fetch``, ``use``,
    ``read``, ``inject``, ``keyring``, ``run``, ...) or, for ``log-new``/``log-reset`` (empty
    ``secret_id``), that the log began there. ``pid``/``exe`` are the process that opened the value;
    ``peer_pid``/``peer_exe`` the process it served, when known.
    """

    seq: int
    at: int
    secret_id: str
    operation: str
    revision: int | None
    pid: int
    exe: str
    peer_pid: int | None = None
    peer_exe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "secretId": self.secret_id,
            "operation": self.operation,
            "revision": self.revision,
            "pid": self.pid,
            "exe": self.exe,
            "peerPid": self.peer_pid,
            "peerExe": self.peer_exe,
        }


# --- who is reading ------------------------------------------------------------------------------

#: Finds the peer of the request being served: (pid, exe), each None when unknown. The stand-in's
#: lookup costs a bounded walk of /proc, so it runs only for a request to a value route, at most
#: once per connection (the lookup caches its answer), and before the engine's lock is taken.
PeerLookup = Callable[[], "tuple[int | None, str | None]"]


@dataclass(frozen=True, slots=True)
class _Context:
    operation: str | None  # named by the caller (access_context): wins over everything
    peer_pid: int | None
    peer_exe: str | None
    surface: str | None = None  # the library entry point (read, inject, keyring...): wins over the call's name


_CONTEXT: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("cbk_vault_access", default=None)
_EMPTY: Final = _Context(None, None, None)


@contextmanager
def access_context(
    operation: str | None = None, *, peer_pid: int | None = None, peer_exe: str | None = None
) -> Iterator[None]:
    """Say, for every read of a value inside the block, how and for whom it is done.

    The access log records ``operation`` instead of the call's own name (``fetch``, ``read``,
    ``inject``, ``keyring``...), and ``peer_pid``/``peer_exe`` as the process served (a server that
    knows its client's pid from the socket). Blocks nest; the innermost value of each field wins.
    """
    if operation is not None and (type(operation) is not str or not 0 < len(operation) <= 64):
        raise InvalidRequestError("operation must be a non-empty string of at most 64 characters")
    if peer_pid is not None and (type(peer_pid) is not int or peer_pid <= 0):
        raise InvalidRequestError("peer_pid must be a positive integer")
    if peer_exe is not None and (type(peer_exe) is not str or len(peer_exe) > MAX_TEXT):
        raise InvalidRequestError(f"peer_exe must be a string of at most {MAX_TEXT} characters")
    outer = _CONTEXT.get() or _EMPTY
    ctx = _Context(
        operation or outer.operation,
        peer_pid if peer_pid is not None else outer.peer_pid,
        peer_exe if peer_exe is not None else outer.peer_exe,
        outer.surface,
    )
    token = _CONTEXT.set(ctx)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


@contextmanager
def surface(name: str) -> Iterator[None]:
    """Name the reads inside the block after the library entry point that makes them (``read``,
    ``inject``, ``keyring``...), unless an outer entry point already named them: ``load_env``
    resolves through ``resolve_refs``, and its reads are ``load-env``. An ``access_context``
    operation still wins (the caller's own claim)."""
    outer = _CONTEXT.get() or _EMPTY
    if outer.surface is not None:
        yield
        return
    token = _CONTEXT.set(replace(outer, surface=name))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


@contextmanager
def peer_lookup(lookup: PeerLookup) -> Iterator[None]:
    """Reads inside the block are for the peer ``lookup`` finds (a server's request handler: the
    lookup is per connection and caches what it found).

    The lookup runs here, on entry: never inside a read, which holds the engine's lock, where a
    slow walk of /proc would stall every other thread of the process.
    """
    try:
        peer_pid, peer_exe = lookup()
    except Exception:  # a peer that cannot be found is unknown; the read is not refused for it
        peer_pid = peer_exe = None
    outer = _CONTEXT.get() or _EMPTY
    token = _CONTEXT.set(replace(outer, peer_pid=peer_pid, peer_exe=peer_exe))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _resolved(ctx: _Context, operation: str) -> tuple[str, int | None, str | None]:
    """The operation and peer a read inside ``ctx`` is recorded with."""
    return ctx.operation or ctx.surface or operation, ctx.peer_pid, ctx.peer_exe


def current_context() -> dict[str, Any]:
    """The innermost :func:`access_context` as plain data (the unlock agent's client forwards it)."""
    ctx = _CONTEXT.get()
    if ctx is None:
        return {}
    operation, peer_pid, peer_exe = _resolved(ctx, "")
    out: dict[str, Any] = {}
    if operation:
        out["operation"] = operation
    if peer_pid is not None:
        out["peerPid"] = peer_pid
    if peer_exe is not None:
        out["peerExe"] = peer_exe
    return out


_SELF: dict[str, Any] = {}


def _self_exe() -> str:
    exe = _SELF.get("exe")
    if exe is None:
        exe = _SELF["exe"] = exe_of(os.getpid()) or sys.executable or "?"
    return str(exe)


# --- the format (pure) ----------------------------------------------------------------------------


def _header(keys: AccessKeys, segment: int, first_seq: int, link: bytes) -> tuple[bytes, bytes]:
    body = _HEADER.pack(MAGIC, VERSION, bytes(7), keys.vault_id, segment, first_seq, link)
    tag = _crypto.mac(keys.chain, b"cbkv2-alog-header" + body)
    return body + tag, tag


@dataclass(slots=True)
class _Segment:
    segment: int
    first_seq: int
    link: bytes
    records: list[AccessRecord]
    end: int  # offset just past the last whole frame
    tag: bytes  # the last chain tag (the header tag when empty)
    next_seq: int
    torn: bool


def _decode_row(obj: Any, seq: int | None) -> AccessRecord:
    """A bare record ``[seq, at, secretId, operation, revision, pid, exe, peerPid, peerExe]`` (frames
    written before records were batched)."""
    if len(obj) != 9:
        raise corrupt("malformed access record")
    r_seq, at, sid, op, rev, pid, exe, ppid, pexe = obj
    if type(r_seq) is not int or r_seq < 0 or (seq is not None and r_seq != seq):
        raise corrupt("access record out of sequence")
    if type(pid) is not int or type(exe) is not str:
        raise corrupt("malformed access record")
    return _record(r_seq, pid, exe, [at, sid, op, rev, ppid, pexe])


def _record(seq: int, pid: int, exe: str, row: Any) -> AccessRecord:
    if type(row) is not list or len(row) != 6:
        raise corrupt("malformed access record")
    at, sid, op, rev, ppid, pexe = row
    ok = (
        type(at) is int
        and at >= 0
        and type(sid) is str
        and type(op) is str
        and (rev is None or type(rev) is int)
        and (ppid is None or type(ppid) is int)
        and (pexe is None or type(pexe) is str)
    )
    if not ok:
        raise corrupt("malformed access record")
    return AccessRecord(seq, at, sid, op, rev, pid, exe, ppid, pexe)


def _decode_frame(plain: bytes, seq: int | None) -> list[AccessRecord]:
    """A frame's records: ``[firstSeq, pid, exe, [[at, secretId, operation, revision, peerPid, peerExe],
    ...]]`` (1..MAX_BATCH records, numbered from firstSeq, which must be ``seq`` unless None), or one
    bare record."""
    obj = _format.unpackb(_format.unpad(plain, RECORD_PAD))
    if type(obj) is not list:
        raise corrupt("malformed access record")
    if len(obj) == 9:
        return [_decode_row(obj, seq)]
    if len(obj) != 4:
        raise corrupt("malformed access log frame")
    first, pid, exe, rows = obj
    if type(first) is not int or first < 0 or (seq is not None and first != seq):
        raise corrupt("access record out of sequence")
    if type(pid) is not int or type(exe) is not str or type(rows) is not list or not 0 < len(rows) <= MAX_BATCH:
        raise corrupt("malformed access log frame")
    return [_record(first + n, pid, exe, row) for n, row in enumerate(rows)]


#: A record as buffered and as packed in a frame: (at, secret id, operation, revision, peer pid, peer exe).
_Row = tuple[int, str, str, "int | None", "int | None", "str | None"]


def _seal_frames(
    keys: AccessKeys, first_seq: int, pid: int, exe: str, rows: list[_Row], tag: bytes
) -> tuple[list[bytes], bytes]:
    """One process's ``rows`` sealed as few frames as fit (one, unless long executable paths make it
    too big), numbered from ``first_seq`` and chained from ``tag``; returns the frames and the last tag."""
    frames: list[bytes] = []
    for plain in _packed(first_seq, pid, exe, rows):
        sealed = _crypto.seal(keys.box, _format.pad(plain, RECORD_PAD))
        body = _HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed
        tag = _crypto.mac(keys.chain, tag + body)
        frames.append(body + tag)
    return frames, tag


def _packed(first_seq: int, pid: int, exe: str, rows: list[_Row]) -> list[bytes]:
    # The buffered tuples are packed as they are (msgpack writes a tuple as an array): no copy per read.
    packed = _format.packb([first_seq, pid, exe, rows])
    if (len(packed) <= _FRAME_PLAIN and len(rows) <= MAX_BATCH) or len(rows) == 1:
        return [packed]
    half = len(rows) // 2
    return _packed(first_seq, pid, exe, rows[:half]) + _packed(first_seq + half, pid, exe, rows[half:])


def parse_segment(keys: AccessKeys, data: bytes, *, decrypt: bool = True) -> _Segment:
    """Verify a whole segment: its header tag, every frame's chain tag and box, and the record sequence.

    A torn last frame (an append a crash interrupted) is left out and flagged, as in the vault (§6).
    """
    if len(data) < HEADER_SIZE:
        raise corrupt("access log segment is shorter than its header")
    magic, version, reserved, vault_id, segment, first_seq, link = _HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION or reserved != bytes(7):
        raise corrupt("not an access log of this format")
    _, tag = _header(keys, segment, first_seq, link)
    if vault_id != keys.vault_id or not _crypto.macs_equal(tag, data[_HEADER.size : HEADER_SIZE]):
        raise corrupt("access log header fails its integrity check")
    out = _Segment(segment, first_seq, link, [], HEADER_SIZE, tag, first_seq, False)
    walk(keys, data, out, decrypt=decrypt)
    return out


def walk(keys: AccessKeys, data: bytes, out: _Segment, *, decrypt: bool) -> None:
    """Verify the frames of ``data`` from ``out.end`` (chained from ``out.tag``), advancing ``out``.

    Without ``decrypt`` only the chain is checked, and the last frame is opened for the next ``seq``
    (a frame holds any number of records): what an append needs to continue the log.
    """
    view = memoryview(data)
    pos, n = out.end, len(data)
    last: tuple[bytes, int] | None = None
    while pos < n:
        if n - pos < _HEAD.size:
            out.torn = True
            break
        length, check = _HEAD.unpack_from(view, pos)
        end = pos + _HEAD.size + length + _TAG
        if length ^ 0xFFFFFFFF != check:
            if tail_is_torn(view[pos:]):
                out.torn = True
                break
            raise corrupt(f"access log frame header damaged at offset {pos}")
        if not MIN_SEALED <= length <= MAX_SEALED:
            raise corrupt(f"access log frame length out of range at offset {pos}")
        if end > n:
            out.torn = True
            break
        body = bytes(view[pos : end - _TAG])
        frame_tag = bytes(view[end - _TAG : end])
        if not _crypto.macs_equal(_crypto.mac(keys.chain, out.tag + body), frame_tag):
            if end == n and tail_is_torn(view[pos:]):
                out.torn = True
                break
            raise corrupt(f"access log record at offset {pos} fails its integrity check")
        if decrypt:
            records = _open_frame(keys, body, out.next_seq, pos)
            out.records.extend(records)
            out.next_seq += len(records)
        else:
            last = (body, pos)
        out.tag = frame_tag
        out.end = pos = end
    if last is not None:
        out.next_seq = _open_frame(keys, last[0], None, last[1])[-1].seq + 1


def _open_frame(keys: AccessKeys, body: bytes, seq: int | None, pos: int) -> list[AccessRecord]:
    try:
        plain = _crypto.open_box(keys.box, body[_HEAD.size :])
    except _crypto.OpenFailed:
        raise corrupt(f"access log record at offset {pos} fails to decrypt") from None
    return _decode_frame(plain, seq)


# --- the log (one per open vault) -------------------------------------------------------------------

_LOGS: weakref.WeakSet[AccessLog] = weakref.WeakSet()


class _Flusher:
    """One daemon thread per process: writes each log's buffer FLUSH_DELAY after its first record,
    and syncs a written log SYNC_DELAY later. It holds the logs it has work for, so a handle
    dropped without ``close`` still has its records written."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._flush: set[AccessLog] = set()
        self._sync: dict[AccessLog, float] = {}
        self._retry: dict[AccessLog, float] = {}  # logs whose write failed: when to try again
        self._thread: threading.Thread | None = None

    def flush_soon(self, log: AccessLog) -> None:
        with self._cond:
            self._flush.add(log)
            self._start()
            self._cond.notify()

    def sync_soon(self, log: AccessLog) -> None:
        with self._cond:
            if log not in self._sync:
                self._sync[log] = time.monotonic() + SYNC_DELAY
                self._start()
                self._cond.notify()

    def retry_later(self, log: AccessLog, delay: float) -> None:
        with self._cond:
            self._retry[log] = time.monotonic() + delay
            self._start()
            self._cond.notify()

    def forget(self, log: AccessLog) -> None:
        with self._cond:
            self._flush.discard(log)
            self._sync.pop(log, None)
            self._retry.pop(log, None)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cbk-vault-access-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._flush:
                    timers = [*self._sync.values(), *self._retry.values()]
                    if not timers:
                        self._cond.wait()
                        continue
                    wait = min(timers) - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                gather = bool(self._flush)
            if gather:
                time.sleep(FLUSH_DELAY)  # the reads of the next few ms join the same frame
            with self._cond:
                flush, self._flush = self._flush, set()
                now = time.monotonic()
                due = [one for one, at in self._sync.items() if at <= now]
                for one in due:
                    del self._sync[one]
                for one in [one for one, at in self._retry.items() if at <= now]:
                    del self._retry[one]
                    flush.add(one)
            for one in flush:
                one.flush_background()
            for one in due:
                one.sync_background()

    def after_fork(self) -> None:
        # The parent's thread does not exist here, and it may have held the lock at the fork.
        self.__init__()  # type: ignore[misc]


_FLUSHER: Final = _Flusher()


def _after_fork_in_child() -> None:
    _SELF.clear()
    _FLUSHER.after_fork()
    for one in list(_LOGS):
        one.forget_after_fork()


def _flush_at_exit() -> None:
    for one in list(_LOGS):
        one.flush_quietly()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)


class AccessLog:
    """Appends and reads one vault's access log. Thread-safe; several processes may append at once."""

    def __init__(
        self,
        vault_path: os.PathLike[str] | str,
        *,
        rekeyed: Callable[[], bool] | None = None,
        lock_timeout: float = 10.0,
    ) -> None:
        from pathlib import Path

        self._file = AccessFile(Path(vault_path))
        #: Which vault file this is the log of, for a re-key's flush of this process's other handles.
        self._where = os.path.realpath(vault_path)
        #: How long any wait for the file's flock lasts (the vault's ``lock_timeout``): another
        #: process holding it makes a write fail with LockTimeoutError, never hang.
        self._lock_timeout = lock_timeout
        #: Whether another handle re-keyed the vault since ours was opened (then a log that does not
        #: verify under our keys is the resealed one, not a damaged one: never set it aside).
        self._rekeyed = rekeyed
        self._mutex = threading.Lock()  # the file and our end/tag/seq; a write of the buffer holds it
        self._known: AccessKeys | None = None  # the keys our end/tag/seq are valid for (None: catch up)
        self._end = 0
        self._tag = b""
        self._seq = 0
        # Reads append here without a lock (deque appends are atomic); a write takes what is there.
        self._pending: collections.deque[_Row] = collections.deque()
        #: The keys the buffered records are to be sealed under (they change only with a re-key).
        self._pending_keys: AccessKeys | None = None
        #: The daemon thread has been asked to write the buffer (cleared when it takes it).
        self._armed = False
        #: Write each record before its read returns: until the first write succeeded (a log that
        #: cannot be written refuses reads from the first) and after any write failed.
        self._direct = True
        #: Background writes failed in a row (the retry's backoff); reset by any write that succeeds.
        self._failures = 0
        _LOGS.add(self)

    @property
    def path(self) -> os.PathLike[str]:
        return self._file.path

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's buffered records are the parent's to write (once)."""
        self._mutex = threading.Lock()  # another thread may have held it at the fork
        self._pending = collections.deque()
        self._pending_keys = None
        self._armed = False
        self._direct = True
        self._failures = 0
        self._known = None
        self._file.forget_after_fork()

    def append(self, keys: AccessKeys, secret_id: str, operation: str, revision: int | None, now: int) -> None:
        """Record one read of a value; raises StorageError when it must be written now and cannot be
        (a read that cannot be recorded does not happen). Usually it only joins the buffer."""
        ctx = _CONTEXT.get()
        if ctx is None:
            record: _Row = (now, secret_id, operation, revision, None, None)
        else:
            operation, peer_pid, peer_exe = _resolved(ctx, operation)
            record = (now, secret_id, operation, revision, peer_pid, peer_exe)
        if keys is not self._pending_keys:
            self._switch_keys(keys)
        pending = self._pending
        pending.append(record)
        if self._direct or len(pending) >= FLUSH_RECORDS:
            self._flush_now(record)
        elif not self._armed:
            self._armed = True
            _FLUSHER.flush_soon(self)

    def _switch_keys(self, keys: AccessKeys) -> None:
        """The first read of a handle (or after a re-key elsewhere in this process): records buffered
        under other keys are written first."""
        with self._mutex:
            if self._pending_keys is not None and self._pending:
                self._flush_locked(None)
            self._pending_keys = keys

    def flush(self) -> None:
        """Write every buffered record now (StorageError when it cannot: they stay buffered)."""
        self._flush_now(None)

    def flush_quietly(self) -> None:
        """:meth:`flush` for close and exit, which must not fail: a failure is logged, records stay."""
        try:
            self._flush_now(None)
        except Exception as exc:
            log.warning("access log: %d buffered record(s) not written: %s", len(self._pending), exc)

    def flush_background(self) -> None:
        """The daemon thread's write, FLUSH_DELAY after the buffer's first record, and its retries."""
        self._armed = False  # before taking the buffer: a read appended after this wakes the thread again
        try:
            self._flush_now(None)
        except KeyChangedError:
            return  # never writable under these keys (another process re-keyed): close reports them lost
        except Exception:
            # No caller to tell. The next read writes directly, but an idle process may make none:
            # try again with a backoff, so the records do not wait for a read or close.
            if self._pending:
                self._failures += 1
                delay = min(2 * FLUSH_DELAY * 2 ** min(self._failures - 1, 16), RETRY_MAX)
                _FLUSHER.retry_later(self, delay)

    def _flush_now(self, own: _Row | None) -> None:
        with self._mutex:
            wrote = self._flush_locked(own)
        if wrote:
            _FLUSHER.sync_soon(self)

    def _flush_locked(self, own: _Row | None) -> bool:
        """Write the buffer, in order, as one append under the log's flock (False: it was empty). On
        failure every record but ``own`` (whose read is refused) goes back to the front of the
        buffer, and reads write directly until a write succeeds."""
        pending = self._pending
        batch = [pending.popleft() for _ in range(len(pending))]
        keys = self._pending_keys
        if not batch or keys is None:
            return False
        f = self._file
        try:
            f.lock(timeout=self._lock_timeout)
            try:
                # One pread: the file still ends with our last tag, so nobody appended or rotated since.
                if self._known is not keys or not f.ends_with(self._end, self._tag):
                    self._catch_up(keys, batch[0][0])
                if self._end >= 2 * SEGMENT_MAX:
                    self._rotate(keys)  # the background sync fell behind: rotate here (rare)
                self._write(keys, batch)
            finally:
                f.unlock()
        except BaseException:
            pending.extendleft(reversed([r for r in batch if r is not own]))
            self._direct = True
            raise
        self._direct = False
        self._failures = 0
        return True

    def _write(self, keys: AccessKeys, batch: list[_Row], *, cut: bool = False) -> None:
        frames, tag = _seal_frames(keys, self._seq, os.getpid(), _self_exe(), batch, self._tag)
        data = b"".join(frames)
        self._file.append(data, self._end, cut=cut)
        self._end += len(data)
        self._tag = tag
        self._seq += len(batch)

    def _catch_up(self, keys: AccessKeys, at: int) -> None:
        """Take in what other processes appended (verified), or start the log; caller holds the lock."""
        f = self._file
        if self._known is keys and self._end > 0:
            # Others appended since our last write: verify just their frames, chained from our tag.
            seg = _Segment(0, 0, b"", [], 0, self._tag, self._seq, False)
            ok = False
            try:
                ok = f.read(self._end - _TAG)[:_TAG] == self._tag
                if ok:
                    walk(keys, f.read(self._end), seg, decrypt=False)
            except CorruptVaultError:
                ok = False  # verify from the start, which sets a damaged file aside
            if ok:
                self._end, self._tag, self._seq = self._end + seg.end, seg.tag, seg.next_seq
                if seg.torn:
                    f.append(b"", self._end, cut=True)  # an append cut short by a crash: never a commit
                return
        self._known = keys
        data = f.read()
        created, f.created = f.created, False
        if len(data) < HEADER_SIZE:
            old_exists = f.read_old() is not None
            if created and old_exists:
                # The current file was removed (not a rotation cut short): say so rather than link over it.
                self._start(keys, None, reset=True, at=at)
            else:
                self._start(keys, self._previous(keys), reset=False, at=at)
            return
        try:
            seg = parse_segment(keys, data, decrypt=False)
        except CorruptVaultError:
            if self._rekeyed is not None and self._rekeyed():
                # Records buffered before another handle re-keyed the vault and resealed the log:
                # they cannot be sealed under the new key, and setting the good log aside would
                # destroy it. The caller keeps them until close, which reports them lost.
                self._known = None
                raise KeyChangedError(
                    "the vault was re-keyed by another handle; buffered access records are lost"
                ) from None
            # Damaged, edited, or sealed under another key (a re-key interrupted before the log was
            # resealed): keep it as evidence and begin a new log that says so in its first record.
            f.set_aside()
            self._start(keys, None, reset=True, at=at)
            return
        self._end, self._tag, self._seq = seg.end, seg.tag, seg.next_seq
        if seg.torn:
            f.append(b"", self._end, cut=True)

    def _previous(self, keys: AccessKeys) -> _Segment | None:
        """The previous segment, when it verifies (a rotation interrupted before its new header)."""
        old = self._file.read_old()
        if old is None:
            return None
        try:
            return parse_segment(keys, old, decrypt=False)
        except CorruptVaultError:
            return None

    def _start(self, keys: AccessKeys, previous: _Segment | None, *, reset: bool, at: int) -> None:
        """Write a new segment header (continuing ``previous``, or a new log) and, for a new log, its first
        record, stamped ``at``: the time of the read that began it (a read ticks the clock once)."""
        if previous is not None:
            head, tag = _header(keys, previous.segment + 1, previous.next_seq, previous.tag)
            seq = previous.next_seq
        else:
            head, tag = _header(keys, 0, 0, _ZERO_TAG)
            seq = 0
        self._file.rewrite(head)
        self._end, self._tag, self._seq = HEADER_SIZE, tag, seq
        self._known = keys
        if previous is None:
            self._write(keys, [(at, "", LOG_RESET if reset else LOG_NEW, None, None, None)])

    def _rotate(self, keys: AccessKeys) -> None:
        """The current segment becomes ``.old`` (durably), then the current file restarts with a linked header."""
        f = self._file
        data = f.read()[: self._end]
        seg = parse_segment(keys, data, decrypt=False)
        f.write_old(data)
        head, tag = _header(keys, seg.segment + 1, self._seq, self._tag)
        f.rewrite(head)
        self._end, self._tag = HEADER_SIZE, tag

    def sync_background(self) -> None:
        """About a second after a write: rotate a full segment, then fdatasync; off every read's path."""
        with self._mutex:
            keys = self._known
            if keys is not None and self._end >= SEGMENT_MAX:
                # A background rotation has no caller to tell; the next write catches up either way.
                # Not waited for (timeout 0): a lock held elsewhere just leaves it to the next write.
                with contextlib.suppress(Exception), self._file.locked(exclusive=True, timeout=0):
                    if self._file.ends_with(self._end, self._tag):
                        self._rotate(keys)
        # The sync itself holds no lock: reads go on appending while it runs. close() syncs again.
        with contextlib.suppress(Exception):
            self._file.sync()

    def read(self, keys: AccessKeys) -> list[AccessRecord]:
        """Every record the log holds, oldest first, verified; CorruptVaultError when any was tampered with.

        This process's buffered records are written first, so they are there (StorageError when
        they cannot be). A removed or edited record breaks the chain; a removed or replaced
        previous segment breaks the link from the current one. Cutting frames off the end cannot be
        told from fewer reads (the rollback class, as for the vault file).
        """
        self.flush()
        with self._mutex:
            f = self._file
            if not os.path.exists(f.path):
                return []
            with f.locked(exclusive=False, timeout=self._lock_timeout):
                data = f.read()
                old = f.read_old()
        if len(data) < HEADER_SIZE:
            return []
        cur = parse_segment(keys, data)
        records = cur.records
        if cur.link != _ZERO_TAG and old is not None:
            prev = parse_segment(keys, old)
            if prev.segment == cur.segment - 1:
                if prev.tag != cur.link or prev.next_seq != cur.first_seq or prev.torn:
                    raise corrupt("the previous access log segment was edited or cut")
                records = prev.records + records
            elif prev.segment != cur.segment:
                raise corrupt("the previous access log segment was replaced")
        elif cur.link != _ZERO_TAG and cur.segment > 0 and old is None:
            raise corrupt("the previous access log segment is missing")
        return records

    def reseal(self, old_keys: AccessKeys, new_keys: AccessKeys) -> None:
        """After a re-key: every record sealed again under the new subkeys (as ``.old``), then a new linked segment.

        Records still buffered are written under the old keys first, so they are resealed with the
        rest; if that fails they are written later under the new keys. So are those of this
        process's other open handles of the vault: after the reseal they could not be written
        (sealed under the old key, they would not verify) and would be lost at their close.
        Other processes' buffers cannot be reached: docs/FORMAT.md §14 bounds what they lose.
        """
        for other in list(_LOGS):
            if other is not self and other._where == self._where and other._pending:
                other.flush_quietly()  # a failure is logged; those records stay buffered (and are lost)
        with contextlib.suppress(Exception):  # they stay buffered, and are sealed under the new keys below
            self.flush()
        with self._mutex:
            if self._pending_keys is old_keys:
                self._pending_keys = new_keys
            f = self._file
            if not os.path.exists(f.path):
                return
            with f.locked(exclusive=True, timeout=self._lock_timeout):
                try:
                    records = self.read_unlocked(old_keys)
                except CorruptVaultError:
                    f.set_aside()
                    self._known = None
                    return
                head, prev = _header(new_keys, 0, records[0].seq if records else 0, _ZERO_TAG)
                chunks = [head]
                start = 0
                while start < len(records):  # one frame (or more) per run of one process's records
                    first = records[start]
                    stop = start + 1
                    while stop < len(records) and (records[stop].pid, records[stop].exe) == (first.pid, first.exe):
                        stop += 1
                    rows: list[_Row] = [
                        (r.at, r.secret_id, r.operation, r.revision, r.peer_pid, r.peer_exe)
                        for r in records[start:stop]
                    ]
                    frames, prev = _seal_frames(new_keys, first.seq, first.pid, first.exe, rows, prev)
                    chunks += frames
                    start = stop
                f.write_old(b"".join(chunks))
                next_seq = records[-1].seq + 1 if records else 0
                head, tag = _header(new_keys, 1, next_seq, prev)
                f.rewrite(head)
                self._end, self._tag, self._seq = HEADER_SIZE, tag, next_seq
                self._known = new_keys

    def read_unlocked(self, keys: AccessKeys) -> list[AccessRecord]:
        f = self._file
        data = f.read()
        if len(data) < HEADER_SIZE:
            return []
        cur = parse_segment(keys, data)
        old = f.read_old()
        if cur.link != _ZERO_TAG and old is not None:
            prev = parse_segment(keys, old)
            if prev.segment == cur.segment - 1 and prev.tag == cur.link:
                return prev.records + cur.records
        return cur.records

    def close(self) -> None:
        self.flush_quietly()  # closing must not fail on a write: a failure is logged
        _FLUSHER.forget(self)
        with self._mutex:
            self._pending.clear()  # what could not be written goes with the keys it was to be sealed under
            with contextlib.suppress(Exception):
                self._file.sync()
            self._file.close()
            self._known = None
            self._direct = True
