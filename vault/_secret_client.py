"""``vault.secret``: ChatBotKit's SecretClient calls (create, fetch, list, update, delete) on a vault,
plus what the cloud does not have: past revisions (``history``, ``fetch(revision=)``, ``restore``)
and the trash (``list(deleted=True)``, ``undelete``, ``purge``).

The request rules are ``_rules``'; storage, locking and durability the engine's. This
module only puts them together, through the engine's seam (``reading``, ``transaction``).
A secret in the trash is, to every cloud-shaped call, a deleted secret: ``fetch``, ``update``
and ``list`` do not see it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Final

from . import _rules
from ._engine import Engine
from ._format import Entry
from ._history import trash_expired
from ._index import Index
from ._records import Page, Secret, secret_from_entry
from .errors import InvalidRequestError, NotFoundError

__all__ = ["SecretClient"]

_LIST_KEYS: Final = frozenset({"order", "take", "cursor", "meta"})


class SecretClient:
    """``vault.secret``: the ChatBotKit SecretClient's calls, served from the local vault."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<SecretClient of {str(self._engine.path)!r}>"

    def create(self, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        """Create a secret from the cloud's fields; missing fields take the cloud's defaults."""
        checked = _rules.check_fields(_rules.normalize_fields(request, fields))
        _rules.check_meta_keys(checked.get("meta"))
        if checked.get("value") is None:
            checked.pop("value", None)  # value_rev stays 0: the record never held a value
        with self._engine.transaction() as txn:
            entry = _rules.apply_fields(
                _rules.new_entry(txn.new_id(), txn.now()), checked, txn.index, txn.seal, merge=False
            )
            txn.put(entry)
        # The value the caller just gave is handed back (not decrypted: it never left this call), so
        # ``create(...).value`` says what was stored rather than reading None.
        return secret_from_entry(entry, checked.get("value"))

    def fetch(self, secret_id: str, *, revision: int | None = None) -> Secret:
        """The secret with its decrypted ``value``; ``secret_id`` is an id, ``@alias`` or ``(name)``.

        ``revision`` picks a past revision (see :meth:`history`); the current one by default.
        """
        with self._engine.reading() as index:
            entry = index.resolve(secret_id)
            if revision is not None:
                entry = _revision(index, entry, revision, self._engine.clock())
            return secret_from_entry(entry, self._engine.open_value(entry, operation="fetch"))

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
        """One page, sorted by createdAt then id. Values are never decrypted here.

        ``deleted=True`` lists the trash instead (each item with its ``deleted_at``).
        """
        if request is not None:
            if not isinstance(request, Mapping):
                raise InvalidRequestError("request must be a mapping")
            unknown = set(request) - _LIST_KEYS
            if unknown:
                raise InvalidRequestError(f"unknown list parameter {sorted(unknown)[0]!r}")
            order = request.get("order", order)
            take = request.get("take", take)
            cursor = request.get("cursor", cursor)
            meta = request.get("meta", meta)
        if cursor is not None and type(cursor) is not str:
            raise InvalidRequestError("cursor must be a string")
        count = _rules.take_count(take)
        keep = _rules.meta_filter(meta)
        if deleted not in (True, False):
            raise InvalidRequestError("deleted must be a bool")
        if deleted:
            ascending = _rules.order_ascending(order)
            with self._engine.reading() as index:
                now = self._engine.clock()
                rows = index.trash_page(ascending=ascending, cursor=cursor or None, count=count, now=now)
                trashed = [secret_from_entry(e, deleted_at=at) for e, at in rows if keep is None or keep(e)]
            return Page(items=trashed, cursor=trashed[-1].id if trashed else None)
        with self._engine.reading() as index:
            entries = index.page(
                ascending=_rules.order_ascending(order), cursor=cursor or None, count=count, keep=keep
            )
            items = [secret_from_entry(e) for e in entries]
        return Page(items=items, cursor=items[-1].id if items else None)

    def update(self, secret_id: str, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        """Change the given fields; others stay. ``meta={"$update": {...}}`` merges; config replaces."""
        checked = _rules.check_fields(_rules.normalize_fields(request, fields))
        _rules.check_meta_keys(checked.get("meta"))
        with self._engine.transaction() as txn:
            old = txn.index.resolve(secret_id)
            new = _rules.apply_fields(old, checked, txn.index, txn.seal, merge=True)
            new.updated_at = txn.now()
            txn.put(new)
        return secret_from_entry(new)

    def delete(self, secret_id: str, *, purge: bool = False) -> Secret:
        """Delete the secret; returns what it was (without its value).

        It goes to the trash, recoverable with :meth:`undelete` until the trash's retention
        (``Vault.retention()``) runs out; ``purge=True`` deletes it and its past revisions for good.
        """
        if purge not in (True, False):
            raise InvalidRequestError("purge must be a bool")
        with self._engine.transaction() as txn:
            entry = txn.index.resolve(secret_id)
            if purge or not txn.keeps_trash:
                txn.delete(entry.id)
            else:
                txn.trash(entry.id)
        return secret_from_entry(entry)

    # --- past revisions and the trash (not in the cloud's API) ----------------------------------

    def history(self, secret_id: str) -> builtins.list[Secret]:
        """Every revision the vault keeps of a secret, newest (the current one) first, without values.

        ``secret_id`` names a live secret (id, ``@alias``, ``(name)``) or, by its exact id, one in
        the trash. Each item's ``revision`` can be passed to :meth:`fetch` and :meth:`restore`.
        """
        with self._engine.reading() as index:
            now = self._engine.clock()
            entry, deleted_at = _live_or_trashed(index, secret_id, now)
            past = index.past(entry.id, now)
            out = [secret_from_entry(entry, deleted_at=deleted_at)]
            out.extend(secret_from_entry(e) for e in reversed(past))
        return out

    def restore(self, secret_id: str, revision: int) -> Secret:
        """Make a past revision current again, as a new revision (its fields and value).

        The record keeps its id, creation time and sync link. A restored alias must be free.
        """
        with self._engine.transaction() as txn:
            current = txn.index.resolve(secret_id)
            source = _revision(txn.index, current, revision, txn.now())
            if source is current:
                raise InvalidRequestError(f"revision {revision} is the current revision of secret {current.id}")
            new = source.copy()
            new.rev = current.rev + 1
            new.created_at = current.created_at
            new.updated_at = txn.now()
            if new.alias != current.alias:
                _rules.check_alias_free(txn.index, new.alias, new.id)
            # The sync link is the record's, not the revision's; the value-type marker goes with the value.
            new.ext = _rules.with_ext(source, current.ext)
            txn.put(new)
        return secret_from_entry(new)

    def undelete(self, secret_id: str) -> Secret:
        """Take a secret out of the trash (by its exact id), as a new revision.

        Its alias comes back with it unless another secret took the alias meanwhile; then
        it comes back without one.
        """
        with self._engine.transaction() as txn:
            held = _trashed(txn.index, secret_id, txn.now())
            new = held.copy()
            new.rev = held.rev + 1
            new.updated_at = max(txn.now(), held.updated_at)
            if new.alias is not None and new.alias in txn.index.aliases:
                new.alias = None
            txn.put(new)
        return secret_from_entry(new)

    def purge(self, secret_id: str) -> Secret:
        """Delete for good a secret in the trash (exact id) or a live one, with every past revision."""
        with self._engine.transaction() as txn:
            held = txn.index.trashed(secret_id) if isinstance(secret_id, str) else None
            entry = held[0] if held is not None else txn.index.resolve(secret_id)
            # (A trashed secret past its retention is still purged here: it is on its way out anyway.)
            txn.delete(entry.id)
        return secret_from_entry(entry, deleted_at=held[1] if held is not None else None)


def _revision(index: Index, current: Entry, revision: object, now: int) -> Entry:
    """Revision ``revision`` of a record: the current one, or a past one the retention keeps."""
    if type(revision) is not int:
        raise InvalidRequestError("revision must be an integer")
    if revision == current.rev:
        return current
    for past in index.past(current.id, now):
        if past.rev == revision:
            return past
    raise NotFoundError(f"secret {current.id} has no revision {revision} (see its history)")


def _trashed(index: Index, secret_id: object, now: int) -> Entry:
    if type(secret_id) is not str or not secret_id:
        raise InvalidRequestError("secret id must be a non-empty string")
    held = index.trashed(secret_id)
    if held is None or _expired(index, held[1], now):
        shown = secret_id if len(secret_id) <= 140 else secret_id[:137] + "..."
        raise NotFoundError(f"no secret {shown!r} in the trash")
    return held[0]


def _expired(index: Index, deleted_at: int, now: int) -> bool:
    return trash_expired(deleted_at, now, index.retention)


def _live_or_trashed(index: Index, secret_id: str, now: int) -> tuple[Entry, int | None]:
    if isinstance(secret_id, str) and index.trashed(secret_id) is not None:
        entry = _trashed(index, secret_id, now)
        return entry, index.trash[entry.id][1]
    return index.resolve(secret_id), None
