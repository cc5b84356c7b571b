"""The in-memory index of a vault: records by id, alias and name, the list order, settings,
past revisions and the trash.

It is the replay of the verified log and nothing else: the engine applies each committed
frame with :meth:`Index.apply_logged`, and each operation of an open transaction with
:meth:`Index.apply`, which returns what :meth:`Index.undo` needs to take it back. Lookups
(:meth:`Index.resolve`) and paging (:meth:`Index.page`) read it. No I/O, no keys.

Past revisions: a PUT that replaces a record (live or in the trash) moves the old revision to
``history``; compacted files carry them as OP_REVISION. The trash: OP_TRASH moves a live record
to ``trash`` (its alias and name are released); a PUT of the next revision takes it back out
(undelete); OP_DELETE purges a record, live or trashed, with its history.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator
from typing import Any, Final

from . import _format, _history
from ._format import OP_DELETE, OP_PUT, OP_REVISION, OP_SETTING, OP_TRASH, OP_TRASHED, Entry, corrupt
from ._history import Retention
from .errors import InvalidRequestError, NotFoundError

__all__ = ["Index", "Undo"]

_MISSING: Final = object()

#: One undone step: ("rec", record id, its state before, dead before) or ("set", key, the value before
#: or _MISSING, dead before). A record's state is (live entry, (trashed entry, deletedAt), history, gone key).
Undo = tuple[str, str, Any, int]

class Index:
    """Entries by id, the alias and name maps, the ``(createdAt, id)`` sort keys, vault settings."""

    __slots__ = (
        "aliases",
        "dead",
        "entries",
        "gone",
        "history",
        "names",
        "order",
        "retention",
        "settings",
        "stale",
        "trash",
    )

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.order: list[tuple[int, str]] = []  # (createdAt, id), ascending: the cloud's sort
        self.aliases: dict[str, str] = {}
        # name -> the id holding it, or a set of ids when several share it. Names are nearly
        # always unique, and a one-element set per secret would cost ~240 bytes each.
        self.names: dict[str, str | set[str]] = {}
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
        return len(self.entries)

    # --- reading ------------------------------------------------------------------------

    def live(self, key: tuple[int, str]) -> bool:
        entry = self.entries.get(key[1])
        return entry is not None and entry.created_at == key[0]

    def iter_live(self) -> Iterator[Entry]:
        """Every record, oldest first (the cloud's ascending order)."""
        entries = self.entries
        for created, rid in self.order:
            entry = entries.get(rid)
            if entry is not None and entry.created_at == created:
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
            entry = self.entries.get(rid) if rid is not None else None
        elif len(identifier) >= 2 and identifier[0] == "(" and identifier[-1] == ")":
            held = self.names.get(identifier[1:-1])
            ids = (held,) if isinstance(held, str) else held
            if ids:
                entry = self.entries[min(ids, key=lambda i: (self.entries[i].created_at, i))]
        else:
            entry = self.entries.get(identifier)
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
            entry = self.entries.get(cursor)
            if entry is None and cursor in self.trash:
                entry = self.trash[cursor][0]
            pos = (entry.created_at, entry.id) if entry is not None else self.gone.get(cursor)
            if pos is None:
                return []
            start = bisect.bisect_right(keys, pos) if ascending else bisect.bisect_left(keys, pos) - 1
        items: list[Entry] = []
        step = 1 if ascending else -1
        i = start
        entries = self.entries
        while 0 <= i < len(keys) and len(items) < count:
            created, rid = keys[i]
            i += step
            found = entries.get(rid)
            if found is None or found.created_at != created:
                continue  # a stale key: its row was deleted or re-dated
            if keep is None or keep(found):
                items.append(found)
        return items

    def id_taken(self, record_id: str) -> bool:
        """Whether an id is live, in the trash, or was deleted since the last compaction (still in the log)."""
        return (
            record_id in self.entries or record_id in self.gone or record_id in self.trash or record_id in self.history
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
        """
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

    def _take_live(self, record_id: str) -> Entry:
        entry = self.entries.pop(record_id)
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
        old = self.entries.get(entry.id)
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
        if record_id in self.entries:
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
            self.entries.get(record_id),
            self.trash.get(record_id),
            None if history is None else list(history),
            self.gone.get(record_id),
        )

    def _restore(self, record_id: str, state: tuple[Any, ...]) -> None:
        live, trashed, history, gone = state
        if record_id in self.entries:
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

        ``version`` is the file's format version: a version-1 file holds no version-2 op.
        """
        entries, trash, history = self.entries, self.trash, self.history
        v1 = version < 2
        for op in ops:
            if type(op) is not list or not op:
                raise corrupt("malformed operation")
            code = op[0]
            # The code is hostile bytes too: an unhashable one must be corruption, not a TypeError.
            if type(code) is not int:
                raise corrupt("malformed operation")
            if v1 and code in _format.V2_OPS:
                raise corrupt("unknown operation")
            if code == OP_PUT and len(op) == 2:
                entry = _format.decode_entry(op[1])
                old = entries.get(entry.id)
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
                if type(op[1]) is not str or (op[1] not in entries and op[1] not in self.trash):
                    raise corrupt("delete of an unknown secret")
                self._purge(op[1])
            elif code == OP_SETTING and len(op) == 3 and type(op[1]) is str:
                if op[1] in self.settings:
                    self.dead += 1
                self._set(op[1], op[2])
            elif code == OP_TRASH and len(op) == 3:
                if type(op[1]) is not str or op[1] not in entries:
                    raise corrupt("trash of an unknown secret")
                self._trash(op[1], _format.decode_time(op[2]))
            elif code in (OP_REVISION, OP_TRASHED) and len(op) == (2 if code == OP_REVISION else 3):
                entry = _format.decode_entry(op[1])
                if entry.id in entries or entry.id in self.trash:
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
        if len(self.entries) > _format.MAX_RECORDS:
            raise corrupt("too many secrets")

    def _check_follows(self, entry: Entry) -> None:
        """A record that is neither live nor trashed continues its past revisions, if it has any."""
        history = self.history.get(entry.id)
        if history and entry.rev != history[-1].rev + 1:
            raise corrupt(f"secret {entry.id} has a revision out of sequence")

    def resort(self) -> None:
        self.order = sorted((e.created_at, e.id) for e in self.entries.values())
        self.stale = 0
