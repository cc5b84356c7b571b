"""Secret and Page: the value types of the secret resource, in the cloud's shape.

A :class:`Secret` is what the API hands out: frozen, its value hidden from ``repr`` and
refused by pickle. ``to_dict()`` gives the cloud's camelCase item (no value,
``config.clientSecret`` masked). The rules that make and check them live in ``_rules``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from . import _credentials
from ._format import Entry
from ._rules import ITEM_FIELDS, json_copy, mask_config

if TYPE_CHECKING:
    from ._credentials import BasicCredentials, SecretSource

__all__ = ["Page", "Secret", "secret_from_entry"]


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
    #: The stored revision this describes (1 for a new secret, +1 at every change; 0: not from a vault).
    #: Not part of the cloud's item shape: ``to_dict()`` leaves it out.
    revision: int = 0
    #: When the secret was moved to the trash (epoch ms); None for a live secret or a past revision.
    deleted_at: int | None = None

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
        out: dict[str, Any] = {wire: getattr(self, name) for wire, name in ITEM_FIELDS}
        out["config"] = json_copy(self.config) if reveal else mask_config(self.config)
        out["meta"] = json_copy(self.meta)
        if reveal:
            out["value"] = self.value
        return out

    def credentials(self, vault: SecretSource | None = None) -> BasicCredentials | str:
        """Username and password (``basic``) or the token (``bearer``, ``jwt``, ``oauth``, ``plain``).

        Needs the value, so call it on a fetched secret; a ``reference`` resolves through ``vault``.
        """
        return _credentials.credentials(self, vault)

    def authorization_header(self, vault: SecretSource | None = None) -> str:
        """The ``Authorization`` header the cloud would inject: ``Basic ...`` or ``<schema> <token>``."""
        return _credentials.authorization_header(self, vault)


def secret_from_entry(entry: Entry, value: str | None = None, *, deleted_at: int | None = None) -> Secret:
    """The API's view of a stored record; ``value`` only when the caller opened it."""
    meta, config = entry.meta, entry.config
    # Positional, in the field order of Secret: list builds one per item, and keyword
    # arguments cost a frozen dataclass's __init__ a third more (test_api checks the order).
    return Secret(
        entry.id,
        entry.created_at,
        entry.updated_at,
        entry.name,
        entry.description,
        entry.kind,
        entry.type,
        entry.visibility,
        entry.alias,
        entry.blueprint_id,
        None if meta is None else json_copy(meta),
        None if config is None else json_copy(config),
        value,
        entry.rev,
        deleted_at,
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
