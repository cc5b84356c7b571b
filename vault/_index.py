"""The in-memory index of a vault: records by id, alias and name, the list order, settings,
past revisions and the trash.

It is the replay of the verified log and nothing else: the engine applies each committed
frame with :meth:`Index.apply_logged`, and each operation of an open transaction with
:meth:`Index.apply`, which returns what :meth:`Index.undo` needs to take it back. Lookups
(:meth:`Index.resolve`) and paging (:meth:`Index.page`) read it. No I/O, no keys.

Checkpoint records (format version 3): a compacted file indexes its live records in columns
(id, createdAt, name, alias) and keeps each record packed; the index holds those bytes in
``lazy`` and decodes a record only when it is used (:meth:`Index.get`), so open does no
per-record decoding and the index holds one bytes object per such secret. A change to one
moves it to ``entries`` (decoded).

Past revisions: a PUT that replaces a record (live or in the trash) moves the old revision to
``history``; compacted files carry them as OP_REVISION. The trash: OP_TRASH moves a live record
to ``trash`` (its alias and name are released); a PUT of the next revision takes it back out
(undelete); OP_DELETE purges a record, live or trashed, with its history.
"""

from __future__ import annotations

import bisect
import heapq
import operator
from array import array
from collections.abc import Callable, Iterator
from typing import Any, Final

from . import _format, _history
from ._format import (
    OP_CHECKPOINT,
    OP_DELETE,
    OP_PUT,
    OP_REVISION,
    OP_SETTING,
    OP_TRASH,
    OP_TRASHED,
    Checkpoint,
    Entry,
    corrupt,
)
from ._history import Retention
from .errors import InvalidRequestError, NotFoundError

__all__ = ["Index", "Undo"]

_MISSING: Final = object()

#: Records per checkpoint op, and the packed bytes at which one is closed early: a frame holds
#: one checkpoint op, so open never decrypts more than about this much at once.
CHECKPOINT_CHUNK: Final = _format.CHECKPOINT_MAX
CHECKPOINT_BYTES: Final = 512 << 10
#: How many decoded checkpoint records are kept (the most recently decoded): a loop over a few hot
#: secrets decodes each once, and memory stays bounded however much of the vault is listed.
DECODED_CACHE: Final = 512

#: One undone step: ("rec", record id, its state before, dead before) or ("set", key, the value before
#: or _MISSING, dead before). A record's state is (live entry, (trashed entry, deletedAt), history, gone key).
Undo = tuple[str, str, Any, int]

class Order:
    """The list order: (createdAt, id) keys, ascending, as two parallel arrays.

    A list of ``(int, str)`` tuples costs ~104 bytes per secret (the tuple and the int); this
    costs 16 (an array slot and a list slot), which is most of what a million secrets need.
    """

    __slots__ = ("created", "ids")

    def __init__(self, keys: list[tuple[int, str]] | None = None) -> None:
        self.created = array("q", [k[0] for k in keys] if keys else ())
        self.ids: list[str] = [k[1] for k in keys] if keys else []

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[int, str]:
        return self.created[i], self.ids[i]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return zip(self.created, self.ids, strict=True)

    # Bisection in C: first the run of equal createdAt in the array, then the id within that run
    # (usually one element; a bulk import makes runs of a few dozen in one millisecond).
    def bisect_left(self, key: tuple[int, str]) -> int:
        created, rid = key
        lo = bisect.bisect_left(self.created, created)
        hi = bisect.bisect_right(self.created, created, lo)
        return bisect.bisect_left(self.ids, rid, lo, hi)

    def bisect_right(self, key: tuple[int, str]) -> int:
        created, rid = key
        lo = bisect.bisect_left(self.created, created)
        hi = bisect.bisect_right(self.created, created, lo)
        return bisect.bisect_right(self.ids, rid, lo, hi)

    def append(self, key: tuple[int, str]) -> None:
        self.created.append(key[0])
        self.ids.append(key[1])

    def insert(self, i: int, key: tuple[int, str]) -> None:
        self.created.insert(i, key[0])
        self.ids.insert(i, key[1])


class Index:
    """Entries by id, the alias and name maps, the ``(createdAt, id)`` sort keys, vault settings."""

    __slots__ = (
        "aliases",
        "dead",
        "decoded",
        "entries",
        "gone",
        "history",
        "lazy",
        "lazy_aliases",
        "lazy_keys",
        "names",
        "names_pending",
        "order",
        "retention",
        "settings",
        "sorted",
        "stale",
        "taken",
        "trash",
    )

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        # Checkpoint records not decoded yet: id -> the packed record. Disjoint from ``entries``.
        self.lazy: dict[str, bytes] = {}
        # Recently decoded ``lazy`` records (an id here is always in ``lazy``), oldest first.
        self.decoded: dict[str, Entry] = {}
        # The alias column of ``lazy`` records that have one: a decoded record must carry exactly its
        # column's alias (both ways), and a record leaving ``lazy`` releases the column's alias by id,
        # whatever the record itself says.
        self.lazy_aliases: dict[str, str] = {}
        # Inside a bulk load: records taken out of ``lazy`` (replaced, trashed, deleted later in the log)
        # before resort() could check their createdAt against their columns. Empty otherwise.
        self.taken: dict[str, Entry] = {}
        # The (createdAt, id, name) columns of checkpoints read by a bulk load: resort() merges them
        # into ``order`` and ``names``.
        self.lazy_keys: list[tuple[array[int], list[str], list[str]]] = []
        # Whether ``order`` and ``names`` are complete (false only inside a bulk load).
        self.sorted = True
        self.order = Order()  # (createdAt, id), ascending: the cloud's sort
        self.aliases: dict[str, str] = {}
        # name -> the id holding it, or a set of ids when several share it. Names are nearly
        # always unique, and a one-element set per secret would cost ~240 bytes each.
        self.names: dict[str, str | set[str]] = {}
        # (names, ids) columns of checkpoints not merged into ``names`` yet: a map of a million names
        # costs ~0.3 s and ~40 MB, and only a lookup by name needs it (name_map() builds it then).
        # Every other change to ``names`` works on the partial map; the merge skips ids no longer packed.
        self.names_pending: list[tuple[list[str], list[str]]] = []
        self.settings: dict[str, Any] = {}
        # Sort keys of rows deleted since the last compaction: a cursor naming one still pages
        # on, and no new record takes an id the log still holds.
        self.gone: dict[str, tuple[int, str]] = {}
        self.dead = 0  # superseded ops in the log: compaction's trigger
        # Keys in ``order`` whose row was deleted or re-dated. They are skipped when read and
        # pruned in bulk: deleting from the middle of a 100k list is an O(N) memmove per write.
        self.stale = 0
        # Past revisions by record id, oldest first: consecutive revisions ending just before the
        # record's current one (live or trashed). Only ids with a past revision are keys.
        self.history: dict[str, list[Entry]] = {}
        # Records in the trash: id -> (the record as it was deleted, deletedAt).
        self.trash: dict[str, tuple[Entry, int]] = {}
        self.retention: Retention = _history.DEFAULT

    def __len__(self) -> int:
        return len(self.entries) + len(self.lazy)

    # --- reading ------------------------------------------------------------------------

    def get(self, record_id: str) -> Entry | None:
        """The live record with this id, or None (a checkpoint record is decoded, not kept decoded)."""
        entry = self.entries.get(record_id)
        if entry is None:
            packed = self.lazy.get(record_id)
            if packed is not None:
                return self._decode_lazy(record_id, packed)
        return entry

    def has(self, record_id: str) -> bool:
        """Whether a record with this id is live."""
        return record_id in self.entries or record_id in self.lazy

    def _decode_lazy(self, record_id: str, packed: bytes) -> Entry:
        # Kept decoded only in a small cache: memory stays one bytes object per secret however much
        # is listed. The columns the record was indexed by must agree with it (else: a writer's bug).
        hit = self.decoded.get(record_id)
        if hit is not None:
            return hit
        entry = _format.decode_packed(packed, record_id)
        agrees = entry.alias == self.lazy_aliases.get(record_id)
        if self.sorted:
            # (Inside a bulk load, createdAt and name are checked by resort(), against the columns.)
            key = (entry.created_at, record_id)
            i = self.order.bisect_left(key)
            agrees = agrees and i < len(self.order) and self.order[i] == key
            if agrees and not self.names_pending:
                held = self.names.get(entry.name)
                agrees = held == record_id or (isinstance(held, set) and record_id in held)
        if not agrees:
            raise corrupt(f"checkpoint record {record_id[:64]} differs from its index")
        if self.sorted:  # (inside a bulk load the checks wait for resort(): nothing is cached yet)
            decoded = self.decoded
            if len(decoded) >= DECODED_CACHE:
                del decoded[next(iter(decoded))]
            decoded[record_id] = entry
        return entry

    def name_map(self) -> dict[str, str | set[str]]:
        """Name -> the id holding it (a set of ids when several share it), checkpoint columns merged in."""
        pending, self.names_pending = self.names_pending, []
        if pending:
            self.decoded.clear()  # decoded before the names could be checked: decode (and check) again
        lazy = self.lazy
        for column_names, ids in pending:
            live = [(name, rid) for name, rid in zip(column_names, ids, strict=True) if rid in lazy]
            fresh: dict[str, str | set[str]] = dict(live)
            names = self.names
            if len(fresh) == len(live) and len(names) <= len(fresh) and not any(map(fresh.__contains__, names)):
                fresh.update(names)  # every name new and distinct: nearly always
                self.names = fresh
            else:
                for name, rid in live:
                    self._index_name_of(name, rid)
        return self.names

    def live(self, key: tuple[int, str]) -> bool:
        rid = key[1]
        if rid in self.lazy:
            return True  # never re-dated or deleted while packed: a change decodes it first
        entry = self.entries.get(rid)
        return entry is not None and entry.created_at == key[0]

    def iter_live(self) -> Iterator[Entry]:
        """Every record, oldest first (the cloud's ascending order)."""
        entries = self.entries
        lazy = self.lazy
        for created, rid in self.order:
            entry = entries.get(rid)
            if entry is None:
                packed = lazy.get(rid)
                if packed is not None:
                    yield self._decode_lazy(rid, packed)
            elif entry.created_at == created:
                yield entry

    def resolve(self, identifier: object) -> Entry:
        """The record an identifier names: an exact id, ``@alias`` or ``(name)``.

        Several secrets may share a name; like the cloud's first-match lookup, ``(name)``
        takes the oldest. ``@@alias`` and ``@user@alias`` name other users' secrets, of
        which a local vault has none.
        """
        if type(identifier) is not str or not identifier:
            raise InvalidRequestError("secret id must be a non-empty string")
        entry: Entry | None = None
        if identifier.startswith("@"):
            rid = self.aliases.get(identifier[1:])
            entry = self.get(rid) if rid is not None else None
            if entry is not None and entry.alias != identifier[1:]:
                # A checkpoint's alias column that its record does not carry: a writer's bug.
                raise corrupt(f"checkpoint record {entry.id} differs from its index")
        elif len(identifier) >= 2 and identifier[0] == "(" and identifier[-1] == ")":
            held = self.name_map().get(identifier[1:-1])
            ids = (held,) if isinstance(held, str) else held
            if ids:
                found = [e for e in map(self.get, ids) if e is not None]
                if found:
                    entry = min(found, key=lambda e: (e.created_at, e.id))
                    if any(e.name != identifier[1:-1] for e in found):
                        raise corrupt(f"checkpoint record {entry.id} differs from its index")
        else:
            entry = self.get(identifier)
        if entry is None:
            shown = identifier if len(identifier) <= 140 else identifier[:137] + "..."
            raise NotFoundError(f"secret {shown!r} not found")
        return entry

    def page(
        self, *, ascending: bool, cursor: str | None, count: int, keep: Callable[[Entry], bool] | None = None
    ) -> list[Entry]:
        """Up to ``count`` records after ``cursor`` in list order, those ``keep`` accepts.

        The cursor is a record id; the page starts just after that row. The row of a
        cursor deleted since the last compaction still marks its place, so paging goes on;
        an id that names no row at all gives an empty page.
        """
        keys = self.order
        if cursor is None:
            start = 0 if ascending else len(keys) - 1
        else:
            entry = self.get(cursor)
            if entry is None and cursor in self.trash:
                entry = self.trash[cursor][0]
            pos = (entry.created_at, entry.id) if entry is not None else self.gone.get(cursor)
            if pos is None:
                return []
            start = keys.bisect_right(pos) if ascending else keys.bisect_left(pos) - 1
        items: list[Entry] = []
        step = 1 if ascending else -1
        i = start
        entries = self.entries
        lazy = self.lazy
        while 0 <= i < len(keys) and len(items) < count:
            created, rid = keys[i]
            i += step
            found = entries.get(rid)
            if found is None:
                packed = lazy.get(rid)
                if packed is None:
                    continue  # a stale key: its row was deleted
                found = self._decode_lazy(rid, packed)
            elif found.created_at != created:
                continue  # a stale key: its row was re-dated
            if keep is None or keep(found):
                items.append(found)
        return items

    def id_taken(self, record_id: str) -> bool:
        """Whether an id is live, in the trash, or was deleted since the last compaction (still in the log)."""
        return (
            record_id in self.entries
            or record_id in self.lazy
            or record_id in self.gone
            or record_id in self.trash
            or record_id in self.history
        )

    def trashed(self, record_id: str) -> tuple[Entry, int] | None:
        """A record in the trash (and when it was deleted), or None."""
        return self.trash.get(record_id)

    def past(self, record_id: str, now: int) -> list[Entry]:
        """The past revisions of a live or trashed record that the retention keeps, oldest first."""
        history = self.history.get(record_id)
        if not history:
            return []
        current = self.entries.get(record_id) or self.trash[record_id][0]
        return list(_history.kept_history(history, current.updated_at, now, self.retention))

    def trash_page(self, *, ascending: bool, cursor: str | None, count: int, now: int) -> list[tuple[Entry, int]]:
        """A page of the trash in list order (createdAt, id), without records past the trash's retention."""
        rows = sorted(
            ((e.created_at, e.id), e, at)
            for e, at in self.trash.values()
            if not _history.trash_expired(at, now, self.retention)
        )
        if not ascending:
            rows.reverse()
        if cursor is not None:
            held = self.trash.get(cursor)
            if held is None:
                return []
            key = (held[0].created_at, held[0].id)
            rows = [r for r in rows if (r[0] > key if ascending else r[0] < key)]
        return [(e, at) for _, e, at in rows[:count]]

    def iter_records(self) -> Iterator[tuple[Entry, int | None]]:
        """Every live and trashed record (with its deletedAt, None when live), oldest first."""
        trashed = sorted(((e.created_at, e.id), e, at) for e, at in self.trash.values())
        live = (((e.created_at, e.id), e, None) for e in self.iter_live())
        for _, entry, at in heapq.merge(live, trashed, key=lambda row: row[0]):
            yield entry, at

    def compacted(self, now: int, *, version: int) -> Iterator[list[Any]]:
        """The ops of a compacted log (settings aside), record by record, under the retention.

        Version 2: each kept record's retained past revisions (OP_REVISION, oldest first), then
        the record (OP_PUT, or OP_TRASHED for the trash); trash past its retention is left out.
        Version 1 (golden-file writers only): one OP_PUT per live record, nothing else.
        Version 3: the records with past revisions and the trash as in version 2, then every other
        live record in OP_CHECKPOINT chunks, in list order (a packed record is copied as it is).
        """
        if version >= 3:
            yield from self._compacted_v3(now)
            return
        if version < 2:
            for entry in self.iter_live():
                yield [OP_PUT, entry.to_list()]
            return
        retention = self.retention
        for entry, at in self.iter_records():
            if at is not None and _history.trash_expired(at, now, retention):
                continue
            history = self.history.get(entry.id)
            if history:
                for past in _history.kept_history(history, entry.updated_at, now, retention):
                    yield [OP_REVISION, past.to_list()]
            yield [OP_PUT, entry.to_list()] if at is None else [OP_TRASHED, entry.to_list(), at]

    def _compacted_v3(self, now: int) -> Iterator[list[Any]]:
        retention = self.retention
        eager: set[str] = set()
        trashed = sorted(((e.created_at, e.id), e, at) for e, at in self.trash.values())
        with_history = sorted((e.created_at, e.id) for e in self.entries.values() if e.id in self.history)
        rows = heapq.merge(
            ((key, self.entries[key[1]], None) for key in with_history), trashed, key=lambda row: row[0]
        )
        for _key, entry, at in rows:
            if at is not None and _history.trash_expired(at, now, retention):
                continue
            kept = _history.kept_history(self.history.get(entry.id, ()), entry.updated_at, now, retention)
            if at is None and not kept:
                continue  # its history is all dropped: it goes into the checkpoint
            for past in kept:
                yield [OP_REVISION, past.to_list()]
            if at is None:
                eager.add(entry.id)
                yield [OP_PUT, entry.to_list()]
            else:
                yield [OP_TRASHED, entry.to_list(), at]
        # Names and aliases of packed records, without decoding them: the index maps inverted.
        alias_of = dict(zip(self.aliases.values(), self.aliases.keys(), strict=True))
        name_of: dict[str, str] = {}
        for name, held in self.name_map().items():
            if isinstance(held, str):
                name_of[held] = name
            else:
                name_of.update(dict.fromkeys(held, name))
        chunk: tuple[list[str], list[int], list[str], list[str | None], list[bytes]] = ([], [], [], [], [])
        size = 0
        entries = self.entries
        lazy = self.lazy
        # A writer must never write what its reader refuses: each id once. Every live record has exactly
        # one key in the order, so the rows written from each side must add up to exactly its records
        # (counted, not a set of a million ids); checked before the last op, so before the rename.
        from_lazy = from_entries = 0
        for created, rid in self.order:
            packed = lazy.get(rid)
            if packed is None:
                found = entries.get(rid)
                if found is None or found.created_at != created or rid in eager:
                    continue  # a stale key, or written above with its history
                packed = _format.packb(found.to_list())
                from_entries += 1
            else:
                from_lazy += 1
            ids, times, names, aliases, records = chunk
            ids.append(rid)
            times.append(created)
            names.append(name_of[rid])
            aliases.append(alias_of.get(rid))
            records.append(packed)
            size += len(packed)
            if len(ids) >= CHECKPOINT_CHUNK or size >= CHECKPOINT_BYTES:
                yield [OP_CHECKPOINT, *chunk]
                chunk, size = ([], [], [], [], []), 0
        if from_lazy != len(lazy) or from_entries != len(entries) - len(eager):
            raise AssertionError("compaction would write a checkpoint id twice (or miss one): an index bug")
        if chunk[0]:
            yield [OP_CHECKPOINT, *chunk]

    def prune(self, now: int, *, version: int) -> None:
        """Drop what :meth:`compacted` left out: the index then equals the replay of the new file."""
        if version < 2:
            self.history.clear()
            return
        retention = self.retention
        for rid, (_entry, at) in list(self.trash.items()):
            if _history.trash_expired(at, now, retention):
                del self.trash[rid]
                self.history.pop(rid, None)
        for rid, history in list(self.history.items()):
            current = self.entries.get(rid) or self.trash[rid][0]
            kept = _history.kept_history(history, current.updated_at, now, retention)
            if not kept:
                del self.history[rid]
            elif len(kept) != len(history):
                self.history[rid] = list(kept)
        self.dead = 0
        self.gone.clear()

    # --- changing -------------------------------------------------------------------------

    def _add_key(self, key: tuple[int, str]) -> None:
        order = self.order
        if not order or order[len(order) - 1] < key:
            order.append(key)  # the common case: a new secret is the newest
            return
        i = order.bisect_left(key)
        if i < len(order) and order[i] == key:
            self.stale -= 1  # still there from a delete that is being undone
        else:
            order.insert(i, key)

    def _maybe_prune(self) -> None:
        if self.stale > 1024 and 2 * self.stale > len(self.order):
            self.order = Order([key for key in self.order if self.live(key)])
            self.stale = 0

    def put(self, entry: Entry, *, keep_order: bool = True) -> None:
        old = self.entries.get(entry.id)
        if old is None and entry.id in self.lazy:
            old = self._take_lazy(entry.id)
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
        self._index_name_of(entry.name, entry.id)

    def _index_name_of(self, name: str, record_id: str) -> None:
        held = self.names.get(name)
        if held is None:
            self.names[name] = record_id
        elif isinstance(held, str):
            if held != record_id:
                self.names[name] = {held, record_id}
        else:
            held.add(record_id)

    def _take_lazy(self, record_id: str) -> Entry:
        """Take a record out of ``lazy``, decoded and checked first (a refused one stays where it was)."""
        entry = self._decode_lazy(record_id, self.lazy[record_id])
        del self.lazy[record_id]
        self.decoded.pop(record_id, None)
        alias = self.lazy_aliases.pop(record_id, None)
        if alias is not None and self.aliases.get(alias) == record_id:
            del self.aliases[alias]  # the column's alias, which the check above found equal to the record's
        if not self.sorted:
            self.taken[record_id] = entry
        return entry

    def _take_live(self, record_id: str) -> Entry:
        entry = self._take_lazy(record_id) if record_id in self.lazy else self.entries.pop(record_id)
        self._unindex(entry, drop_order=True)
        self._maybe_prune()
        return entry

    def remove(self, record_id: str) -> Entry:
        entry = self._take_live(record_id)
        self.gone[record_id] = (entry.created_at, entry.id)
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

    def _to_history(self, old: Entry) -> None:
        history = self.history.setdefault(old.id, [])
        history.append(old)
        keep = self.retention.history
        if keep is not None and len(history) > keep:
            self.dead += 1  # one more revision than compaction keeps

    def _replace(self, entry: Entry, *, keep_order: bool) -> None:
        """PUT: the old revision (live, or in the trash: an undelete) becomes a past revision."""
        old = self.get(entry.id)
        if old is not None:
            self._to_history(old)
        else:
            held = self.trash.pop(entry.id, None)
            if held is not None:
                self._to_history(held[0])
        self.put(entry, keep_order=keep_order)

    def _trash(self, record_id: str, deleted_at: int) -> None:
        self.trash[record_id] = (self._take_live(record_id), deleted_at)
        self.dead += 1  # the op; the record itself is kept (as OP_TRASHED)

    def _purge(self, record_id: str) -> None:
        if self.has(record_id):
            entry = self.remove(record_id)
        else:
            entry = self.trash.pop(record_id)[0]
            self.gone[record_id] = (entry.created_at, entry.id)
        self.dead += 2 + len(self.history.pop(record_id, ()))

    def _set(self, key: str, value: Any) -> None:
        if value is None:
            self.settings.pop(key, None)
        else:
            self.settings[key] = value
        if key == _history.SETTING:
            self.retention = Retention.from_setting(value)

    def _state(self, record_id: str) -> tuple[Any, ...]:
        history = self.history.get(record_id)
        return (
            self.get(record_id),
            self.trash.get(record_id),
            None if history is None else list(history),
            self.gone.get(record_id),
        )

    def _restore(self, record_id: str, state: tuple[Any, ...]) -> None:
        live, trashed, history, gone = state
        if self.has(record_id):
            self._take_live(record_id)
        if trashed is None:
            self.trash.pop(record_id, None)
        else:
            self.trash[record_id] = trashed
        if history is None:
            self.history.pop(record_id, None)
        else:
            self.history[record_id] = history
        if live is not None:
            self.put(live)
        if gone is None:
            self.gone.pop(record_id, None)
        else:
            self.gone[record_id] = gone

    def apply(self, op: tuple[Any, ...]) -> Undo:
        """Apply one operation of an open transaction; returns how to undo it.

        The caller (the engine's ``Txn``) has checked the op against the reader's rules.
        """
        code = op[0]
        dead = self.dead
        if code == OP_SETTING:
            undo: Undo = ("set", op[1], self.settings.get(op[1], _MISSING), dead)
            self._set(op[1], op[2])
            return undo
        record_id = op[1].id if code == OP_PUT else op[1]
        undo = ("rec", record_id, self._state(record_id), dead)
        if code == OP_PUT:
            self._replace(op[1], keep_order=True)
        elif code == OP_DELETE:
            self._purge(record_id)
        elif code == OP_TRASH:
            self._trash(record_id, op[2])
        else:  # pragma: no cover - internal misuse
            raise ValueError(f"op {code} is not a transaction op")
        return undo

    def undo(self, steps: list[Undo]) -> None:
        """Take back the steps of a transaction that did not commit, newest first."""
        for kind, key, old, dead in reversed(steps):
            if kind == "set":
                self._set(key, None if old is _MISSING else old)
            else:
                self._restore(key, old)
            self.dead = dead

    def apply_logged(self, ops: list[Any], *, bulk: bool, version: int = _format.VERSION) -> None:
        """Replay one committed frame, checking it is consistent with what came before.

        ``version`` is the file's format version: a file holds no op of a later version.
        """
        entries, trash, history, lazy = self.entries, self.trash, self.history, self.lazy
        older = version < _format.VERSION
        for op in ops:
            if type(op) is not list or not op:
                raise corrupt("malformed operation")
            code = op[0]
            # The code is hostile bytes too: an unhashable one must be corruption, not a TypeError.
            if type(code) is not int:
                raise corrupt("malformed operation")
            if older and version < _format.OP_SINCE.get(code, 1):
                raise corrupt("unknown operation")
            if code == OP_CHECKPOINT:
                self._checkpoint(_format.decode_checkpoint(op), bulk=bulk)
            elif code == OP_PUT and len(op) == 2:
                entry = _format.decode_entry(op[1])
                old = entries.get(entry.id)
                if old is None and lazy and entry.id in lazy:
                    old = self.get(entry.id)
                if old is None and trash and entry.id in trash:
                    old = trash[entry.id][0]
                if old is not None:
                    if entry.rev != old.rev + 1:
                        raise corrupt(f"secret {entry.id} has a revision out of sequence")
                elif history:  # (tested first: opening a file without history skips the call)
                    self._check_follows(entry)
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
                    self._replace(entry, keep_order=not bulk)
            elif code == OP_DELETE and len(op) == 2:
                if type(op[1]) is not str or (op[1] not in entries and op[1] not in lazy and op[1] not in self.trash):
                    raise corrupt("delete of an unknown secret")
                self._purge(op[1])
            elif code == OP_SETTING and len(op) == 3 and type(op[1]) is str:
                if op[1] in self.settings:
                    self.dead += 1
                self._set(op[1], op[2])
            elif code == OP_TRASH and len(op) == 3:
                if type(op[1]) is not str or (op[1] not in entries and op[1] not in lazy):
                    raise corrupt("trash of an unknown secret")
                self._trash(op[1], _format.decode_time(op[2]))
            elif code in (OP_REVISION, OP_TRASHED) and len(op) == (2 if code == OP_REVISION else 3):
                entry = _format.decode_entry(op[1])
                if entry.id in entries or entry.id in lazy or entry.id in self.trash:
                    raise corrupt(f"secret {entry.id} has a revision out of sequence")
                self._check_follows(entry)
                if code == OP_REVISION:
                    self.history.setdefault(entry.id, []).append(entry)
                else:
                    self.trash[entry.id] = (entry, _format.decode_time(op[2]))
                    if self.gone:
                        self.gone.pop(entry.id, None)
            else:
                raise corrupt("unknown operation")
        if len(self) > _format.MAX_RECORDS:
            raise corrupt("too many secrets")

    def _checkpoint(self, cp: Checkpoint, *, bulk: bool) -> None:
        """Index a checkpoint op's records without decoding them (whole-column work, done in C).

        Each id must be new (not live, trashed or with past revisions) and each alias free.
        """
        ids = cp.ids
        n = len(ids)
        if len(self) + n > _format.MAX_RECORDS:
            raise corrupt("too many secrets")  # before indexing any of it (each id must be new: exact)
        lazy = self.lazy
        before = len(lazy)
        lazy.update(zip(ids, cp.records, strict=True))
        if len(lazy) != before + n:
            raise corrupt("a checkpoint holds an id twice, or one already in a checkpoint")
        for other in (self.entries, self.trash, self.history):
            # ``lazy`` was disjoint from these before; after the update, check from the smaller side.
            if other and (any(map(lazy.__contains__, other)) if len(other) < n else not other.keys().isdisjoint(ids)):
                raise corrupt("a checkpoint record is not new")
        aliases = self.aliases
        held = len(aliases)
        named = [(a, rid) for a, rid in zip(cp.aliases, ids, strict=True) if a is not None]
        aliases.update(named)
        if len(aliases) != held + len(named):
            raise corrupt("two secrets share an alias")
        self.lazy_aliases.update((rid, a) for a, rid in named)
        if self.gone:
            for rid in ids:
                self.gone.pop(rid, None)
        if bulk:
            # The name map and the order are built once, by resort(): one pass over every column
            # instead of a lookup per record into a map that grows to a million names.
            # createdAt as an array now: the chunk's int objects (32 bytes each) are freed with it.
            self.lazy_keys.append((array("q", cp.created), ids, cp.names))
            self.sorted = False
        else:
            self.name_map()  # the pending columns first: none of them may name a re-used id
            for name, rid in zip(cp.names, ids, strict=True):
                self._index_name_of(name, rid)
            if self.stale:
                # A stale key left by an id deleted earlier (a checkpoint may take such an id, as a PUT
                # may) would read as this record's row: packed records have exactly one key. Only a
                # catch-up read gets here (compaction writes checkpoints into a new file), so rarely.
                taken = set(ids)
                kept = [key for key in self.order if key[1] not in taken]
                self.stale -= len(self.order) - len(kept)
                self.order = Order(kept)
            for key in zip(cp.created, ids, strict=True):
                self._add_key(key)

    def _check_follows(self, entry: Entry) -> None:
        """A record that is neither live nor trashed continues its past revisions, if it has any."""
        history = self.history.get(entry.id)
        if history and entry.rev != history[-1].rev + 1:
            raise corrupt(f"secret {entry.id} has a revision out of sequence")

    def resort(self) -> None:
        """After a bulk load: the list order and the name map, from decoded records and the checkpoints' columns."""
        columns, self.lazy_keys = self.lazy_keys, []
        eager = sorted((e.created_at, e.id) for e in self.entries.values())
        created = array("q")
        ids: list[str] = []
        names: list[str] = []
        for times, column_ids, column_names in columns:
            created.extend(times)
            ids.extend(column_ids)
            names.extend(column_names)
        lazy = self.lazy
        taken, self.taken = self.taken, {}
        if len(ids) != len(lazy):
            # Some checkpoint records were replaced, trashed or deleted later in the log: drop their keys.
            # An id may be in several checkpoints (deleted, then taken again by a later one, §15.2): only its
            # last row can be its record's, so its earlier rows are dropped too (an id twice in the order
            # lists twice, and compaction would write it twice: a file its reader refuses).
            # A record taken out of ``lazy`` was decoded before the columns were merged: its createdAt is
            # checked against its (last) row here. Its name is not: a replaced record is never found by that
            # name (§15.2), and refusing the whole file over it would make one record's fault the vault's.
            keep = []
            last: dict[str, int] = {}  # a taken id -> its last row
            for i, rid in enumerate(ids):
                if rid in lazy:
                    keep.append(i)
                elif rid in taken:
                    last[rid] = i
            for rid, i in last.items():
                if taken[rid].created_at != created[i]:
                    raise corrupt(f"secret {rid[:64]} (replaced or removed) differs from its checkpoint row")
            if len(keep) != len(lazy):
                # An id kept twice: only its last row stays (one dict from the kept ids, in C).
                rows = dict(zip([ids[i] for i in keep], keep, strict=True))
                keep = sorted(rows.values())
            created = array("q", [created[i] for i in keep])
            ids = [ids[i] for i in keep]
            names = [names[i] for i in keep]
        if names:
            # A copy of the ids: the list itself may become the order's, which later writes change.
            self.names_pending.append((names, list(ids)))
        ascending = all(map(operator.lt, zip(created, ids, strict=True), zip(created[1:], ids[1:], strict=True)))
        if ascending:
            # The usual open of a compacted file: the checkpoint's own order, no tuple per secret; the
            # few decoded records (with history, in the trash, or from the tail) are merged in by slices.
            order = Order()
            order.created, order.ids = created, ids
            if eager:
                at = [order.bisect_left(key) for key in eager]
                merged = Order()
                start = 0
                for pos, key in zip(at, eager, strict=True):
                    merged.created.extend(created[start:pos])
                    merged.ids.extend(ids[start:pos])
                    merged.append(key)
                    start = pos
                merged.created.extend(created[start:])
                merged.ids.extend(ids[start:])
                order = merged
        else:
            order = Order(sorted([*eager, *zip(created, ids, strict=True)]))
        self.order = order
        self.stale = 0
        self.sorted = True
