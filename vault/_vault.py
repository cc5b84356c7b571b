"""Vault: open or create a vault file, and the handle users hold.

A :class:`Vault` is a thin handle over a :class:`Backend`: the storage engine in this process
(:class:`LocalBackend`), or the unlock agent that holds the key (``_session``). It offers the
lifecycle, ``batch()``, compaction, passphrase change and sync, plus ``v.secret``, the cloud's API.
The layers above the public API (sync, the CLI, the stand-in) reach the records through
one named seam, :func:`raw_records`, never through the handle's attributes.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn, Protocol

from . import _crypto, _format, _history, _keys
from ._accesslog import AccessRecord
from ._engine import Clock, Engine
from ._history import Retention
from ._raw import RawRecords
from ._secret_client import SecretClient
from ._store import IO, Store, create_file, resolve_path
from .errors import CorruptVaultError, InvalidRequestError

if TYPE_CHECKING:
    from .sync import ChatBotKitRemote, SyncReport

__all__ = ["Backend", "Clock", "LocalBackend", "Vault", "engine_of", "init", "open", "raw_records"]

PathArg = str | os.PathLike[str] | None


class Backend(Protocol):
    """What a :class:`Vault` handle stands on: the local engine, or the unlock agent (``_session``)."""

    secret: SecretClient
    raw: RawRecords

    @property
    def path(self) -> Path: ...

    @property
    def closed(self) -> bool: ...

    @property
    def kdf(self) -> _crypto.KdfParams: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...

    def count(self) -> int: ...

    def transaction(self) -> AbstractContextManager[object]: ...

    def compact(self) -> None: ...

    def change_passphrase(self, passphrase: bytes, params: _crypto.KdfParams | None, *, rekey: bool) -> None: ...

    def access_log(self, secret: str | None, since: int | None) -> list[AccessRecord]: ...

    def now(self) -> int: ...


class LocalBackend:
    """A vault file opened in this process: the storage engine and the clients over it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.secret = SecretClient(engine)
        self.raw = RawRecords(engine)

    @property
    def path(self) -> Path:
        return self.engine.path

    @property
    def closed(self) -> bool:
        return self.engine.closed

    @property
    def kdf(self) -> _crypto.KdfParams:
        return self.engine.kdf

    def describe(self) -> str:
        return self.engine.describe()

    def close(self) -> None:
        self.engine.close()

    def count(self) -> int:
        with self.engine.reading() as index:
            return len(index)

    def transaction(self) -> AbstractContextManager[object]:
        return self.engine.transaction()

    def compact(self) -> None:
        self.engine.compact()

    def change_passphrase(self, passphrase: bytes, params: _crypto.KdfParams | None, *, rekey: bool) -> None:
        if rekey:
            self.engine.rekey(passphrase, params)
        else:
            self.engine.change_passphrase(passphrase, params)

    def access_log(self, secret: str | None, since: int | None) -> list[AccessRecord]:
        secret_id = None
        if secret is not None:
            with self.engine.reading() as index:
                held = index.trashed(secret)
                if held is not None or index.id_taken(secret) or _format.ID_RE.fullmatch(secret):
                    secret_id = secret  # an exact id, even of a secret long purged
                else:
                    secret_id = index.resolve(secret).id
        return self.engine.access_log(secret_id, since)

    def now(self) -> int:
        """The engine's clock (injected, or wall time) in epoch ms: the access log's times are its."""
        return self.engine.clock()


class Vault:
    """An unlocked vault. Use :func:`vault.open` or :func:`vault.init` to get one.

    A context manager; ``close()`` drops the keys. Safe to share between threads;
    several processes may open the same file at once.
    """

    def __init__(self, backend: Backend | Engine) -> None:
        self._backend: Backend = LocalBackend(backend) if isinstance(backend, Engine) else backend
        self.secret = self._backend.secret

    @property
    def path(self) -> Path:
        return self._backend.path

    @property
    def closed(self) -> bool:
        return self._backend.closed

    @property
    def kdf(self) -> _crypto.KdfParams:
        """The key-derivation cost of the passphrase this handle was unlocked with."""
        return self._backend.kdf

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Vault {str(self.path)!r} {self._backend.describe()}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an unlocked Vault cannot be pickled")

    def __len__(self) -> int:
        return self._backend.count()

    @contextmanager
    def batch(self) -> Iterator[Vault]:
        """Commit every change made inside the block as one frame, with one fsync: all or nothing.

        The writer lock is held for the whole block, so keep it short. Reads inside the
        block see the block's own changes. Nested ``batch()`` blocks join the outer one.
        """
        with self._backend.transaction():
            yield self

    def compact(self) -> None:
        """Rewrite the file with only live records (temp file, fsync, atomic rename)."""
        self._backend.compact()

    def retention(self) -> Retention:
        """What this vault keeps: past revisions, the trash, the access log (defaults: :class:`Retention`)."""
        return Retention.from_setting(self._backend.raw.setting(_history.SETTING))

    def set_retention(self, retention: Retention | None = None, **changes: object) -> Retention:
        """Change what the vault keeps (one commit); returns the new retention.

        ``v.set_retention(history=0)`` turns history off, ``v.set_retention(access_log=False)`` the
        access log. Compaction applies it: revisions and trashed secrets outside it are dropped then
        (and reads stop showing them at once).
        """
        with self._backend.transaction():
            new = (retention or self.retention()).changed(**changes)
            self._backend.raw.set_setting(_history.SETTING, new.to_setting())
        return new

    def access_log(
        self, secret: str | None = None, since: int | _dt.datetime | _dt.timedelta | None = None
    ) -> list[AccessRecord]:
        """Who read which secret's value, when: the sealed access log's records, oldest first.

        ``secret`` keeps one secret's (an id, ``@alias`` or ``(name)``); ``since`` keeps records from
        a time on (epoch milliseconds, a ``datetime``, or a ``timedelta`` back from now, by the
        vault's clock: the ``clock=`` it was opened with, which also stamps the records). The whole
        log is verified first: a removed or edited record raises :class:`~vault.CorruptVaultError`.
        This process's own reads are always there (its buffered records are written first).
        """
        if secret is not None and (type(secret) is not str or not secret):
            raise InvalidRequestError("secret must be a non-empty string")
        return self._backend.access_log(secret, _since_ms(since, self._backend.now))

    def change_passphrase(
        self, new_passphrase: str | bytes, *, kdf: str | _crypto.KdfParams | None = None, rekey: bool = False
    ) -> None:
        """Put the vault under a new passphrase.

        By default the random data key is rewrapped and the records are not touched: the new
        key slot is written beside the old one and synced (the commit point: from then on only
        the newest slot is tried), then the old slot is erased. Cost: one Argon2id run and two
        small in-place writes, whatever the vault's size. An old copy of the file still opens
        with the old passphrase, and its data key opens secrets written later too.

        ``rekey=True`` also draws a new data key and seals every value and frame again, through
        the crash-safe compaction path (O(size)): secrets written afterwards are out of reach of
        an old copy and the old passphrase. Other handles open on the file get
        :class:`~vault.KeyChangedError` on their next call.
        """
        if rekey not in (True, False):
            raise InvalidRequestError("rekey must be a bool")
        passphrase = _crypto.normalize_passphrase(new_passphrase)
        params = None if kdf is None else _crypto.resolve_kdf(kdf)
        self._backend.change_passphrase(passphrase, params, rekey=rekey)

    def sync(
        self,
        remote: ChatBotKitRemote,
        direction: Literal["push", "pull", "both"] = "both",
        dry_run: bool = False,
        prefer: Literal["local", "remote"] | None = None,
        *,
        concurrency: int = 4,  # vault.sync's DEFAULT_CONCURRENCY (tests/test_sync_concurrency.py checks)
    ) -> SyncReport:
        """Push local changes to / pull remote changes from the ChatBotKit workspace (needs ``cbk-vault[sync]``).

        ``direction`` is "push", "pull" or "both"; ``dry_run`` plans without writing anywhere;
        ``prefer`` ("local" or "remote") settles conflicts, which are otherwise only reported;
        ``concurrency`` (1..16) is how many cloud writes may be in flight at once.
        See docs/SYNC.md.
        """
        # The one import that points up the layers: sync is an optional extra built on Vault.
        from .sync import sync

        return sync(self, remote, direction=direction, dry_run=dry_run, prefer=prefer, concurrency=concurrency)


def _since_ms(since: object, now: Clock) -> int | None:
    if since is None:
        return None
    if isinstance(since, _dt.timedelta):
        return now() - int(since.total_seconds() * 1000)
    if isinstance(since, _dt.datetime):
        return int(since.timestamp() * 1000)
    if type(since) is int and since >= 0:
        return since
    raise InvalidRequestError("since must be epoch milliseconds, a datetime or a timedelta")


def engine_of(v: Vault) -> Engine:
    """The storage engine behind a handle opened in this process (vault.testing's clean-up hook, bench/)."""
    backend = v._backend
    if not isinstance(backend, LocalBackend):
        raise InvalidRequestError("this vault is served by the unlock agent: it has no engine in this process")
    return backend.engine


def raw_records(v: Vault) -> RawRecords:
    """The records as stored, for sync, import and the CLI (see ``_raw``)."""
    return v._backend.raw


# --- opening and creating ---------------------------------------------------------------


def init(
    path: PathArg = None,
    passphrase: str | bytes = "",
    *,
    kdf: str | _crypto.KdfParams = "moderate",
    clock: Clock | None = None,
    lock_timeout: float = 10.0,
    _rng: _crypto.RandomSource | None = None,
    _io: IO | None = None,
    _version: int = _format.VERSION,
) -> Vault:
    """Create a new, empty vault at ``path`` (None: the default path) and return it unlocked.

    ``_version=1`` writes the frozen format version 1 (golden-file and test-vector generators only).
    """
    target = resolve_path(path)
    params = _crypto.resolve_kdf(kdf)
    secret = _crypto.normalize_passphrase(passphrase)
    if _version not in _format.VERSIONS:
        raise InvalidRequestError(f"format version {_version} cannot be written")
    prefix, keys = _keys.create(secret, params, _rng or _crypto.random_bytes, version=_version)
    io = _io or IO()
    create_file(target, prefix, io)
    try:
        store = Store(target, io)
    except BaseException:
        # init failed, so leave nothing behind: a retry must not meet VaultExistsError.
        target.unlink(missing_ok=True)
        raise
    try:
        engine = Engine(
            store,
            keys,
            params,
            generation=1,
            clock=clock,
            rng=_rng,
            lock_timeout=lock_timeout,
            write_version=_version,
        )
        engine.load()
    except BaseException:
        store.close()
        target.unlink(missing_ok=True)
        raise
    return Vault(engine)


def open(
    path: PathArg = None,
    passphrase: str | bytes = "",
    *,
    clock: Clock | None = None,
    lock_timeout: float = 10.0,
    _rng: _crypto.RandomSource | None = None,
    _io: IO | None = None,
    _version: int = _format.VERSION,
) -> Vault:
    """Unlock the vault at ``path`` (None: the default path).

    A version-1 file is read as it is; its first write rewrites it as version 2 (``_version=1``
    keeps writing version 1: golden-file and test-vector generators only).
    """
    if _version not in _format.VERSIONS:
        raise InvalidRequestError(f"format version {_version} cannot be written")
    target = resolve_path(path)
    secret = _crypto.normalize_passphrase(passphrase)
    store = Store(target, _io)
    try:
        # No lock: renames are atomic and a torn append reads as not yet committed.
        head = store.read(0, _format.LOG_START)
        _format.decode_header(head)  # not a vault, or a newer format: say so before anything else
        try:
            _format.choose_slot(head)
        except CorruptVaultError:
            # A passphrase change rewrites a slot in place; read again once it is done.
            with store.locked(exclusive=False, timeout=lock_timeout):
                head = store.read(0, _format.LOG_START)
        unlocked = _keys.unlock(head, secret)
        engine = Engine(
            store,
            unlocked.keys,
            unlocked.kdf,
            generation=unlocked.generation,
            clock=clock,
            rng=_rng,
            lock_timeout=lock_timeout,
            write_version=_version,
        )
        engine.load()
        engine.stale_slot = unlocked.stale_slot
    except BaseException:
        store.close()
        raise
    return Vault(engine)
