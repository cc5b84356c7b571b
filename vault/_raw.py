"""Records as stored, for the parts of cbk-vault that are not the cloud's API: sync, import, the CLI.

They need what ``v.secret`` deliberately hides: exact ids and timestamps, the extension map
(sync's links), vault settings, metadata without decrypting a value. Every write still goes
through ``_rules`` field validation and the engine's one transaction path, so nothing that
enters here can break the file. Get one with ``vault._vault.raw_records(v)``.

Like the cloud-shaped API, the seam sees only live records: a secret in the trash and past
revisions are invisible here (``all``, ``lookup``, ``fetch`` and ``fetch_for_use`` answer as
if it were deleted), so the stand-in, sync and import treat a trashed secret as deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from . import _rules
from ._engine import Engine
from ._records import Secret, secret_from_entry
from .errors import InvalidRequestError, NotFoundError

__all__ = ["RawRecords"]


class RawRecords:
    """Direct record access over an engine: the internal seam under sync, import and the CLI."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def all(self) -> list[tuple[Secret, dict[str, Any], bool]]:
        """Every secret's metadata (no value), its extension map, and whether it holds a value."""
        with self._engine.reading() as index:
            return [
                (secret_from_entry(e), _rules.json_copy(e.ext), e.value_box is not None) for e in index.iter_live()
            ]

    def value_tags(self) -> dict[str, str]:
        """For every live record that holds a value: a digest of its sealed value box.

        Equal tags mean the very same sealed bytes, so the very same value: sync keeps the tag
        beside a value's fingerprint and decrypts only values whose box changed since. A value
        is sealed anew (fresh nonce) whenever it changes, so a new value never keeps a tag. The
        digest is of ciphertext and tells nothing of the value; nothing is decrypted or logged.
        """
        with self._engine.reading() as index:
            return {
                e.id: hashlib.blake2b(e.value_box, digest_size=16).hexdigest()
                for e in index.iter_live()
                if e.value_box is not None
            }

    def lookup(self, identifier: str) -> Secret:
        """Like ``secret.fetch`` but without decrypting the value."""
        with self._engine.reading() as index:
            return secret_from_entry(index.resolve(identifier))

    def fetch(self, record_id: str) -> tuple[Secret, dict[str, Any]]:
        """The secret by exact id, with its decrypted value and its extension map."""
        with self._engine.reading() as index:
            entry = index.get(record_id)
            if entry is None:
                raise NotFoundError(f"secret {record_id!r} not found")
            return secret_from_entry(entry, self._engine.open_value(entry, operation="fetch")), _rules.json_copy(
                entry.ext
            )

    def fetch_tagged(self, record_id: str) -> tuple[Secret, dict[str, Any], str | None]:
        """Like ``fetch``, plus the tag (``value_tags``) of the very box the value was opened from.

        Read under one lock: a tag read apart from the value (before a write by another handle,
        the value after it) would pair one box's tag with another box's value, and sync would
        then trust that stale pairing for as long as the box keeps the tag.
        """
        with self._engine.reading() as index:
            entry = index.get(record_id)
            if entry is None:
                raise NotFoundError(f"secret {record_id!r} not found")
            box = entry.value_box
            tag = None if box is None else hashlib.blake2b(box, digest_size=16).hexdigest()
            value = self._engine.open_value(entry, operation="fetch")
            return secret_from_entry(entry, value), _rules.json_copy(entry.ext), tag

    def fetch_for_use(self, identifier: str) -> Secret:
        """The secret as the cloud's use-time routes (verify, revoke, mint) see it.

        Its value is left out when it was written as another type: a type change never
        turns a stored value into a token.
        """
        with self._engine.reading() as index:
            entry = index.resolve(identifier)
            value = self._engine.open_value(entry, operation="use") if _rules.value_usable(entry) else None
            return secret_from_entry(entry, value)

    def put(
        self,
        record_id: str | None,
        fields: Mapping[str, Any],
        *,
        created_at: int | None = None,
        updated_at: int | None = None,
        ext: Mapping[str, Any] | None = None,
    ) -> Secret:
        """Create or overwrite a record with an exact id (None: a new one) and timestamps.

        ``fields`` are snake_case; those left out keep their stored (or default) value,
        and ``value`` is only touched when given. ``ext`` replaces the extension map when given.
        """
        if record_id is not None:
            _rules.check_record_id(record_id)
        if not isinstance(fields, Mapping):
            raise InvalidRequestError("fields must be a mapping")
        checked = _rules.check_fields(_rules.normalize_fields(None, fields))
        ext_map = None if ext is None else _rules.check_field("meta", ext)
        with self._engine.transaction() as txn:
            rid = txn.new_id() if record_id is None else record_id
            held = txn.index.trashed(rid)
            # An id in the trash comes back as the next revision of the trashed record (undelete).
            old = txn.index.get(rid) or (held[0] if held is not None else _rules.new_entry(rid, txn.now()))
            new = _rules.apply_fields(old, checked, txn.index, txn.seal, merge=False)
            if created_at is not None:
                new.created_at = created_at
            if updated_at is not None:
                new.updated_at = updated_at
            if ext_map is not None:
                new.ext = _rules.with_ext(new, ext_map)
            txn.put(new)
        return secret_from_entry(new)

    def delete(self, record_id: str, *, purge: bool = False) -> None:
        """Delete a live record: to the trash (like ``v.secret.delete``), or for good with ``purge``."""
        with self._engine.transaction() as txn:
            if not txn.index.has(record_id):
                raise NotFoundError(f"secret {record_id!r} not found")
            if purge or not txn.keeps_trash:
                txn.delete(record_id)
            else:
                txn.trash(record_id)

    def setting(self, key: str, default: Any = None) -> Any:
        """A vault setting (sync's configuration and link index), as a copy."""
        with self._engine.reading() as index:
            return _rules.json_copy(index.settings.get(key, default))

    def set_setting(self, key: str, value: Any) -> None:
        """Set (or, with None, remove) a vault setting, as one commit."""
        with self._engine.transaction() as txn:
            txn.set_setting(key, value)
