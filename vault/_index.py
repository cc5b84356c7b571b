"""The in-memory index of a vault: records by id, alias and name, the list order, settings.

It is the replay of the verified log and nothing else: the engine applies each committed
frame with :meth:`Index.apply_logged`, and each operation of an open transaction with
:meth:`Index.apply`, which returns what :meth:`Index.undo` needs to take it back. Lookups
(:meth:`Index.resolve`) and paging (:meth:`Index.page`) read it. No I/O, no keys.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any, Final

from . import _format
from ._format import OP_DELETE, OP_PUT, OP_SETTING, Entry, corrupt
from .errors import InvalidRequestError, NotFoundError

__all__ = ["Index", "Undo"]

_MISSING: Final = object()

#: One undone step: ("put", record id, the entry before or None) or ("set", key, the value before or _MISSING).
Undo = tuple[str, str, Any]


class Index:
    """Entries by id, the alias and name maps, the ``(createdAt, id)`` sort keys, vault settings."""

    __slots__ = ("aliases", "dead", "entries", "gone", "names", "order", "settings", "stale")

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
        """Whether an id is live, or was deleted since the last compaction (and so still in the log)."""
        return record_id in self.entries or record_id in self.gone

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

    def apply(self, op: tuple[Any, ...]) -> Undo:
        """Apply one operation of an open transaction; returns how to undo it."""
        if op[0] == OP_PUT:
            entry: Entry = op[1]
            undo: Undo = ("put", entry.id, self.entries.get(entry.id))
            self.put(entry)
        elif op[0] == OP_DELETE:
            undo = ("put", op[1], self.entries[op[1]])
            self.remove(op[1])
        else:
            undo = ("set", op[1], self.settings.get(op[1], _MISSING))
            if op[2] is None:
                self.settings.pop(op[1], None)
            else:
                self.settings[op[1]] = op[2]
        return undo

    def undo(self, steps: list[Undo]) -> None:
        """Take back the steps of a transaction that did not commit, newest first."""
        for kind, key, old in reversed(steps):
            if kind == "set":
                if old is _MISSING:
                    self.settings.pop(key, None)
                else:
                    self.settings[key] = old
            elif old is None:
                self.remove(key)
                self.gone.pop(key, None)
            else:
                self.put(old)

    @staticmethod
    def superseded(steps: list[Undo], ops: list[tuple[Any, ...]]) -> int:
        """Ops in the log that committed ``ops`` make obsolete: compaction's trigger.

        A replaced record, a deleted record plus its delete op, an overwritten setting.
        """
        dead = 0
        for (kind, _, old), op in zip(steps, ops, strict=True):
            if kind == "put":
                dead += (old is not None) + (op[0] == OP_DELETE)
            elif old is not _MISSING:
                dead += 1
        return dead

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
