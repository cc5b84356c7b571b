"""Secret, Page, and the cloud's field rules: names, types, defaults, validation.

Field names follow the ChatBotKit API (camelCase on the wire, snake_case in Python,
as the official Python SDK names them). Validation messages name the field and the
rule, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NoReturn

from . import _format
from ._format import Entry
from .errors import InvalidRequestError

if TYPE_CHECKING:
    from ._auth import BasicCredentials
    from ._vault import Vault

__all__ = ["Page", "Secret", "normalize_fields", "MASK"]

#: The cloud's sentinel for a masked ``config.clientSecret``; sent back on update it means "keep".
MASK: Final = "********"

#: wire name -> Python name, for every field a create or update request may carry.
FIELDS: Final[dict[str, str]] = {
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
_SNAKE: Final = frozenset(FIELDS.values())

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

_WORD_START = re.compile(r"\w")


def json_copy(obj: Any) -> Any:
    """A deep copy of JSON-shaped data: callers never hold a reference into the vault's state."""
    if type(obj) is dict:
        return {k: json_copy(v) for k, v in obj.items()}
    if type(obj) is list:
        return [json_copy(v) for v in obj]
    return obj


def mask_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The cloud's response masking: a truthy clientSecret becomes MASK, an empty one None."""
    if config is None:
        return None
    out: dict[str, Any] = json_copy(dict(config))
    if "clientSecret" in out:
        out["clientSecret"] = MASK if out["clientSecret"] else None
    return out


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """A secret as the ChatBotKit API describes it, plus ``value`` (only set by ``fetch``).

    ``repr()`` and ``str()`` never show the value or the config; ``to_dict()`` gives the
    cloud's JSON shape (no value, ``config.clientSecret`` masked) unless ``reveal=True``.
    """

    id: str
    created_at: int
    updated_at: int
    name: str = ""
    description: str = ""
    kind: str = "shared"
    type: str = "plain"
    visibility: str = "private"
    alias: str | None = None
    blueprint_id: str | None = None
    meta: dict[str, Any] | None = None
    config: dict[str, Any] | None = field(default=None, compare=True)
    value: str | None = None

    def __repr__(self) -> str:
        value = "None" if self.value is None else "<hidden>"
        return (
            f"Secret(id={self.id!r}, name={self.name!r}, type={self.type!r}, kind={self.kind!r}, "
            f"alias={self.alias!r}, value={value})"
        )

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Pickles end up in caches, queues and crash dumps; a secret value must not.
        raise TypeError("Secret cannot be pickled")

    def to_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """The cloud's camelCase item. ``reveal=True`` adds ``value`` and the unmasked config."""
        out: dict[str, Any] = {
            "id": self.id,
            "alias": self.alias,
            "name": self.name,
            "description": self.description,
            "blueprintId": self.blueprint_id,
            "kind": self.kind,
            "type": self.type,
            "config": json_copy(self.config) if reveal else mask_config(self.config),
            "visibility": self.visibility,
            "meta": json_copy(self.meta),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if reveal:
            out["value"] = self.value
        return out

    def credentials(self, vault: Vault | None = None) -> BasicCredentials | str:
        """Username and password (``basic``) or the token (``bearer``, ``jwt``, ``oauth``, ``plain``).

        Needs the value, so call it on a fetched secret; a ``reference`` resolves through ``vault``.
        """
        from ._auth import credentials  # lazily: _auth imports this module

        return credentials(self, vault)

    def authorization_header(self, vault: Vault | None = None) -> str:
        """The ``Authorization`` header the cloud would inject: ``Basic ...`` or ``<schema> <token>``."""
        from ._auth import authorization_header

        return authorization_header(self, vault)

    @classmethod
    def _from_entry(cls, entry: Entry, value: str | None = None) -> Secret:
        return cls(
            id=entry.id,
            created_at=entry.created_at,
            updated_at=entry.updated_at,
            name=entry.name,
            description=entry.description,
            kind=entry.kind,
            type=entry.type,
            visibility=entry.visibility,
            alias=entry.alias,
            blueprint_id=entry.blueprint_id,
            meta=json_copy(entry.meta),
            config=json_copy(entry.config),
            value=value,
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``list``: ``items`` (no values) and ``cursor`` (last item's id; None when empty)."""

    items: list[Secret]
    cursor: str | None

    def __iter__(self) -> Iterator[Secret]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        """The cloud's list body; like the cloud, an empty page has no ``cursor`` key."""
        out: dict[str, Any] = {"items": [item.to_dict() for item in self.items]}
        if self.cursor is not None:
            out["cursor"] = self.cursor
        return out


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _field_label(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 64 else text[:61] + "..."


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


def _plain_json(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_json(v) for v in obj]
    return obj


def _check_str(name: str, obj: object, limit: int) -> str:
    if type(obj) is not str:
        raise _bad(f"{name} must be a string")
    if len(obj) > limit:
        raise _bad(f"{name} is longer than {limit} characters")
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
        raise _bad("alias must match ^[a-z0-9_-]{0,128}$")
    return obj


def _check_text(name: str, obj: object, limit: int) -> str:
    text = _check_str(name, obj, limit)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name} must be valid Unicode text") from None
    return text


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
    raise _bad(f"unknown field {_field_label(name)}")  # pragma: no cover - callers filter names


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
            if key not in FIELDS:
                raise _bad(f"unknown field {_field_label(key)}")
            out[FIELDS[key]] = value
    for key, value in kwargs.items():
        if key not in _SNAKE:
            raise _bad(f"unknown field {_field_label(key)}")
        if key in out:
            raise _bad(f"field {key!r} given twice")
        out[key] = value
    return out


def meta_keys_for_create(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    # Inferred from the cloud's create schema: keys that begin with "_" are reserved.
    if meta is not None:
        for key in meta:
            if key.startswith("_"):
                raise _bad("meta keys must not begin with '_'")
    return meta


def meta_keys_for_update(meta: dict[str, Any]) -> dict[str, Any]:
    # The cloud's update silently drops keys that begin with "_" or another non-word character.
    return {k: v for k, v in meta.items() if k and _WORD_START.match(k) and not k.startswith("_")}
