"""The access log: a sealed, hash-chained record of every read of a secret value, in sidecar files.

Each read of a value (``fetch``, the records seam's ``fetch``/``fetch_for_use``, and so ``run``,
``export``, the stand-in's use-time routes, sync's pushes, the unlock agent) appends one record
before the value is returned: time, secret id, revision, operation, and who (pid and executable of
the reading process, plus the peer's pid and executable when the reader serves another process:
the unlock agent from ``SO_PEERCRED``, or any caller through :func:`access_context`).

Layout (docs/FORMAT.md, "Access log"): ``<vault>.access`` is the current segment, appended in place
under its ``flock``; ``<vault>.access.old`` the previous one. A segment is a 112-byte header with its
tag, then frames ``len | ~len | nonce || secretbox(K_alog_box, record) | tag``, each tag a keyed
BLAKE2b over the previous tag and the frame, starting from the header tag; a segment's header links
to the last tag of the one before. Both subkeys come from the vault's data key: nothing is in clear.

Durability: an append is one ``pwrite`` and no fsync (a read stays a read). A process crash loses
nothing appended; an OS crash or power loss can lose the records written since the last sync,
which a background timer does about once a second after a read (and ``close`` and rotation do).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import struct
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from . import _crypto, _format
from ._format import corrupt
from ._log import tail_is_torn
from ._store import AccessFile
from .errors import CorruptVaultError, InvalidRequestError

__all__ = ["AccessKeys", "AccessLog", "AccessRecord", "access_context", "current_context"]

MAGIC: Final = b"CBKVALOG"
VERSION: Final = 1
_HEADER: Final = struct.Struct(">8sB7s16sQQ32s")  # magic, version, reserved, vault id, segment, first seq, link
HEADER_SIZE: Final = _HEADER.size + _crypto.TAG_SIZE  # 112
_HEAD: Final = _format.FRAME_HEAD
_TAG: Final = _crypto.TAG_SIZE
RECORD_PAD: Final = 64
MIN_SEALED: Final = _crypto.NONCE_SIZE + _crypto.MAC_SIZE + RECORD_PAD
MAX_SEALED: Final = 64 << 10
#: A segment is rotated (copied to ``.old``) once it reaches this size: the log never exceeds
#: about twice this (~10,000 records per segment).
SEGMENT_MAX: Final = 2 << 20
#: An OS crash can lose the records of about this long: the background sync's delay.
SYNC_DELAY: Final = 1.0
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

    ``at`` is epoch milliseconds; ``operation`` says how (``fetch``, ``use``, ``run``, ...) or, for
    ``log-new``/``log-reset`` (empty ``secret_id``), that the log began there. ``pid``/``exe`` are the
    process that opened the value; ``peer_pid``/``peer_exe`` the process it served, when known.
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


@dataclass(frozen=True, slots=True)
class _Context:
    operation: str | None
    peer_pid: int | None
    peer_exe: str | None


_CONTEXT: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("cbk_vault_access", default=None)


@contextmanager
def access_context(
    operation: str | None = None, *, peer_pid: int | None = None, peer_exe: str | None = None
) -> Iterator[None]:
    """Say, for every read of a value inside the block, how and for whom it is done.

    The access log records ``operation`` instead of the call's own name (``run``, ``inject``,
    ``keyring``...), and ``peer_pid``/``peer_exe`` as the process served (a server that knows its
    client's pid from the socket). Blocks nest; the innermost value of each field wins.
    """
    if operation is not None and (type(operation) is not str or not 0 < len(operation) <= 64):
        raise InvalidRequestError("operation must be a non-empty string of at most 64 characters")
    if peer_pid is not None and (type(peer_pid) is not int or peer_pid <= 0):
        raise InvalidRequestError("peer_pid must be a positive integer")
    if peer_exe is not None and (type(peer_exe) is not str or len(peer_exe) > MAX_TEXT):
        raise InvalidRequestError(f"peer_exe must be a string of at most {MAX_TEXT} characters")
    outer = _CONTEXT.get()
    if outer is not None:
        operation = operation or outer.operation
        peer_pid = peer_pid if peer_pid is not None else outer.peer_pid
        peer_exe = peer_exe if peer_exe is not None else outer.peer_exe
    token = _CONTEXT.set(_Context(operation, peer_pid, peer_exe))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    """The innermost :func:`access_context` as plain data (the unlock agent's client forwards it)."""
    ctx = _CONTEXT.get()
    if ctx is None:
        return {}
    return {k: v for k, v in (("operation", ctx.operation), ("peerPid", ctx.peer_pid)) if v is not None} | (
        {"peerExe": ctx.peer_exe} if ctx.peer_exe is not None else {}
    )


def exe_of(pid: int) -> str | None:
    """The executable of a process (Linux ``/proc``), or None when it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")[:MAX_TEXT]
    except OSError:
        return None


_SELF: dict[str, str] = {}


def _self_exe() -> str:
    exe = _SELF.get("exe")
    if exe is None:
        exe = _SELF["exe"] = exe_of(os.getpid()) or sys.executable or "?"
    return exe


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


def _decode_record(plain: bytes, seq: int) -> AccessRecord:
    obj = _format.unpackb(_format.unpad(plain, RECORD_PAD))
    if type(obj) is not list or len(obj) != 9:
        raise corrupt("malformed access record")
    r_seq, at, sid, op, rev, pid, exe, ppid, pexe = obj
    ok = (
        r_seq == seq
        and type(at) is int
        and at >= 0
        and type(sid) is str
        and type(op) is str
        and (rev is None or type(rev) is int)
        and type(pid) is int
        and type(exe) is str
        and (ppid is None or type(ppid) is int)
        and (pexe is None or type(pexe) is str)
    )
    if not ok:
        raise corrupt("access record out of sequence or malformed")
    return AccessRecord(seq, at, sid, op, rev, pid, exe, ppid, pexe)


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
    """Verify the frames of ``data`` from ``out.end`` (chained from ``out.tag``), advancing ``out``."""
    view = memoryview(data)
    pos, n = out.end, len(data)
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
            try:
                plain = _crypto.open_box(keys.box, body[_HEAD.size :])
            except _crypto.OpenFailed:
                raise corrupt(f"access log record at offset {pos} fails to decrypt") from None
            out.records.append(_decode_record(plain, out.next_seq))
        out.next_seq += 1
        out.tag = frame_tag
        out.end = pos = end


# --- the log (one per open vault) -------------------------------------------------------------------


_LOGS: weakref.WeakSet[AccessLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _SELF.clear()
    for log in list(_LOGS):
        log.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AccessLog:
    """Appends and reads one vault's access log. Thread-safe; several processes may append at once."""

    def __init__(self, vault_path: os.PathLike[str] | str) -> None:
        from pathlib import Path

        self._file = AccessFile(Path(vault_path))
        self._mutex = threading.Lock()
        self._known: AccessKeys | None = None  # the keys our end/tag/seq are valid for (None: catch up)
        self._end = 0
        self._tag = b""
        self._seq = 0
        self._timer: threading.Timer | None = None
        _LOGS.add(self)

    @property
    def path(self) -> os.PathLike[str]:
        return self._file.path

    def forget_after_fork(self) -> None:
        self._mutex = threading.Lock()  # another thread may have held it at the fork
        self._timer = None
        self._known = None
        self._file.forget_after_fork()

    def append(self, keys: AccessKeys, secret_id: str, operation: str, revision: int | None, now: int) -> None:
        """Record one read before its value is returned. Raises StorageError when it cannot be written:
        a read that cannot be recorded does not happen."""
        ctx = _CONTEXT.get()
        peer_pid = peer_exe = None
        if ctx is not None:
            operation = ctx.operation or operation
            peer_pid, peer_exe = ctx.peer_pid, ctx.peer_exe
        fields = [0, now, secret_id, operation, revision, os.getpid(), _self_exe(), peer_pid, peer_exe]
        with self._mutex:
            f = self._file
            f.lock()
            try:
                # One pread: the file still ends with our last tag, so nobody appended or rotated since.
                if self._known is not keys or not f.ends_with(self._end, self._tag):
                    self._catch_up(keys)
                if self._end >= 2 * SEGMENT_MAX:
                    self._rotate(keys)  # the background sync fell behind: rotate here (rare)
                fields[0] = self._seq
                self._write(keys, fields)
            finally:
                f.unlock()
            if self._timer is None:
                self._schedule_sync()

    def _write(self, keys: AccessKeys, fields: list[Any], *, cut: bool = False) -> None:
        sealed = _crypto.seal(keys.box, _format.pad(_format.packb(fields), RECORD_PAD))
        body = _HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed
        tag = _crypto.mac(keys.chain, self._tag + body)
        self._file.append(body + tag, self._end, cut=cut)
        self._end += len(body) + _TAG
        self._tag = tag
        self._seq += 1

    def _catch_up(self, keys: AccessKeys) -> None:
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
                self._start(keys, None, reset=True)
            else:
                self._start(keys, self._previous(keys), reset=False)
            return
        try:
            seg = parse_segment(keys, data, decrypt=False)
        except CorruptVaultError:
            # Damaged, edited, or sealed under another key (a re-key interrupted before the log was
            # resealed): keep it as evidence and begin a new log that says so in its first record.
            f.set_aside()
            self._start(keys, None, reset=True)
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

    def _start(self, keys: AccessKeys, previous: _Segment | None, *, reset: bool) -> None:
        """Write a new segment header (continuing ``previous``, or a new log) and, for a new log, its first record."""
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
            who = [os.getpid(), _self_exe(), None, None]
            self._write(keys, [0, _now_ms(), "", LOG_RESET if reset else LOG_NEW, None, *who])

    def _rotate(self, keys: AccessKeys) -> None:
        """The current segment becomes ``.old`` (durably), then the current file restarts with a linked header."""
        f = self._file
        data = f.read()[: self._end]
        seg = parse_segment(keys, data, decrypt=False)
        f.write_old(data)
        head, tag = _header(keys, seg.segment + 1, self._seq, self._tag)
        f.rewrite(head)
        self._end, self._tag = HEADER_SIZE, tag

    def _schedule_sync(self) -> None:
        if self._timer is None:
            timer = threading.Timer(SYNC_DELAY, self._background_sync)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _background_sync(self) -> None:
        """About once a second after reads: rotate a full segment, then fdatasync; off every read's path."""
        with self._mutex:
            self._timer = None
            keys = self._known
            if keys is not None and self._end >= SEGMENT_MAX:
                # A background flush has no caller to tell; the next append catches up either way.
                with contextlib.suppress(Exception), self._file.locked(exclusive=True):
                    if self._file.ends_with(self._end, self._tag):
                        self._rotate(keys)
        # The sync itself holds no lock: reads go on appending while it runs. close() syncs again.
        with contextlib.suppress(Exception):
            self._file.sync()

    def read(self, keys: AccessKeys) -> list[AccessRecord]:
        """Every record the log holds, oldest first, verified; CorruptVaultError when any was tampered with.

        A removed or edited record breaks the chain; a removed or replaced previous segment breaks
        the link from the current one. Cutting records off the end cannot be told from fewer reads
        (the rollback class, as for the vault file).
        """
        with self._mutex:
            f = self._file
            if not os.path.exists(f.path):
                return []
            with f.locked(exclusive=False):
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
        """After a re-key: every record sealed again under the new subkeys (as ``.old``), then a new linked segment."""
        with self._mutex:
            f = self._file
            if not os.path.exists(f.path):
                return
            with f.locked(exclusive=True):
                try:
                    records = self.read_unlocked(old_keys)
                except CorruptVaultError:
                    f.set_aside()
                    self._known = None
                    return
                head, tag = _header(new_keys, 0, records[0].seq if records else 0, _ZERO_TAG)
                chunks, prev = [head], tag
                for r in records:
                    fields = [r.seq, r.at, r.secret_id, r.operation, r.revision, r.pid, r.exe, r.peer_pid, r.peer_exe]
                    sealed = _crypto.seal(new_keys.box, _format.pad(_format.packb(fields), RECORD_PAD))
                    body = _HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed
                    prev = _crypto.mac(new_keys.chain, prev + body)
                    chunks.append(body + prev)
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
        with self._mutex:
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(Exception):  # closing must not fail on a flush
                self._file.sync()
            self._file.close()
            self._known = None


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
