"""Every rule of ChatBotKit's secret resource, once: fields, defaults, validation, paging, meta, masking.

Each surface (the vault API ``v.secret``, the HTTP stand-in, ``vault.aio``, sync, import)
calls these functions rather than restating a rule, so the surfaces cannot drift apart.
Field names follow the cloud (camelCase on the wire, snake_case in Python, as the official
Python SDK names them). Validation messages name the field and the rule, never the value.
Each rule follows the platform's own source (its secret routes and the helpers they call);
where the local vault API differs on purpose, the README says so. No I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import _format
from ._format import Entry
from ._index import Index
from .errors import ConflictError, InvalidRequestError

__all__ = [
    "DEFAULTS",
    "ITEM_FIELDS",
    "MASK",
    "MAX_TIMESTAMP",
    "REQUEST_FIELDS",
    "apply_fields",
    "check_alias_free",
    "check_field",
    "check_fields",
    "check_record_id",
    "check_timestamp",
    "json_copy",
    "mask_config",
    "merge_meta",
    "meta_filter",
    "new_entry",
    "normalize_fields",
    "order_ascending",
    "parse_int",
    "query_text",
    "take_count",
    "unmask_config",
]

#: The cloud's sentinel for a masked ``config.clientSecret``; sent back on update it means "keep".
MASK: Final = "********"

#: wire name -> Python name, for every field a create or update request may carry.
REQUEST_FIELDS: Final[dict[str, str]] = {
    "name": "name",
    "description": "description",
    "kind": "kind",
    "type": "type",
    "value": "value",
    "alias": "alias",
    "meta": "meta",
    "config": "config",
    "visibility": "visibility",
    "blueprintId": "blueprint_id",
}
_SNAKE: Final = frozenset(REQUEST_FIELDS.values())

#: (wire name, Python name) of every field of the cloud's secret item, in its response order.
#: There is no ``value``: the cloud never returns one.
ITEM_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("id", "id"),
    ("alias", "alias"),
    ("name", "name"),
    ("description", "description"),
    ("blueprintId", "blueprint_id"),
    ("kind", "kind"),
    ("type", "type"),
    ("config", "config"),
    ("visibility", "visibility"),
    ("meta", "meta"),
    ("createdAt", "created_at"),
    ("updatedAt", "updated_at"),
)

#: What the cloud stores when a create request leaves a field out.
DEFAULTS: Final[dict[str, Any]] = {
    "name": "",
    "description": "",
    "kind": "shared",
    "type": "plain",
    "value": None,
    "alias": None,
    "meta": None,
    "config": None,
    "visibility": "private",
    "blueprint_id": None,
}

_WORD_START: Final = re.compile(r"\w")
_INT_PREFIX: Final = re.compile(r"\s*([+-]?[0-9]+)")


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _field_label(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 64 else text[:61] + "..."


def json_copy(obj: Any) -> Any:
    """A deep copy of JSON-shaped data: callers never hold a reference into the vault's state."""
    if type(obj) is dict:
        return {k: json_copy(v) for k, v in obj.items()}
    if type(obj) is list:
        return [json_copy(v) for v in obj]
    return obj


# --- field validation -----------------------------------------------------------------------


def _plain_json(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_json(v) for v in obj]
    return obj


def _check_json(name: str, obj: object) -> dict[str, Any] | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise _bad(f"{name} must be an object or null")
    if not _format.json_depth_ok(obj):
        raise _bad(f"{name} must be JSON (string keys; nested at most {_format.MAX_DEPTH} deep)")
    copied: dict[str, Any] = _plain_json(obj)
    try:
        size = len(_format.packb(copied))
    except (TypeError, ValueError, OverflowError):
        raise _bad(f"{name} must be JSON") from None
    if size > _format.MAX_JSON:
        raise _bad(f"{name} is larger than {_format.MAX_JSON} bytes")
    return copied


def _check_text(name: str, obj: object, limit: int) -> str:
    if type(obj) is not str:
        raise _bad(f"{name} must be a string")
    if len(obj) > limit:
        raise _bad(f"{name} is longer than {limit} characters")
    try:
        obj.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name} must be valid Unicode text") from None
    return obj


def _check_enum(name: str, obj: object, allowed: tuple[str, ...]) -> str:
    if obj not in allowed or type(obj) is not str:
        raise _bad(f"{name} must be one of {', '.join(allowed)}")
    return obj


def _check_value(obj: object) -> str | None:
    if obj is None:
        return None
    if type(obj) is not str:
        raise _bad("value must be a string or null")
    try:
        size = len(obj.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad("value must be valid Unicode text") from None
    if size > _format.MAX_VALUE:
        raise _bad(f"value is larger than {_format.MAX_VALUE} bytes")
    return obj


def _check_alias(obj: object) -> str | None:
    if obj is None or obj == "":
        return None  # the cloud treats "" and null alike: no alias
    if type(obj) is not str or _format.ALIAS_RE.fullmatch(obj) is None:
        raise _bad(f"alias must match ^[a-z0-9_-]{{0,{_format.MAX_ALIAS}}}$")
    return obj


def check_field(name: str, obj: object) -> Any:
    """Validate one snake_case field; returns the value to store."""
    if name in ("name", "description"):
        return _check_text(name, obj, _format.MAX_NAME if name == "name" else _format.MAX_DESCRIPTION)
    if name == "kind":
        return _check_enum("kind", obj, _format.KINDS)
    if name == "type":
        return _check_enum("type", obj, _format.TYPES)
    if name == "visibility":
        return _check_enum("visibility", obj, _format.VISIBILITIES)
    if name == "value":
        return _check_value(obj)
    if name == "alias":
        return _check_alias(obj)
    if name in ("meta", "config"):
        return _check_json(name, obj)
    if name == "blueprint_id":
        return None if obj is None else _check_text("blueprintId", obj, _format.MAX_ID)
    raise _bad(f"unknown field {_field_label(name)}")


def check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate snake_case fields; returns the values to store."""
    return {key: check_field(key, value) for key, value in fields.items()}


#: The reader's range for a record's times (``_format.decode_entry``): epoch milliseconds, 0..2**63-1.
MAX_TIMESTAMP: Final = (1 << 63) - 1


def check_timestamp(name: str, obj: object) -> int:
    """A time in epoch milliseconds, as the reader will accept it: an int in 0..2**63-1.

    A whole float (``1700000000000.0``: JSON has one number type, and some encoders write
    it so) is taken as its int; NaN, the infinities, fractions, bools and strings are refused.
    Checked where times enter from outside (a sync pull), so no writer hands the reader a
    time it would call corrupt.
    """
    if type(obj) is float and math.isfinite(obj) and obj.is_integer():
        obj = int(obj)
    if type(obj) is not int or not 0 <= obj <= MAX_TIMESTAMP:
        raise _bad(f"{name} must be a whole number of milliseconds from 0 to 2**63-1")
    return obj


def check_record_id(record_id: object) -> str:
    if type(record_id) is not str or _format.ID_RE.fullmatch(record_id) is None:
        raise _bad("record id has the wrong form")
    return record_id


def normalize_fields(request: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a camelCase request mapping and snake_case keyword fields into snake_case.

    Unknown fields are rejected (the cloud's schema rejects unknown keys); the same
    field given twice is ambiguous and rejected too. Values are not validated here.
    """
    out: dict[str, Any] = {}
    if request is not None:
        if not isinstance(request, Mapping):
            raise _bad("request must be a mapping")
        for key, value in request.items():
            if key not in REQUEST_FIELDS:
                raise _bad(f"unknown field {_field_label(key)}")
            out[REQUEST_FIELDS[key]] = value
    for key, value in kwargs.items():
        if key not in _SNAKE:
            raise _bad(f"unknown field {_field_label(key)}")
        if key in out:
            raise _bad(f"field {key!r} given twice")
        out[key] = value
    return out


# --- meta and config ----------------------------------------------------------------------


def meta_keys_for_create(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    # The cloud's meta schema (object().pattern(/^[^_]/)): keys that begin with "_" are refused.
    if meta is not None:
        for key in meta:
            if key.startswith("_"):
                raise _bad("meta keys must not begin with '_'")
    return meta


def _meta_keys_for_update(meta: dict[str, Any]) -> dict[str, Any]:
    # The cloud's update silently drops keys that begin with "_" or another non-word character.
    return {k: v for k, v in meta.items() if k and _WORD_START.match(k) and not k.startswith("_")}


def merge_meta(old: dict[str, Any] | None, sent: dict[str, Any] | None) -> dict[str, Any] | None:
    """An update's meta: replaces the stored one, or ``{"$update": {...}}`` merges into it."""
    if sent is None:
        return None
    if set(sent) == {"$update"} and isinstance(sent["$update"], dict):
        merged = dict(old or {})
        merged.update(_meta_keys_for_update(sent["$update"]))
        result: dict[str, Any] = check_field("meta", merged)
        return result
    return _meta_keys_for_update(sent)


def mask_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The cloud's response masking: a truthy clientSecret becomes MASK, an empty one None."""
    if config is None:
        return None
    out: dict[str, Any] = json_copy(dict(config))
    if "clientSecret" in out:
        out["clientSecret"] = MASK if out["clientSecret"] else None
    return out


def unmask_config(old: Mapping[str, Any] | None, sent: dict[str, Any] | None) -> dict[str, Any] | None:
    """The cloud's round trip: a masked clientSecret sent back means "keep what is stored".

    With nothing stored, the mask is dropped rather than stored as if it were a secret.
    """
    if sent is None or sent.get("clientSecret") != MASK:
        return sent
    out = dict(sent)
    if old is not None and "clientSecret" in old:
        out["clientSecret"] = old["clientSecret"]
    else:
        del out["clientSecret"]
    return out


# --- list ---------------------------------------------------------------------------------------


def query_text(value: object) -> str:
    """What a value becomes once an SDK has put it in a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_int(value: object) -> int | None:
    """JavaScript's ``parseInt`` of the query text an SDK would send: the leading integer, or None.

    So ``5.0``, ``"5x"`` and ``" 5"`` are 5, and ``1e3`` is 1, as the cloud reads them.
    """
    if value is None:
        return None
    found = _INT_PREFIX.match(query_text(value))
    return int(found.group(1)) if found else None


def take_count(value: object) -> int:
    """The cloud's take: 0, missing or not a number gives 100; below 1 gives 1; at most 100."""
    number = parse_int(value)
    if not number:
        return 100
    return max(1, min(100, number))


def order_ascending(order: object) -> bool:
    """``asc`` sorts oldest first; anything else (``desc``, missing, a typo) newest first."""
    return order == "asc"


def meta_filter(meta: Mapping[str, Any] | None) -> Callable[[Entry], bool] | None:
    """The cloud's ``meta.KEY=VALUE`` list filter as a predicate (None: no filter).

    Values are compared as the query text the SDKs send: ``true``/``false`` become
    booleans, anything else stays a string. Dots in KEY walk nested objects; several
    filters must all hold.
    """
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise _bad("meta filter must be a mapping")
    wanted: list[tuple[list[str], object]] = []
    for key, want in meta.items():
        if type(key) is not str or not key:
            raise _bad("meta filter keys must be non-empty strings")
        text = query_text(want)
        wanted.append((key.split("."), {"true": True, "false": False}.get(text, text)))
    if not wanted:
        return None

    def keep(entry: Entry) -> bool:
        for path, want in wanted:
            current: Any = entry.meta
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

    return keep


# --- building records -------------------------------------------------------------------------


def check_alias_free(index: Index, alias: str | None, record_id: str | None) -> None:
    """An alias is unique per owner: the cloud answers a duplicate with 409."""
    if alias is None:
        return
    owner = index.aliases.get(alias)
    if owner is not None and owner != record_id:
        raise ConflictError(f"alias {alias!r} is already in use")


Seal = Callable[[str, int, str], bytes]


def new_entry(record_id: str, now: int) -> Entry:
    """A record holding only the cloud's defaults, revision 0 (``apply_fields`` makes it 1)."""
    d = DEFAULTS
    return Entry(
        record_id,
        0,
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


def apply_fields(old: Entry, checked: Mapping[str, Any], index: Index, seal: Seal, *, merge: bool) -> Entry:
    """The next revision of ``old`` with validated snake_case fields applied.

    ``merge=True`` applies an update's rules (``$update`` meta merge, masked clientSecret
    kept); ``merge=False`` stores the fields as given (create, sync pull, import).
    A value is sealed under the new revision, so every value box names the revision it
    was written at.
    """
    new = old.copy()
    new.rev = old.rev + 1
    for key, value in checked.items():
        if key == "value":
            new.value_rev = new.rev
            new.value_box = None if value is None else seal(new.id, new.rev, value)
            continue
        if merge and key == "meta":
            value = merge_meta(old.meta, value)
        elif merge and key == "config":
            value = unmask_config(old.config, value)
        elif key == "alias" and value != old.alias:
            check_alias_free(index, value, new.id)
        setattr(new, key, value)
    return new
