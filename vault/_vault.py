"""Vault: unlock, the secret resource (create/fetch/list/update/delete), batch, passphrase change.

State model: the file is the truth. A handle keeps an in-memory index of every
secret's metadata (values stay sealed until fetched) and the offset and chain tag of
the last frame it has read. Before every operation it reads whatever other processes
committed since; every write happens under the exclusive sidecar lock, after such a
catch-up, as one appended frame and one fdatasync.
"""

from __future__ import annotations

import bisect
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, TypeVar

from . import _crypto, _format, _records
from ._format import OP_DELETE, OP_PUT, OP_SETTING, Entry, corrupt
from ._log import LogRead, iter_log, read_log, seal_frame
from ._records import Secret
from ._secrets import SecretClient
from ._store import IO, Store, create_file, resolve_path
from .errors import (
    ConflictError,
    CorruptVaultError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
    VaultClosedError,
    WrongPassphraseError,
)

if TYPE_CHECKING:
    from .sync import ChatBotKitRemote, SyncReport

__all__ = ["Vault", "init", "open"]

log = logging.getLogger("vault")

Clock = Callable[[], int]
PathArg = str | os.PathLike[str] | None
T = TypeVar("T")

_ID_FIRST: Final = "abcdefghijklmnopqrstuvwxyz"
_ID_REST: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_COMPACT_CHUNK: Final = 2048
_LOAD_CHUNK: Final = 4 << 20
_MISSING: Final = object()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# byte -> id character, done in C by bytes.translate. Bytes at or above the largest multiple
# of the alphabet size are deleted (rejection sampling), so every character stays uniform.
_REST_TABLE: Final = bytes(ord(_ID_REST[b % len(_ID_REST)]) for b in range(256))
_REST_REJECT: Final = bytes(range(256 - 256 % len(_ID_REST), 256))
_FIRST_LIMIT: Final = 256 - 256 % len(_ID_FIRST)


def _new_id(rng: _crypto.RandomSource) -> str:
    """24 lowercase characters starting with a letter, like the cloud's cuid2 ids (unbiased).

    Consumes the random stream exactly as a byte-by-byte loop would (same ids for a
    seeded source), at a fraction of the cost: it was ~15 µs of every create.
    """
    first = ""
    rest = b""
    while len(rest) < 23:
        chunk = rng(32)
        if not first:
            for i, byte in enumerate(chunk):
                if byte < _FIRST_LIMIT:
                    first = _ID_FIRST[byte % len(_ID_FIRST)]
                    chunk = chunk[i + 1 :]
                    break
            else:
                continue
        rest += chunk.translate(_REST_TABLE, _REST_REJECT)
    return first + rest[:23].decode("ascii")


class _State:
    """The index: entries by id, sort order, alias and name lookups, vault settings."""

    __slots__ = ("aliases", "dead", "entries", "gone", "names", "order", "settings", "stale")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.order: list[tuple[int, str]] = []  # (createdAt, id), ascending: the cloud's sort
        self.aliases: dict[str, str] = {}
        # name -> the id holding it, or a set of ids when several share it. Names are nearly
        # always unique, and a one-element set per secret was 24 MiB of a 100k-secret index.
        self.names: dict[str, str | set[str]] = {}
        self.settings: dict[str, Any] = {}
        # Sort keys of deleted rows, so a cursor naming a just-deleted item still pages on.
        self.gone: dict[str, tuple[int, str]] = {}
        self.dead = 0  # superseded ops in the log: compaction's trigger
        # Keys in ``order`` whose row was deleted or re-dated. They are skipped when read and
        # pruned in bulk: deleting from the middle of a 100k list is an O(N) memmove per write.
        self.stale = 0

    def live(self, key: tuple[int, str]) -> bool:
        entry = self.entries.get(key[1])
        return entry is not None and entry.created_at == key[0]

    def _add_key(self, key: tuple[int, str]) -> None:
        order = self.order
        if not order or order[-1] < key:
            order.append(key)  # the common case: a new secret is the newest
            return
        i = bisect.bisect_left(order, key)
        if i < len(order) and order[i] == key:
            self.stale -= 1  # still there from a delete that is being undone
        else:
            order.insert(i, key)

    def _maybe_prune(self) -> None:
        if self.stale > 1024 and 2 * self.stale > len(self.order):
            self.order = [key for key in self.order if self.live(key)]
            self.stale = 0

    def put(self, entry: Entry, *, keep_order: bool = True) -> None:
        old = self.entries.get(entry.id)
        if old is not None:
            self._unindex(old, drop_order=keep_order and old.created_at != entry.created_at)
            if keep_order and old.created_at != entry.created_at:
                self._add_key((entry.created_at, entry.id))
        elif keep_order:
            self._add_key((entry.created_at, entry.id))
        self.entries[entry.id] = entry
        if self.gone:
            self.gone.pop(entry.id, None)
        if entry.alias is not None:
            self.aliases[entry.alias] = entry.id
        self._index_name(entry)
        self._maybe_prune()

    def _index_name(self, entry: Entry) -> None:
        held = self.names.get(entry.name)
        if held is None:
            self.names[entry.name] = entry.id
        elif isinstance(held, str):
            if held != entry.id:
                self.names[entry.name] = {held, entry.id}
        else:
            held.add(entry.id)

    def remove(self, record_id: str) -> Entry:
        entry = self.entries.pop(record_id)
        self._unindex(entry, drop_order=True)
        self.gone[record_id] = (entry.created_at, entry.id)
        self._maybe_prune()
        return entry

    def _unindex(self, entry: Entry, *, drop_order: bool) -> None:
        if entry.alias is not None and self.aliases.get(entry.alias) == entry.id:
            del self.aliases[entry.alias]
        held = self.names.get(entry.name)
        if held == entry.id:
            del self.names[entry.name]
        elif isinstance(held, set):
            held.discard(entry.id)
            if len(held) == 1:
                self.names[entry.name] = next(iter(held))
        if drop_order:
            self.stale += 1

    def apply_logged(self, ops: list[Any], *, bulk: bool) -> None:
        """Replay one committed frame, checking it is consistent with what came before."""
        entries = self.entries
        for op in ops:
            if type(op) is not list or not op:
                raise corrupt("malformed operation")
            code = op[0]
            if code == OP_PUT and len(op) == 2:
                entry = _format.decode_entry(op[1])
                old = entries.get(entry.id)
                if old is not None:
                    if entry.rev != old.rev + 1:
                        raise corrupt(f"secret {entry.id} has a revision out of sequence")
                    self.dead += 1
                if entry.alias is not None:
                    owner = self.aliases.get(entry.alias)
                    if owner is not None and owner != entry.id:
                        raise corrupt("two secrets share an alias")
                    if bulk and old is None:
                        self.aliases[entry.alias] = entry.id
                if bulk and old is None:
                    # Opening a compacted file is one new record after another: index it directly
                    # (the sort order is built once at the end).
                    entries[entry.id] = entry
                    if self.gone:
                        self.gone.pop(entry.id, None)
                    self._index_name(entry)
                else:
                    self.put(entry, keep_order=not bulk)
            elif code == OP_DELETE and len(op) == 2:
                if type(op[1]) is not str or op[1] not in self.entries:
                    raise corrupt("delete of an unknown secret")
                self.remove(op[1])
                self.dead += 2
            elif code == OP_SETTING and len(op) == 3 and type(op[1]) is str:
                if op[1] in self.settings:
                    self.dead += 1
                if op[2] is None:
                    self.settings.pop(op[1], None)
                else:
                    self.settings[op[1]] = op[2]
            else:
                raise corrupt("unknown operation")
        if len(self.entries) > _format.MAX_RECORDS:
            raise corrupt("too many secrets")

    def resort(self) -> None:
        self.order = sorted((e.created_at, e.id) for e in self.entries.values())
        self.stale = 0


class _Txn:
    __slots__ = ("ops", "undo")

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.undo: list[tuple[str, str, Any]] = []


def _encode_op(op: tuple[Any, ...]) -> list[Any]:
    if op[0] == OP_PUT:
        return [OP_PUT, op[1].to_list()]
    return list(op)


class Vault:
    """An unlocked vault. Use :func:`vault.open` or :func:`vault.init` to get one.

    A context manager; ``close()`` drops the keys. Safe to share between threads;
    several processes may open the same file at once.
    """

    def __init__(
        self,
        store: Store,
        data_key: bytes,
        vault_id: bytes,
        kdf: _crypto.KdfParams,
        *,
        clock: Clock | None,
        rng: _crypto.RandomSource | None,
        lock_timeout: float,
    ) -> None:
        self._store = store
        self._data_key: bytes | None = data_key
        self._keys: _crypto.Keys | None = _crypto.Keys.from_data_key(data_key)
        self._vault_id = vault_id
        self._kdf = kdf
        self._clock: Clock = clock or _now_ms
        self._rng: _crypto.RandomSource = rng or _crypto.random_bytes
        self._lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._txn: _Txn | None = None
        self._state = _State()
        self._epoch = 0
        self._end = 0
        self._tag = b""
        self._seq = 0
        self._size_seen = 0
        self._stale_slot: int | None = None
        self._close_hooks: list[Callable[[], None]] = []
        self.secret = SecretClient(self)

    # --- lifecycle -----------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def closed(self) -> bool:
        return self._keys is None

    @property
    def kdf(self) -> _crypto.KdfParams:
        """The key-derivation cost of the passphrase this handle was unlocked with."""
        return self._kdf

    def close(self) -> None:
        with self._mutex:
            if self._keys is None:
                return
            self._keys = None
            self._data_key = None
            self._state = _State()
            self._store.close()
            hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            hook()

    def _on_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after the vault closes (vault.testing removes its temp directory this way)."""
        with self._mutex:
            self._keys_or_raise()
            self._close_hooks.append(hook)

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._state.entries)} secrets"
        return f"<Vault {str(self.path)!r} {state}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an unlocked Vault cannot be pickled")

    def __len__(self) -> int:
        with self._mutex:
            self._ready()
            return len(self._state.entries)

    def _keys_or_raise(self) -> _crypto.Keys:
        if self._keys is None:
            raise VaultClosedError("the vault is closed")
        return self._keys

    # --- reading the file ------------------------------------------------------------

    def _load(self) -> None:
        """Verify the whole file against our keys and rebuild the index from it.

        The log is read in chunks, not whole: at 100k secrets the file is ~40 MB, which
        would otherwise sit in memory beside the index it is being turned into.
        """
        keys = self._keys_or_raise()
        store = self._store
        head = store.read(0, _format.LOG_START)
        header = _format.decode_header(head)
        if header.vault_id != self._vault_id:
            raise corrupt("the file now holds a different vault")
        tag = head[_format.HEADER_TAG_OFFSET : _format.LOG_START - 2 * _format.SLOT_SIZE]
        expect = _crypto.mac(keys.chain, _format.header_mac_input(head[: _format.HEADER_SIZE]))
        if not _crypto.macs_equal(expect, tag):
            raise corrupt("header fails its integrity check")
        # Loading allocates ~14 objects per secret and frees none of them, so every collection
        # the allocations trigger is wasted work, and each full one walks the whole growing
        # index: half the CPU of opening 100k secrets. Nothing built here forms a cycle.
        pause_gc = gc.isenabled()
        if pause_gc:
            gc.disable()
        try:
            # Apply each frame as it is verified and drop it: the state is new and is thrown away
            # if a later frame fails, so nothing half-read is ever visible.
            state = _State()
            pos, seq, read_upto = _format.LOG_START, 0, _format.LOG_START
            want = _LOAD_CHUNK
            while True:
                chunk = store.read(pos, want)
                read_upto = pos + len(chunk)
                at_eof = len(chunk) < want
                result = LogRead(end=0, tag=tag, seq=seq)
                for ops in iter_log(keys, chunk, header.epoch, result):
                    state.apply_logged(ops, bulk=True)
                pos, tag, seq = pos + result.end, result.tag, result.seq
                if at_eof:
                    break  # whatever is left past ``pos`` is a torn append
                if result.torn:
                    # A frame runs past the chunk: read again from its start with room for it.
                    # (Only at the end of the file can an incomplete frame be a torn append.)
                    want = want * 2 if result.end == 0 else _LOAD_CHUNK
            state.resort()
        finally:
            if pause_gc:
                gc.enable()
        self._state = state
        self._epoch = header.epoch
        self._end = pos
        self._tag = tag
        self._seq = seq
        self._size_seen = read_upto

    def _refresh(self) -> None:
        """Take in what other processes committed since we last looked."""
        keys = self._keys_or_raise()
        store = self._store
        if store.replaced():
            store.reopen()
            self._load()
            return
        if store.size() == self._size_seen:
            return
        # Something was appended. Read it under the shared lock: a writer whose fsync fails
        # cuts its frame off again, and no reader may have taken in that frame meanwhile.
        with store.locked(exclusive=False, timeout=self._lock_timeout):
            if store.size() < self._end:
                # Shorter than what we took in: we opened (lock-free) while a writer's frame was on
                # disk that its failed fsync then cut off, or the file was cut. Re-verify from scratch.
                self._load()
                return
            data = store.read(self._end)
        result = read_log(keys, data, 0, self._tag, self._epoch, self._seq)
        for ops in result.frames:
            self._state.apply_logged(ops, bulk=False)
        self._end += result.end
        self._tag = result.tag
        self._seq = result.seq
        self._size_seen = self._end + len(data) - result.end

    def _ready(self) -> None:
        self._keys_or_raise()
        if self._txn is None:
            self._refresh()

    # --- writing ---------------------------------------------------------------------

    def _mutate(self, build: Callable[[], T]) -> T:
        """Run ``build`` (which validates and calls ``_apply``) as one durable commit."""
        with self._mutex:
            self._keys_or_raise()
            if self._txn is not None:
                return build()
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                txn = self._txn = _Txn()
                try:
                    result = build()
                    self._commit(txn)
                except BaseException:
                    self._undo(txn)
                    raise
                finally:
                    self._txn = None
            self._after_commit()
            return result

    @contextmanager
    def batch(self) -> Iterator[Vault]:
        """Commit every change made inside the block as one frame, with one fsync: all or nothing.

        The writer lock is held for the whole block, so keep it short. Reads inside the
        block see the block's own changes. Nested ``batch()`` blocks join the outer one.
        """
        with self._mutex:
            self._keys_or_raise()
            if self._txn is not None:
                yield self
                return
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                txn = self._txn = _Txn()
                try:
                    yield self
                    self._commit(txn)
                except BaseException:
                    self._undo(txn)
                    raise
                finally:
                    self._txn = None
            self._after_commit()

    def _apply(self, op: tuple[Any, ...]) -> None:
        txn = self._txn
        assert txn is not None
        state = self._state
        if op[0] == OP_PUT:
            entry: Entry = op[1]
            txn.undo.append(("put", entry.id, state.entries.get(entry.id)))
            state.put(entry)
        elif op[0] == OP_DELETE:
            txn.undo.append(("put", op[1], state.entries[op[1]]))
            state.remove(op[1])
        else:
            txn.undo.append(("set", op[1], state.settings.get(op[1], _MISSING)))
            if op[2] is None:
                state.settings.pop(op[1], None)
            else:
                state.settings[op[1]] = op[2]
        txn.ops.append(op)

    def _undo(self, txn: _Txn) -> None:
        state = self._state
        for kind, key, old in reversed(txn.undo):
            if kind == "set":
                if old is _MISSING:
                    state.settings.pop(key, None)
                else:
                    state.settings[key] = old
            elif old is None:
                state.remove(key)
                state.gone.pop(key, None)
            else:
                state.put(old)

    def _commit(self, txn: _Txn) -> None:
        if not txn.ops:
            return
        keys = self._keys_or_raise()
        try:
            frame, tag = seal_frame(
                keys, self._tag, self._epoch, self._seq, [_encode_op(op) for op in txn.ops], self._rng
            )
        except ValueError:
            raise InvalidRequestError("too many changes for one commit; split the batch") from None
        self._store.append(frame, self._end)
        self._end += len(frame)
        self._size_seen = self._end
        self._tag = tag
        self._seq += 1
        # Ops this frame makes obsolete in the log: a replaced record, a deleted record
        # plus its delete op, an overwritten setting.
        dead = 0
        for (kind, _, old), op in zip(txn.undo, txn.ops, strict=True):
            if kind == "put":
                dead += (old is not None) + (op[0] == OP_DELETE)
            elif old is not _MISSING:
                dead += 1
        self._state.dead += dead

    def _after_commit(self) -> None:
        """Housekeeping that must never fail a write that is already durable."""
        try:
            if self._stale_slot is not None:
                self._erase_stale_slot()
            state = self._state
            if state.dead > max(1024, len(state.entries)):
                with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                    self._refresh()
                    self._compact_locked()
        except StorageError as exc:
            log.warning("vault housekeeping failed and will be retried: %s", exc)

    # --- compaction and key slots --------------------------------------------------------

    def compact(self) -> None:
        """Rewrite the file with only live records (temp file, fsync, atomic rename)."""
        with self._mutex:
            self._keys_or_raise()
            if self._txn is not None:
                raise InvalidRequestError("compact() cannot run inside a batch")
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                self._compact_locked()

    def _compact_locked(self) -> None:
        keys = self._keys_or_raise()
        head = self._store.read(0, _format.LOG_START)
        index, _slot = _format.choose_slot(head)
        offset = _format.SLOT_OFFSETS[index]
        slot_raw = head[offset : offset + _format.SLOT_SIZE]
        epoch = self._epoch + 1
        header = _format.Header(self._vault_id, epoch).encode()
        tag = _crypto.mac(keys.chain, _format.header_mac_input(header))
        parts = [header, tag, slot_raw, _format.EMPTY_SLOT]
        state = self._state
        ops: list[list[Any]] = [[OP_SETTING, k, v] for k, v in sorted(state.settings.items())]
        seq = 0
        for key in state.order:
            if not state.live(key):
                continue
            ops.append([OP_PUT, state.entries[key[1]].to_list()])
            if len(ops) >= _COMPACT_CHUNK:
                frame, tag = seal_frame(keys, tag, epoch, seq, ops, self._rng)
                parts.append(frame)
                seq += 1
                ops = []
        if ops:
            frame, tag = seal_frame(keys, tag, epoch, seq, ops, self._rng)
            parts.append(frame)
            seq += 1
        data = b"".join(parts)
        self._store.replace_with(data)
        self._epoch = epoch
        self._end = self._size_seen = len(data)
        self._tag = tag
        self._seq = seq
        state.dead = 0
        state.gone.clear()
        self._stale_slot = None

    def _erase_stale_slot(self) -> None:
        with self._store.locked(exclusive=True, timeout=self._lock_timeout):
            head = self._store.read(0, _format.LOG_START)
            index, _ = _format.choose_slot(head)
            other = 1 - index
            offset = _format.SLOT_OFFSETS[other]
            if head[offset : offset + _format.SLOT_SIZE] != _format.EMPTY_SLOT:
                self._store.write_slot(offset, _format.EMPTY_SLOT)
            self._stale_slot = None

    def change_passphrase(self, new_passphrase: str | bytes, *, kdf: str | _crypto.KdfParams | None = None) -> None:
        """Rewrap the data key under a new passphrase; the records are not touched.

        The new key slot is written beside the old one and synced (the commit point:
        from then on only the newest slot is tried), then the old slot is erased.
        Cost: one Argon2id run and two small in-place writes, whatever the vault's size.
        """
        passphrase = _crypto.normalize_passphrase(new_passphrase)
        params = self._kdf if kdf is None else _crypto.resolve_kdf(kdf)
        salt = self._rng(_crypto.SALT_SIZE)
        kek = _crypto.derive_kek(passphrase, salt, params)
        with self._mutex:
            self._keys_or_raise()
            if self._txn is not None:
                raise InvalidRequestError("change_passphrase() cannot run inside a batch")
            data_key = self._data_key
            assert data_key is not None
            with self._store.locked(exclusive=True, timeout=self._lock_timeout):
                self._refresh()
                head = self._store.read(0, _format.LOG_START)
                index, current = _format.choose_slot(head)
                generation = current.generation + 1
                wrapped = _crypto.seal(kek, _format.wrap_plaintext(data_key, self._vault_id, generation), self._rng)
                slot = _format.Slot(generation, params, salt, wrapped)
                self._store.write_slot(_format.SLOT_OFFSETS[1 - index], slot.encode())
                self._kdf = params
                try:
                    self._store.write_slot(_format.SLOT_OFFSETS[index], _format.EMPTY_SLOT)
                except StorageError as exc:
                    # Committed already; the old slot is unusable through us and is erased next write.
                    self._stale_slot = index
                    log.warning("old key slot not erased yet: %s", exc)

    # --- sync ---------------------------------------------------------------------------

    def sync(
        self,
        remote: ChatBotKitRemote,
        direction: Literal["push", "pull", "both"] = "both",
        dry_run: bool = False,
        prefer: Literal["local", "remote"] | None = None,
    ) -> SyncReport:
        """Push local changes to / pull remote changes from the ChatBotKit workspace (needs ``cbk-vault[sync]``).

        ``direction`` is "push", "pull" or "both"; ``dry_run`` plans without writing anywhere;
        ``prefer`` ("local" or "remote") settles conflicts, which are otherwise only reported.
        See docs/SYNC.md.
        """
        from .sync import sync

        return sync(self, remote, direction=direction, dry_run=dry_run, prefer=prefer)

    # --- settings (used by sync) --------------------------------------------------------

    def _get_setting(self, key: str, default: Any = None) -> Any:
        with self._mutex:
            self._ready()
            return _records.json_copy(self._state.settings.get(key, default))

    def _set_setting(self, key: str, value: Any) -> None:
        def build() -> None:
            self._apply((OP_SETTING, key, value))

        self._mutate(build)

    # --- raw record access (used by sync; not public API) ---------------------------------

    def _records(self) -> list[tuple[Secret, dict[str, Any], bool]]:
        """Every secret's metadata (no value), its extension map, and whether it holds a value."""
        with self._mutex:
            self._ready()
            state = self._state
            return [
                (Secret._from_entry(e), _records.json_copy(e.ext), e.value_box is not None)
                for e in (state.entries[key[1]] for key in state.order if state.live(key))
            ]

    def _lookup(self, identifier: str) -> Secret:
        """Like ``secret.fetch`` but without decrypting the value (the stand-in never returns one)."""
        with self._mutex:
            self._ready()
            return Secret._from_entry(self._resolve(identifier))

    def _fetch_raw(self, record_id: str) -> tuple[Secret, dict[str, Any]]:
        """The secret by exact id with its decrypted value and its extension map."""
        with self._mutex:
            self._ready()
            entry = self._state.entries.get(record_id)
            if entry is None:
                raise NotFoundError(f"secret {record_id!r} not found")
            return Secret._from_entry(entry, self._open_value(entry)), _records.json_copy(entry.ext)

    def _put_raw(
        self,
        record_id: str,
        fields: Mapping[str, Any],
        *,
        created_at: int | None = None,
        updated_at: int | None = None,
        ext: Mapping[str, Any] | None = None,
    ) -> Secret:
        """Create or overwrite a record with an exact id and timestamps (pulling from the cloud).

        ``fields`` are snake_case; those left out keep their stored (or default) value,
        and ``value`` is only touched when given. ``ext`` replaces the extension map when given.
        """
        if _format.ID_RE.fullmatch(record_id) is None:
            raise InvalidRequestError("record id has the wrong form")
        checked = {
            key: _records.check_field(key, value) for key, value in _records.normalize_fields(None, fields).items()
        }
        ext_map = None if ext is None else _records.check_field("meta", ext)

        def build() -> Secret:
            state = self._state
            old = state.entries.get(record_id)
            now = self._clock()
            if old is None:
                d = dict(_records.DEFAULTS)
                new = Entry(
                    record_id,
                    1,
                    now,
                    now,
                    d["name"],
                    d["description"],
                    d["kind"],
                    d["type"],
                    d["visibility"],
                    None,
                    None,
                    None,
                    None,
                    0,
                    None,
                    _format.NO_EXT,
                )
            else:
                new = old.copy()
                new.rev = old.rev + 1
            for key, value in checked.items():
                if key == "value":
                    new.value_rev = new.rev
                    new.value_box = None if value is None else self._seal_value(record_id, new.rev, value)
                    continue
                if key == "alias" and value is not None:
                    owner = state.aliases.get(value)
                    if owner is not None and owner != record_id:
                        raise ConflictError(f"alias {value!r} is already in use")
                setattr(new, key, value)
            if created_at is not None:
                new.created_at = created_at
            if updated_at is not None:
                new.updated_at = updated_at
            if ext_map is not None:
                new.ext = ext_map
            self._apply((OP_PUT, new))
            return Secret._from_entry(new)

        return self._mutate(build)

    def _delete_raw(self, record_id: str) -> None:
        def build() -> None:
            if record_id not in self._state.entries:
                raise NotFoundError(f"secret {record_id!r} not found")
            self._apply((OP_DELETE, record_id))

        self._mutate(build)

    # --- helpers for the secret resource ---------------------------------------------------

    def _resolve(self, identifier: object) -> Entry:
        if type(identifier) is not str or not identifier:
            raise InvalidRequestError("secret id must be a non-empty string")
        state = self._state
        entry: Entry | None = None
        if identifier.startswith("@"):
            # "@@alias" and "@user@alias" name other users' secrets; there are none here.
            rid = state.aliases.get(identifier[1:])
            entry = state.entries.get(rid) if rid is not None else None
        elif len(identifier) >= 2 and identifier[0] == "(" and identifier[-1] == ")":
            held = state.names.get(identifier[1:-1])
            ids = (held,) if isinstance(held, str) else held
            if ids:
                # Several secrets may share a name; like the cloud's first-match lookup, take the oldest.
                entry = state.entries[min(ids, key=lambda i: (state.entries[i].created_at, i))]
        else:
            entry = state.entries.get(identifier)
        if entry is None:
            shown = identifier if len(identifier) <= 140 else identifier[:137] + "..."
            raise NotFoundError(f"secret {shown!r} not found")
        return entry

    def _seal_value(self, record_id: str, value_rev: int, value: str) -> bytes:
        keys = self._keys_or_raise()
        return _crypto.seal(keys.value, _format.value_plaintext(self._vault_id, record_id, value_rev, value), self._rng)

    def _open_value(self, entry: Entry) -> str | None:
        if entry.value_box is None:
            return None
        keys = self._keys_or_raise()
        try:
            plaintext = _crypto.open_box(keys.value, entry.value_box)
        except _crypto.OpenFailed:
            raise corrupt(f"value of secret {entry.id} fails its integrity check") from None
        return _format.decode_value_plaintext(plaintext, self._vault_id, entry.id, entry.value_rev)

    def _new_record_id(self) -> str:
        state = self._state
        while True:
            rid = _new_id(self._rng)
            if rid not in state.entries and rid not in state.gone:
                return rid


# --- opening and creating ---------------------------------------------------------------


def init(
    path: PathArg = None,
    passphrase: str | bytes = "",
    *,
    kdf: str | _crypto.KdfParams = "moderate",
    clock: Clock | None = None,
    lock_timeout: float = 10.0,
    _rng: _crypto.RandomSource | None = None,
    _io: IO | None = None,
) -> Vault:
    """Create a new, empty vault at ``path`` (None: the default path) and return it unlocked."""
    target = resolve_path(path)
    params = _crypto.resolve_kdf(kdf)
    secret = _crypto.normalize_passphrase(passphrase)
    rng = _rng or _crypto.random_bytes
    vault_id = rng(16)
    data_key = rng(_crypto.KEY_SIZE)
    salt = rng(_crypto.SALT_SIZE)
    kek = _crypto.derive_kek(secret, salt, params)
    slot = _format.Slot(1, params, salt, _crypto.seal(kek, _format.wrap_plaintext(data_key, vault_id, 1), rng))
    keys = _crypto.Keys.from_data_key(data_key)
    header = _format.Header(vault_id, 0).encode()
    tag = _crypto.mac(keys.chain, _format.header_mac_input(header))
    io = _io or IO()
    create_file(target, header + tag + slot.encode() + _format.EMPTY_SLOT, io)
    try:
        store = Store(target, io)
    except BaseException:
        # init failed, so leave nothing behind: a retry must not meet VaultExistsError.
        target.unlink(missing_ok=True)
        raise
    try:
        vault = Vault(store, data_key, vault_id, params, clock=clock, rng=_rng, lock_timeout=lock_timeout)
        vault._load()
    except BaseException:
        store.close()
        target.unlink(missing_ok=True)
        raise
    return vault


def open(
    path: PathArg = None,
    passphrase: str | bytes = "",
    *,
    clock: Clock | None = None,
    lock_timeout: float = 10.0,
    _rng: _crypto.RandomSource | None = None,
    _io: IO | None = None,
) -> Vault:
    """Unlock the vault at ``path`` (None: the default path)."""
    target = resolve_path(path)
    secret = _crypto.normalize_passphrase(passphrase)
    store = Store(target, _io)
    try:
        # No lock: renames are atomic and a torn append reads as not yet committed.
        data = store.read(0, _format.LOG_START)
        header = _format.decode_header(data)
        try:
            index, slot = _format.choose_slot(data)
        except CorruptVaultError:
            # A passphrase change rewrites a slot in place; read again once it is done.
            with store.locked(exclusive=False, timeout=lock_timeout):
                data = store.read(0, _format.LOG_START)
            header = _format.decode_header(data)
            index, slot = _format.choose_slot(data)
        kek = _crypto.derive_kek(secret, slot.salt, slot.kdf)
        try:
            wrapped = _crypto.open_box(kek, slot.wrapped)
        except _crypto.OpenFailed:
            raise WrongPassphraseError("wrong passphrase for this vault") from None
        if (
            len(wrapped) != _format.WRAP_PLAIN_SIZE
            or wrapped[32:48] != header.vault_id
            or (int.from_bytes(wrapped[48:], "big") != slot.generation)
        ):
            raise corrupt("key slot does not belong to this vault")
        vault = Vault(store, wrapped[:32], header.vault_id, slot.kdf, clock=clock, rng=_rng, lock_timeout=lock_timeout)
        vault._load()
        other = data[_format.SLOT_OFFSETS[1 - index] : _format.SLOT_OFFSETS[1 - index] + _format.SLOT_SIZE]
        if other != _format.EMPTY_SLOT:
            vault._stale_slot = 1 - index  # an interrupted passphrase change; erased on the next write
    except BaseException:
        store.close()
        raise
    return vault
