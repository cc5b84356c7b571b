"""Retention: which past revisions and trashed secrets a vault keeps. Pure: no I/O, no keys, no clock.

A vault keeps every revision an update replaces, and every secret ``delete`` moves to the trash,
until compaction applies the vault's :class:`Retention`: the last ``history`` previous revisions
of each secret, none older than ``history_days`` (counted from when a revision stopped being
current), and trashed secrets for ``trash_days`` after their deletion. Reads apply the same rule,
so what ``history()`` and ``list(deleted=True)`` show is exactly what compaction will keep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from ._format import Entry
from .errors import InvalidRequestError

__all__ = ["DAY_MS", "DEFAULT", "Retention", "SETTING", "kept_history", "trash_expired"]

#: The vault setting that holds the retention (a SETTING op, so a version-1 op).
SETTING: Final = "vault.retention"
DAY_MS: Final = 86_400_000
_MAX_REVISIONS: Final = 10_000
_MAX_DAYS: Final = 100 * 366

_WIRE: Final = {
    "history": "history",
    "history_days": "historyDays",
    "trash_days": "trashDays",
    "access_log": "accessLog",
}


@dataclass(frozen=True, slots=True)
class Retention:
    """What a vault keeps: past revisions, trashed secrets, and the access log.

    ``history``: previous revisions kept per secret (0 turns history off; None keeps all).
    ``history_days``: a past revision is dropped this many days after it stopped being current
    (None: no age limit). ``trash_days``: a deleted secret stays recoverable this long (0: delete
    purges at the next compaction; None: until purged). ``access_log``: record every read of a value.
    """

    history: int | None = 10
    history_days: int | None = 365
    trash_days: int | None = 30
    access_log: bool = True

    def __post_init__(self) -> None:
        for name, top in (("history", _MAX_REVISIONS), ("history_days", _MAX_DAYS), ("trash_days", _MAX_DAYS)):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 <= value <= top):
                raise InvalidRequestError(f"retention {name} must be None or an integer from 0 to {top}")
        if type(self.access_log) is not bool:
            raise InvalidRequestError("retention access_log must be a bool")

    def to_setting(self) -> dict[str, Any]:
        return {wire: getattr(self, name) for name, wire in _WIRE.items()}

    @classmethod
    def from_setting(cls, stored: object) -> Retention:
        """The stored setting; a missing or malformed field takes its default (reads never fail on it)."""
        if not isinstance(stored, Mapping):
            return DEFAULT
        out = DEFAULT
        for name, wire in _WIRE.items():
            if wire in stored:
                try:
                    out = replace(out, **{name: stored[wire]})
                except InvalidRequestError:
                    continue
        return out

    def changed(self, **changes: Any) -> Retention:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise InvalidRequestError(f"unknown retention setting {sorted(unknown)[0]!r}")
        return replace(self, **changes)


DEFAULT: Final = Retention()


def kept_history(history: Sequence[Entry], current_updated_at: int, now: int, retention: Retention) -> Sequence[Entry]:
    """The past revisions (oldest first) that ``retention`` keeps: always a suffix of ``history``.

    Revision i stopped being current when revision i+1 was written (``updated_at``); the last
    one when the current revision was. Keeping a suffix keeps revisions consecutive, which the
    reader checks (docs/FORMAT.md, OP_REVISION).
    """
    n = len(history)
    if n == 0 or retention.history == 0:
        return ()
    start = 0 if retention.history is None else max(0, n - retention.history)
    if retention.history_days is not None:
        cutoff = now - retention.history_days * DAY_MS
        for i in range(n - 1, start - 1, -1):
            superseded = history[i + 1].updated_at if i + 1 < n else current_updated_at
            if superseded < cutoff:
                start = i + 1
                break
    return history[start:]


def trash_expired(deleted_at: int, now: int, retention: Retention) -> bool:
    """Whether a secret deleted at ``deleted_at`` is past the trash's retention (then it is gone)."""
    return retention.trash_days is not None and deleted_at < now - retention.trash_days * DAY_MS
