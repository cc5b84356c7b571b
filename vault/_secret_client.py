"""``vault.secret``: ChatBotKit's SecretClient calls (create, fetch, list, update, delete) on a vault.

The request rules are ``_rules``'; storage, locking and durability the engine's. This
module only puts them together, through the engine's seam (``reading``, ``transaction``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from . import _rules
from ._engine import Engine
from ._records import Page, Secret, secret_from_entry
from .errors import InvalidRequestError

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
        return secret_from_entry(entry)

    def fetch(self, secret_id: str) -> Secret:
        """The secret with its decrypted ``value``; ``secret_id`` is an id, ``@alias`` or ``(name)``."""
        with self._engine.reading() as index:
            entry = index.resolve(secret_id)
            return secret_from_entry(entry, self._engine.open_value(entry))

    def list(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        order: str = "desc",
        take: int | str | None = 100,
        cursor: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Page:
        """One page, sorted by createdAt then id. Values are never decrypted here."""
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

    def delete(self, secret_id: str) -> Secret:
        """Delete the secret; returns what it was (without its value)."""
        with self._engine.transaction() as txn:
            entry = txn.index.resolve(secret_id)
            txn.delete(entry.id)
        return secret_from_entry(entry)
