"""``vault.secret``: ChatBotKit's SecretClient calls (create, fetch, list, update, delete) on a Vault.

The cloud's request rules live here: field defaults and validation (through ``_records``),
identifiers, list paging and take clamping, meta filters, ``$update`` merges and the masked
``clientSecret`` round trip. Storage, locking and durability are the Vault's (``_vault``).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from . import _format, _records
from ._format import OP_DELETE, OP_PUT, Entry
from ._records import Page, Secret
from .errors import ConflictError, InvalidRequestError

if TYPE_CHECKING:
    from ._vault import Vault

__all__ = ["SecretClient"]


def _take(value: object) -> int:
    """The cloud's take rule: 0, missing or not a number gives 100; negative gives 1; max 100."""
    number: int | None = None
    if type(value) is int:
        number = value
    elif type(value) is float and value == value and abs(value) != float("inf"):
        number = int(value)
    elif type(value) is str:
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if not number:
        return 100
    return max(1, min(100, number))


def _filter_value(want: object) -> object:
    if isinstance(want, bool):
        return want
    text = str(want)
    return {"true": True, "false": False}.get(text, text)


def _meta_matches(meta: dict[str, Any] | None, wanted: list[tuple[list[str], object]]) -> bool:
    for path, want in wanted:
        current: Any = meta
        for part in path:
            if type(current) is not dict or part not in current:
                return False
            current = current[part]
        if isinstance(want, bool):
            if current is not want:
                return False
        elif isinstance(current, (bool, dict, list)) or current is None or str(current) != want:
            return False
    return True


_LIST_KEYS: Final = frozenset({"order", "take", "cursor", "meta"})


class SecretClient:
    """``vault.secret``: the ChatBotKit SecretClient's calls, served from the local vault."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def __repr__(self) -> str:
        return f"<SecretClient of {self._vault!r}>"

    def create(self, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        """Create a secret from the cloud's fields; missing fields take the cloud's defaults."""
        given = _records.normalize_fields(request, fields)
        data = dict(_records.DEFAULTS)
        for key, value in given.items():
            data[key] = _records.check_field(key, value)
        _records.meta_keys_for_create(data["meta"])
        v = self._vault

        def build() -> Secret:
            state = v._state
            alias = data["alias"]
            if alias is not None and alias in state.aliases:
                raise ConflictError(f"alias {alias!r} is already in use")
            rid = v._new_record_id()
            now = v._clock()
            value = data["value"]
            box = None if value is None else v._seal_value(rid, 1, value)
            entry = Entry(
                rid,
                1,
                now,
                now,
                data["name"],
                data["description"],
                data["kind"],
                data["type"],
                data["visibility"],
                alias,
                data["meta"],
                data["config"],
                data["blueprint_id"],
                0 if value is None else 1,
                box,
                _format.NO_EXT,
            )
            v._apply((OP_PUT, entry))
            return Secret._from_entry(entry)

        return v._mutate(build)

    def fetch(self, secret_id: str) -> Secret:
        """The secret with its decrypted ``value``; ``secret_id`` is an id, ``@alias`` or ``(name)``."""
        v = self._vault
        with v._mutex:
            v._ready()
            entry = v._resolve(secret_id)
            return Secret._from_entry(entry, v._open_value(entry))

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
        count = _take(take)
        ascending = order == "asc"  # like the cloud, anything else means desc
        if cursor is not None and type(cursor) is not str:
            raise InvalidRequestError("cursor must be a string")
        wanted: list[tuple[list[str], object]] = []
        if meta is not None:
            if not isinstance(meta, Mapping):
                raise InvalidRequestError("meta filter must be a mapping")
            for key, want in meta.items():
                if type(key) is not str or not key:
                    raise InvalidRequestError("meta filter keys must be non-empty strings")
                wanted.append((key.split("."), _filter_value(want)))
        v = self._vault
        with v._mutex:
            v._ready()
            state = v._state
            keys = state.order
            if cursor is None or cursor == "":
                start = 0 if ascending else len(keys) - 1
            else:
                entry = state.entries.get(cursor)
                pos = (entry.created_at, entry.id) if entry is not None else state.gone.get(cursor)
                if pos is None:
                    return Page(items=[], cursor=None)  # an unknown cursor matches no row
                start = bisect.bisect_right(keys, pos) if ascending else bisect.bisect_left(keys, pos) - 1
            items: list[Secret] = []
            step = 1 if ascending else -1
            i = start
            entries = state.entries
            while 0 <= i < len(keys) and len(items) < count:
                created, rid = keys[i]
                i += step
                found = entries.get(rid)
                if found is None or found.created_at != created:
                    continue  # a stale key: its row was deleted or re-dated
                if not wanted or _meta_matches(found.meta, wanted):
                    items.append(Secret._from_entry(found))
        return Page(items=items, cursor=items[-1].id if items else None)

    def update(self, secret_id: str, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        """Change the given fields; others stay. ``meta={"$update": {...}}`` merges; config replaces."""
        given = _records.normalize_fields(request, fields)
        checked = {key: _records.check_field(key, value) for key, value in given.items()}
        v = self._vault

        def build() -> Secret:
            old = v._resolve(secret_id)
            new = old.copy()
            new.rev = old.rev + 1
            new.updated_at = v._clock()
            for key, value in checked.items():
                if key == "meta":
                    value = _merge_meta(old.meta, value)
                elif key == "config":
                    value = _unmask_config(old.config, value)
                elif key == "alias" and value is not None and value != old.alias:
                    if value in v._state.aliases:
                        raise ConflictError(f"alias {value!r} is already in use")
                elif key == "value":
                    new.value_rev = new.rev
                    new.value_box = None if value is None else v._seal_value(new.id, new.rev, value)
                    continue
                setattr(new, key, value)
            v._apply((OP_PUT, new))
            return Secret._from_entry(new)

        return v._mutate(build)

    def delete(self, secret_id: str) -> Secret:
        """Delete the secret; returns what it was (without its value)."""
        v = self._vault

        def build() -> Secret:
            entry = v._resolve(secret_id)
            v._apply((OP_DELETE, entry.id))
            return Secret._from_entry(entry)

        return v._mutate(build)


def _merge_meta(old: dict[str, Any] | None, sent: dict[str, Any] | None) -> dict[str, Any] | None:
    if sent is None:
        return None
    if set(sent) == {"$update"} and isinstance(sent["$update"], dict):
        merged = dict(old or {})
        merged.update(_records.meta_keys_for_update(sent["$update"]))
        result: dict[str, Any] = _records.check_field("meta", merged)
        return result
    return _records.meta_keys_for_update(sent)


def _unmask_config(old: dict[str, Any] | None, sent: dict[str, Any] | None) -> dict[str, Any] | None:
    # The cloud's round-trip rule: a masked clientSecret sent back means "keep what is stored".
    if sent is None or sent.get("clientSecret") != _records.MASK:
        return sent
    out = dict(sent)
    if old is not None and "clientSecret" in old:
        out["clientSecret"] = old["clientSecret"]
    else:
        del out["clientSecret"]
    return out
