"""The storage engine: one vault file, its index, catch-up, one transaction path, compaction.

State model: the file is the truth. An engine keeps the index (every record's metadata;
values stay sealed until opened) and the offset and chain tag of the last frame it has
read. Before every read it takes in whatever other processes committed since; every
write happens under the exclusive sidecar lock, after such a catch-up, as one appended
frame and one fdatasync.

The seam the layers above use is small and named: :meth:`Engine.reading` (a fresh index
to read), :meth:`Engine.transaction` (a :class:`Txn` to change it, committed as one frame),
:meth:`Engine.open_value`. Nothing above reaches into the engine's attributes.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from . import _crypto, _format, _keys
from ._accesslog import AccessKeys, AccessLog, AccessRecord
from ._format import OP_CHECKPOINT, OP_DELETE, OP_PUT, OP_REVISION, OP_SETTING, OP_TRASH, OP_TRASHED, Entry
from ._index import Index, Undo
from ._keys import VaultKeys
from ._log import LogRead, iter_log, read_log, seal_frame
from ._store import Store
from .errors import (
    CorruptVaultError,
    InvalidRequestError,
    KeyChangedError,
    LockTimeoutError,
    NotFoundError,
    StorageError,
    VaultClosedError,
)

__all__ = ["Clock", "Engine", "Txn"]

log = logging.getLogger("vault")

Clock = Callable[[], int]

_COMPACT_CHUNK: Final = 2048
#: A compacted frame is closed once its records reach about this many bytes (frames max 64 MiB).
_COMPACT_BYTES: Final = 16 << 20
_LOAD_CHUNK: Final = 1 << 20
_VALUE_BOX: Final = _format.ENTRY_FIELDS.index("value_box")


class _Committed(Exception):
    """A whole-file rewrite was renamed into place (committed) and then a later step failed."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _op_size(op: list[Any]) -> int:
    """About how many packed bytes an op of a compacted log takes (a record's value box dominates)."""
    if op[0] == OP_CHECKPOINT:
        return sum(map(len, op[5])) + 64 * len(op[5])
    record = op[1] if len(op) > 1 and type(op[1]) is list else None
    if record is None or len(record) < len(_format.ENTRY_FIELDS):
        return 64
    box, name, description, meta, config = record[14], record[4], record[5], record[10], record[11]
    grow = len(box or b"") + 4 * (len(name) + len(description)) + 512
    if meta:
        grow += len(_format.packb(meta))
    if config:
        grow += len(_format.packb(config))
    return grow


def _encode_op(op: tuple[Any, ...]) -> list[Any]:
    if op[0] in (OP_PUT, OP_REVISION, OP_TRASHED):
        return [op[0], op[1].to_list(), *op[2:]]
    return list(op)


class Txn:
    """An open transaction: reads see its own changes; it commits as one frame or not at all.

    Every record put here passes the reader's own check first (``_format.check_entry``),
    so no writer, whatever fed it, can commit what the reader would refuse.
    """

    __slots__ = ("_engine", "index", "ops", "undo")

    def __init__(self, engine: Engine, index: Index) -> None:
        self._engine = engine
        self.index = index
        self.ops: list[tuple[Any, ...]] = []
        self.undo: list[Undo] = []

    def now(self) -> int:
        """The injected clock, in epoch milliseconds."""
        return self._engine.clock()

    def new_id(self) -> str:
        """A fresh record id (from the injected random source) that no record holds or held."""
        while True:
            rid = _format.new_id(self._engine.rng)
            if not self.index.id_taken(rid):
                return rid

    def seal(self, record_id: str, value_rev: int, value: str) -> bytes:
        return self._engine.keys().seal_value(record_id, value_rev, value, self._engine.rng)

    def put(self, entry: Entry) -> None:
        """Create or replace a record; the next revision of a trashed record takes it out of the trash."""
        try:
            _format.check_entry(entry)
        except CorruptVaultError:
            raise InvalidRequestError(f"secret {entry.id[:64]!r} is outside the vault format's limits") from None
        index = self.index
        old = index.get(entry.id)
        if old is None and entry.id in index.trash:
            old = index.trash[entry.id][0]
        if old is not None and entry.rev != old.rev + 1:
            # The reader refuses a revision out of sequence: never commit one.
            raise InvalidRequestError(f"secret {entry.id[:64]!r} changed revision out of sequence")
        if not index.has(entry.id) and len(index) >= _format.MAX_RECORDS:
            raise InvalidRequestError(f"a vault holds at most {_format.MAX_RECORDS} secrets")
        self._apply((OP_PUT, entry))

    def delete(self, record_id: str) -> None:
        """Purge a record, live or trashed, with its past revisions (no way back)."""
        self._apply((OP_DELETE, record_id))

    @property
    def keeps_trash(self) -> bool:
        """Whether this transaction writes format version 2 (with the trash); a version-1 writer purges."""
        return self._engine.write_version >= 2

    def trash(self, record_id: str) -> None:
        """Move a live record to the trash, recoverable until compaction drops it (retention)."""
        if not self.keeps_trash:
            raise InvalidRequestError("this vault is written as format version 1, which has no trash")
        at = self.now()
        entry = self.index.get(record_id)
        if entry is None:
            raise NotFoundError(f"secret {record_id[:64]!r} not found")
        try:
            _format.check_entry(entry, deleted_at=at)
        except CorruptVaultError:
            raise InvalidRequestError(f"secret {record_id[:64]!r} is outside the vault format's limits") from None
        self._apply((OP_TRASH, record_id, at))

    def set_setting(self, key: str, value: Any) -> None:
        # Settings are decoded by the reader like records: a key that is not text, or a value msgpack
        # or JSON cannot carry, would make every later open fail.
        if type(key) is not str or not key or len(key) > _format.MAX_ID:
            raise InvalidRequestError(f"a setting's key must be text of 1 to {_format.MAX_ID} characters")
        if value is not None:
            try:
                value = _format.json_copy_checked(value)
            except ValueError:
                raise InvalidRequestError(f"setting {key!r} must be JSON (string keys, finite numbers)") from None
            try:
                _format.packb(value)
            except (TypeError, ValueError, OverflowError):
                raise InvalidRequestError(f"setting {key!r} must be JSON") from None
        self._apply((OP_SETTING, key, value))

    def savepoint(self) -> int:
        """A mark to roll back to: group commit runs many clients' changes in one transaction."""
        return len(self.ops)

    def rollback_to(self, mark: int) -> None:
        """Take back every change made since ``mark``; the rest of the transaction stands."""
        self.index.undo(self.undo[mark:])
        del self.undo[mark:]
        del self.ops[mark:]

    def _apply(self, op: tuple[Any, ...]) -> None:
        self.undo.append(self.index.apply(op))
        self.ops.append(op)


class _Reading:
    """``Engine.reading()``: a plain context manager, since every fetch and list page enters one.

    It holds no state of its own (the mutex is reentrant), so one per engine serves every
    caller; a generator-based ``contextmanager`` cost a fetch a tenth of its time.
    """

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> Index:
        engine = self._engine
        engine._mutex.acquire()
        try:
            engine.keys()
            if engine._txn is None:
                engine._refresh()
        except BaseException:
            engine._mutex.release()
            raise
        return engine._index

    def __exit__(self, *exc: object) -> None:
        self._engine._mutex.release()


class _Transaction:
    """``Engine.transaction()``. Joining an open transaction is a plain method call: a batch of
    10,000 creates joins 10,000 times, where a generator-based context manager cost each a
    microsecond or two. Only the outermost block runs the generator that locks and commits.
    """

    __slots__ = ("_engine", "_outer")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._outer: AbstractContextManager[Txn] | None = None

    def __enter__(self) -> Txn:
        engine = self._engine
        engine._mutex.acquire()
        try:
            engine.keys()
            if engine._txn is not None:
                return engine._txn
            outer = engine._outermost()
            txn = outer.__enter__()
            self._outer = outer
            return txn
        except BaseException:
            engine._mutex.release()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            if self._outer is not None:
                return self._outer.__exit__(kind, error, tb)
            return None
        finally:
            self._engine._mutex.release()


class Engine:
    """One open vault file. Thread-safe; several processes may open the same file at once."""

    def __init__(
        self,
        store: Store,
        keys: VaultKeys,
        kdf: _crypto.KdfParams,
        *,
        generation: int,
        clock: Clock | None,
        rng: _crypto.RandomSource | None,
        lock_timeout: float,
        write_version: int = _format.VERSION,
    ) -> None:
        self._store = store
        self._keys: VaultKeys | None = keys
        self._kdf = kdf
        self._generation = generation
        self.clock: Clock = clock or _now_ms
        self.rng: _crypto.RandomSource = rng or _crypto.random_bytes
        self._lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._reading = _Reading(self)
        self._txn: Txn | None = None
        self._index = Index()
        self._epoch = 0
        self._end = 0
        self._tag = b""
        self._seq = 0
        self._size_seen = 0
        self.stale_slot: int | None = None
        self._must_load = False
        self._close_hooks: list[Callable[[], None]] = []
        #: The format version of the file as it is, and the one this engine writes. A version-1
        #: file is rewritten as version 2 by its first commit; only golden-file and test-vector
        #: generators ask for a version-1 writer (``_version=1``).
        self.version = write_version
        self.write_version = write_version
        self.access = AccessLog(store.path, rekeyed=self._rekeyed_elsewhere, lock_timeout=lock_timeout)
        self._access_keys: tuple[VaultKeys, AccessKeys] | None = None

    # --- lifecycle -----------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def closed(self) -> bool:
        return self._keys is None

    @property
    def kdf(self) -> _crypto.KdfParams:
        return self._kdf

    def keys(self) -> VaultKeys:
        if self._keys is None:
            raise VaultClosedError("the vault is closed")
        return self._keys

    def close(self) -> None:
        with self._mutex:
            if self._keys is None:
                return
            # First: writing the buffer may ask whether another handle re-keyed (our keys, the store).
            self.access.close()
            self._keys = None
            self._index = Index()
            self._access_keys = None
            self._store.close()
            hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            hook()

    def _rekeyed_elsewhere(self) -> bool:
        """Whether our data key no longer opens the file's header: another handle re-keyed (the access
        log asks, possibly from its writer thread, before it takes a log it cannot verify for damaged)."""
        keys = self._keys
        if keys is None:
            return False
        try:
            # The file now at the path: a re-key renames a new file over the one our store has open.
            with open(self._store.path, "rb") as current:
                keys.check_header(current.read(_format.LOG_START))
        except CorruptVaultError:
            return True
        except Exception:  # closed or unreadable: not known to be re-keyed
            return False
        return False

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after the vault closes (vault.testing removes its temp directory this way)."""
        with self._mutex:
            self.keys()
            self._close_hooks.append(hook)

    def describe(self) -> str:
        return "closed" if self._keys is None else f"{len(self._index)} secrets"

    # --- reading the file ------------------------------------------------------------

    def load(self) -> None:
        """Verify the whole file against our keys and rebuild the index from it.

        The log is read in chunks, not whole: at 100k secrets the file is ~40 MB, which
        would otherwise sit in memory beside the index it is being turned into.
        """
        keys = self.keys()
        store = self._store
        head = store.read(0, _format.LOG_START)
        try:
            header = keys.check_header(head)
        except CorruptVaultError:
            if _keys.current_generation(head) > self._generation:
                # Re-keyed by another process: our data key is history. Not damage, not a wrong
                # passphrase; this handle can do nothing more with the file.
                self.close()
                raise KeyChangedError("the vault was re-keyed by another process; open it again") from None
            raise
        tag = head[_format.HEADER_TAG_OFFSET : _format.HEADER_TAG_OFFSET + _crypto.TAG_SIZE]
        # Loading allocates ~14 objects per secret and frees none of them, so every collection
        # the allocations trigger is wasted work, and each full one walks the whole growing
        # index: half the CPU of opening 100k secrets. Nothing built here forms a cycle.
        pause_gc = gc.isenabled()
        if pause_gc:
            gc.disable()
        try:
            # Apply each frame as it is verified and drop it: the index is new and is thrown away
            # if a later frame fails, so nothing half-read is ever visible.
            index = Index()
            pos, seq, read_upto = _format.LOG_START, 0, _format.LOG_START
            want = _LOAD_CHUNK
            while True:
                chunk = store.read(pos, want)
                read_upto = pos + len(chunk)
                at_eof = len(chunk) < want
                result = LogRead(end=0, tag=tag, seq=seq)
                for ops in iter_log(keys.keys, chunk, header.epoch, result):
                    index.apply_logged(ops, bulk=True, version=header.version)
                pos, tag, seq = pos + result.end, result.tag, result.seq
                if at_eof:
                    break  # whatever is left past ``pos`` is a torn append
                if result.torn:
                    # A frame runs past the chunk: read again from its start with room for it.
                    # (Only at the end of the file can an incomplete frame be a torn append.)
                    want = want * 2 if result.end == 0 else _LOAD_CHUNK
            index.resort()
        finally:
            if pause_gc:
                gc.enable()
        if header.version > self.write_version:
            raise InvalidRequestError(
                f"a version-{self.write_version} writer cannot open a version-{header.version} vault"
            )
        self._index = index
        self._must_load = False
        self.version = header.version
        self._epoch = header.epoch
        self._end = pos
        self._tag = tag
        self._seq = seq
        self._size_seen = read_upto

    def _refresh(self) -> None:
        """Take in what other processes committed since we last looked."""
        keys = self.keys()
        store = self._store
        if store.replaced() or self._must_load:
            if store.replaced():
                store.reopen()
            self._must_load = True  # until a load succeeds: a swapped or damaged file stays refused
            self.load()
            return
        if store.size() == self._size_seen:
            return
        # Something was appended. Read it under the shared lock: a writer whose fsync fails
        # cuts its frame off again, and no reader may have taken in that frame meanwhile.
        with store.locked(exclusive=False, timeout=self._lock_timeout):
            if store.size() < self._end:
                # Shorter than what we took in: we opened (lock-free) while a writer's frame was on
                # disk that its failed fsync then cut off, or the file was cut. Re-verify from scratch.
                self._must_load = True
                self.load()
                return
            data = store.read(self._end)
        result = read_log(keys.keys, data, 0, self._tag, self._epoch, self._seq)
        for ops in result.frames:
            self._index.apply_logged(ops, bulk=False, version=self.version)
        self._end += result.end
        self._tag = result.tag
        self._seq = result.seq
        self._size_seen = self._end + len(data) - result.end

    def reading(self) -> _Reading:
        """The index, caught up with the file (or the open transaction's view), under the lock."""
        return self._reading

    def open_value(self, entry: Entry, *, operation: str = "fetch") -> str | None:
        """Decrypt one record's value (None when it holds none) and record the read in the access log.

        ``operation`` names the read (an enclosing ``access_context`` or library entry point may
        rename it); the time is the injected clock's. The record joins the log's buffer (written
        within FLUSH_DELAY, see ``_accesslog``); when it must be written now and cannot be, the
        value is not returned.
        """
        keys = self.keys()
        value = keys.open_value(entry)
        if value is not None and self._index.retention.access_log:
            cached = self._access_keys
            akeys = cached[1] if cached is not None and cached[0] is keys else self.access_keys(keys)
            self.access.append(akeys, entry.id, operation, entry.rev, self.clock())
        return value

    def access_keys(self, keys: VaultKeys | None = None) -> AccessKeys:
        keys = keys or self.keys()
        cached = self._access_keys
        if cached is None or cached[0] is not keys:
            cached = self._access_keys = (keys, AccessKeys(keys.data_key, keys.vault_id))
        return cached[1]

    def access_log(self, secret_id: str | None = None, since: int | None = None) -> list[AccessRecord]:
        """The access log's records (oldest first), verified, optionally of one secret id and from ``since`` (ms)."""
        with self._mutex:
            keys = self.access_keys()
        records = self.access.read(keys)
        return [
            r for r in records if (secret_id is None or r.secret_id == secret_id) and (since is None or r.at >= since)
        ]

    # --- writing ---------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        """Every change made in the block commits as one frame with one fsync: all or nothing.

        The writer lock is held for the whole block. A nested block joins the outer one.
        On any error the file is cut back and the index undone.
        """
        return _Transaction(self)

    @contextmanager
    def _outermost(self) -> Iterator[Txn]:
        # Called with the mutex held and no transaction open (see _Transaction).
        with self._store.locked(exclusive=True, timeout=self._lock_timeout):
            self._refresh()
            txn = self._txn = Txn(self, self._index)
            try:
                yield txn
                self._commit(txn)
            except _Committed as done:
                # The new file is in place (renamed) but its directory sync failed: the index
                # already matches the file, so nothing is undone.
                raise done.error from None
            except BaseException:
                self._index.undo(txn.undo)
                raise
            finally:
                self._txn = None
        self._after_commit()

    def _commit(self, txn: Txn) -> None:
        if not txn.ops:
            return
        if self.version < self.write_version:
            # The first write to a version-1 file upgrades it: the whole state, this transaction
            # included, is written as a version-2 file through compaction's crash-safe path.
            # The rename is the commit point (a crash leaves the old file or the new one, whole).
            self._compact_locked()
            return
        keys = self.keys()
        try:
            frame, tag = seal_frame(
                keys.keys, self._tag, self._epoch, self._seq, [_encode_op(op) for op in txn.ops], self.rng
            )
        except ValueError:
            raise InvalidRequestError("too many changes for one commit; split the batch") from None
        self._store.append(frame, self._end)
        self._end += len(frame)
        self._size_seen = self._end
        self._tag = tag
        self._seq += 1

    def _after_commit(self) -> None:
        """Housekeeping that must never fail a write that is already durable."""
        try:
            if self.stale_slot is not None:
                self._erase_stale_slot()
            index = self._index
            if index.dead > max(1024, len(index)):
                with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                    self._refresh()
                    self._compact_locked()
        except _Committed as done:
            log.warning("vault housekeeping: compacted, but syncing the directory failed: %s", done.error)
        except Exception as exc:  # the write is durable already: its caller must hear success
            log.warning("vault housekeeping failed and will be retried: %s", type(exc).__name__)

    # --- compaction and key slots --------------------------------------------------------

    def compact(self) -> None:
        """Rewrite the file with only live records (temp file, fsync, atomic rename)."""
        with self._mutex:
            self.keys()
            if self._txn is not None:
                raise InvalidRequestError("compact() cannot run inside a batch")
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                try:
                    self._compact_locked()
                except _Committed as done:
                    raise done.error from None

    def _sealed_records(
        self, keys: VaultKeys, tag: bytes, epoch: int, ops_in: Iterator[list[Any]]
    ) -> tuple[list[bytes], bytes, int]:
        """Frames holding the settings and ``ops_in``, chained from ``tag``: a compacted log.

        Sealed a chunk at a time, so a 100k-secret vault never holds every op list at once.
        Returns the frames, the last chain tag and the number of frames.
        """
        parts: list[bytes] = []
        ops: list[list[Any]] = [[OP_SETTING, k, v] for k, v in sorted(self._index.settings.items())]
        seq = 0
        size = sum(len(_format.packb(op)) for op in ops)
        for op in ops_in:
            # A frame holds at most MAX_SEALED bytes: close it by size as well as by count, or a vault
            # of large values could never be compacted or re-keyed.
            grow = _op_size(op)
            if ops and size + grow > _COMPACT_BYTES:
                frame, tag = seal_frame(keys.keys, tag, epoch, seq, ops, self.rng)
                parts.append(frame)
                seq += 1
                ops, size = [], 0
            ops.append(op)
            size += grow
            # A checkpoint op closes its frame: open then decrypts at most one chunk at a time.
            if len(ops) >= _COMPACT_CHUNK or op[0] == OP_CHECKPOINT:
                frame, tag = seal_frame(keys.keys, tag, epoch, seq, ops, self.rng)
                parts.append(frame)
                seq += 1
                ops, size = [], 0
        if ops:
            frame, tag = seal_frame(keys.keys, tag, epoch, seq, ops, self.rng)
            parts.append(frame)
            seq += 1
        return parts, tag, seq

    def _compact_locked(self) -> None:
        """Rewrite the file (in the version this engine writes) with what the retention keeps.

        Raises :class:`_Committed` when the new file was renamed into place but a later step
        (the directory sync) failed: the rewrite happened, and the caller must not undo it.
        """
        keys = self.keys()
        epoch = self._epoch + 1
        version = self.write_version
        now = self.clock()
        prefix, tag = _keys.compacted_head(self._store.read(0, _format.LOG_START), keys, epoch, version=version)
        frames, tag, seq = self._sealed_records(keys, tag, epoch, self._index.compacted(now, version=version))
        data = prefix + b"".join(frames)
        replaced = False

        def committed() -> None:
            nonlocal replaced
            replaced = True
            self._index.prune(now, version=version)
            self.version = version
            self._epoch = epoch
            self._end = self._size_seen = len(data)
            self._tag = tag
            self._seq = seq
            self.stale_slot = None

        try:
            self._store.replace_with(data, on_replaced=committed)
        except StorageError as exc:
            if replaced:
                raise _Committed(exc) from None
            raise

    def _erase_stale_slot(self) -> None:
        with self._store.locked(exclusive=True, timeout=self._lock_timeout):
            head = self._store.read(0, _format.LOG_START)
            index, _ = _format.choose_slot(head)
            offset = _format.SLOT_OFFSETS[1 - index]
            if head[offset : offset + _format.SLOT_SIZE] != _format.EMPTY_SLOT:
                self._store.write_slot(offset, _format.EMPTY_SLOT)
            self.stale_slot = None

    def change_passphrase(self, passphrase: bytes, params: _crypto.KdfParams | None) -> None:
        """Rewrap the data key under a new passphrase; the records are not touched.

        The new key slot is written beside the old one and synced (the commit point:
        from then on only the newest slot is tried), then the old slot is erased.
        """
        params = self._kdf if params is None else params
        wrapping = _keys.Wrapping(passphrase, params, self.rng)
        with self._mutex:
            keys = self.keys()
            if self._txn is not None:
                raise InvalidRequestError("change_passphrase() cannot run inside a batch")
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                write = _keys.rewrap(self._store.read(0, _format.LOG_START), keys, wrapping, self.rng)
                self._store.write_slot(write.new_offset, write.new_slot)
                self._kdf = params
                self._generation = write.generation
                try:
                    self._store.write_slot(write.old_offset, _format.EMPTY_SLOT)
                except StorageError as exc:
                    # Committed already; the old slot is unusable through us and is erased next write.
                    self.stale_slot = _format.SLOT_OFFSETS.index(write.old_offset)
                    log.warning("old key slot not erased yet: %s", exc)

    def rekey(self, passphrase: bytes, params: _crypto.KdfParams | None) -> None:
        """A new random data key under a new passphrase, every value and frame sealed again.

        Goes through compaction's crash-safe path (temp file, fsync, rename, directory fsync):
        a crash leaves either the old file, whole, or the new one. Afterwards an old copy of
        the file with the old passphrase opens only what was in it before the re-key.
        """
        params = self._kdf if params is None else params
        wrapping = _keys.Wrapping(passphrase, params, self.rng)
        with self._mutex:
            old = self.keys()
            if self._txn is not None:
                raise InvalidRequestError("change_passphrase(rekey=True) cannot run inside a batch")
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                new = VaultKeys(self.rng(_crypto.KEY_SIZE), old.vault_id)
                epoch = self._epoch + 1
                version = self.write_version
                prefix, tag, generation = _keys.rekeyed_head(
                    self._store.read(0, _format.LOG_START), new, wrapping, epoch, self.rng, version=version
                )
                now = self.clock()

                def resealed() -> Iterator[list[Any]]:
                    # Every record the compacted file holds (past revisions and the trash too),
                    # each value box sealed again under the new key, bound as before.
                    for op in self._index.compacted(now, version=version):
                        if op[0] == OP_CHECKPOINT:
                            records = op[5]
                            for i, packed in enumerate(records):
                                entry = _format.decode_entry(_format.unpackb(packed))
                                if entry.value_box is not None:
                                    value = old.open_value(entry)
                                    assert value is not None
                                    entry.value_box = new.seal_value(entry.id, entry.value_rev, value, self.rng)
                                    records[i] = _format.packb(entry.to_list())
                            yield op
                            continue
                        record = op[1]
                        if record[_VALUE_BOX] is not None:
                            entry = _format.decode_entry(record)
                            value = old.open_value(entry)
                            assert value is not None
                            record = list(record)
                            record[_VALUE_BOX] = new.seal_value(entry.id, entry.value_rev, value, self.rng)
                            op = [op[0], record, *op[2:]]
                        yield op

                frames, _tag, _seq = self._sealed_records(new, tag, epoch, resealed())

                replaced = False

                def committed() -> None:
                    # From the rename on, only the new key opens the file; the index still holds
                    # the old value boxes, so the next read reloads.
                    nonlocal replaced
                    replaced = True
                    self.version = version
                    self._keys = new
                    self._kdf = params
                    self._generation = generation
                    self.stale_slot = None
                    self._must_load = True

                old_access = self.access_keys(old)
                try:
                    self._store.replace_with(prefix + b"".join(frames), on_replaced=committed)
                except StorageError as exc:
                    if not replaced:
                        raise  # nothing changed: the old file, key and passphrase stand
                    # Renamed but the directory sync or reopen failed: the re-key happened (a crash
                    # now leaves the old file or the new one, both whole), so it is not undone.
                    log.warning("vault re-keyed; syncing its directory failed: %s", exc)
                try:
                    # The access log is sealed under the data key too: seal it again under the new one.
                    # If this fails (or a crash comes first), the next read sets the old log aside.
                    self.access.reseal(old_access, self.access_keys(new))
                except (StorageError, CorruptVaultError, LockTimeoutError) as exc:
                    log.warning("vault re-keyed; the access log could not be resealed: %s", exc)
                self._refresh()
