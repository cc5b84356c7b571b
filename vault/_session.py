"""A session with the unlock agent: its socket, its wire protocol, and vaults it holds the key of.

``cbk-vault unlock`` hands a vault's passphrase to a per-user agent process (``_agent``),
which derives the key once, keeps the vault open and forgets the passphrase. Clients, the
CLI and ``vault.open(path)`` without a passphrase, then use the vault through the agent's
Unix socket: no key derivation, no prompt, no passphrase in any environment. The key never
leaves the agent; values do, to the clients that ask (as they would from the file).

Wire protocol: each message is a 4-byte big-endian length and a UTF-8 JSON object. A
request names an ``op``; the answer is ``{"ok": result}`` or ``{"error": {code, message}}``.
Every call on a vault carries an open descriptor of the vault file (``SCM_RIGHTS``): the
agent acts only on a file the client could open itself, read-write for writes.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import _crypto, _vault
from ._accesslog import AccessRecord, current_context
from ._agent_client import (
    AGENT_SOCKET_ENV,
    AgentConnection,
    agent_socket,
    check_private_dir,
    lock,
    recv_message,
    request,
    send_message,
    start_agent,
    status,
    unlock,
)
from ._engine import Clock
from ._raw import RawRecords
from ._records import Page, Secret
from ._secret_client import SecretClient
from ._store import IO, resolve_path
from ._vault import Vault
from .errors import (
    InvalidRequestError,
)

__all__ = [
    "AGENT_SOCKET_ENV",
    "AgentBackend",
    "agent_socket",
    "check_private_dir",
    "decode_secret",
    "encode_secret",
    "open_unlocked",
    "recv_message",
    "request",
    "send_message",
    "start_agent",
    "status",
    "unlock",
    "lock",
    "open",
]

def encode_secret(secret: Secret) -> dict[str, Any]:
    # The cloud's item plus what the vault adds (revision, deletedAt), which the item leaves out.
    return {**secret.to_dict(reveal=True), "revision": secret.revision, "deletedAt": secret.deleted_at}


def decode_secret(obj: Mapping[str, Any]) -> Secret:
    return Secret(
        id=obj["id"],
        created_at=obj["createdAt"],
        updated_at=obj["updatedAt"],
        name=obj["name"],
        description=obj["description"],
        kind=obj["kind"],
        type=obj["type"],
        visibility=obj["visibility"],
        alias=obj["alias"],
        blueprint_id=obj["blueprintId"],
        meta=obj["meta"],
        config=obj["config"],
        value=obj.get("value"),
        revision=int(obj.get("revision") or 0),
        deleted_at=obj.get("deletedAt"),
    )


def decode_access(obj: Mapping[str, Any]) -> AccessRecord:
    return AccessRecord(
        seq=int(obj["seq"]),
        at=int(obj["at"]),
        secret_id=str(obj["secretId"]),
        operation=str(obj["operation"]),
        revision=obj.get("revision"),
        pid=int(obj["pid"]),
        exe=str(obj["exe"]),
        peer_pid=obj.get("peerPid"),
        peer_exe=obj.get("peerExe"),
    )


# --- the client ------------------------------------------------------------------------------------


class AgentBackend:
    """A vault served by the unlock agent: one connection (``_agent_client``), calls forwarded, the key never here."""

    def __init__(self, path: Path, sock_path: Path | None = None) -> None:
        self._conn = AgentConnection(path, sock_path)
        self._depth = 0
        self.secret: SecretClient = _AgentSecretClient(self)
        self.raw: RawRecords = _AgentRawRecords(self)
        try:
            # The first call: NotUnlockedError when the agent does not hold this vault (or stopped).
            kdf = self.call("vault", "info")["kdf"]
        except BaseException:
            self._conn.close()
            raise
        self._kdf = _crypto.KdfParams(kdf[0], kdf[1])

    def call(self, target: str, method: str, *args: Any, **kwargs: Any) -> Any:
        access = current_context()
        # How this client reads (vault.access_context), for the agent's access log; the agent itself
        # records our pid and executable from the socket.
        return self._conn.call(target, method, *args, extra={"access": access} if access else None, **kwargs)

    @property
    def path(self) -> Path:
        return self._conn.path

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @property
    def kdf(self) -> _crypto.KdfParams:
        return self._kdf

    def describe(self) -> str:
        return "closed" if self._conn.closed else "via the unlock agent"

    def close(self) -> None:
        self._conn.close()

    def count(self) -> int:
        return int(self.call("vault", "len"))

    @contextmanager
    def transaction(self) -> Iterator[object]:
        # Other threads' calls wait for the batch, as on a local handle.
        with self._conn.lock, self._batch() as txn:
            yield txn

    @contextmanager
    def _batch(self) -> Iterator[object]:
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.call("vault", "begin")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            if not self._conn.closed:
                self.call("vault", "rollback")
            raise
        self._depth = 0
        self.call("vault", "commit")

    def compact(self) -> None:
        self.call("vault", "compact")

    def change_passphrase(self, passphrase: bytes, params: _crypto.KdfParams | None, *, rekey: bool) -> None:
        kdf = None if params is None else [params.opslimit, params.memlimit]
        self.call("vault", "change_passphrase", passphrase.decode("utf-8", "surrogateescape"), kdf, rekey)

    def access_log(self, secret: str | None, since: int | None) -> list[AccessRecord]:
        return [decode_access(r) for r in self.call("vault", "access_log", secret, since)]

    def now(self) -> int:
        """Wall time in epoch ms: the agent's vault has no injected clock."""
        return time.time_ns() // 1_000_000


class _AgentSecretClient(SecretClient):
    """``v.secret`` through the agent: the same calls, answered by the agent's open vault."""

    def __init__(self, backend: AgentBackend) -> None:
        self._backend = backend

    def __repr__(self) -> str:
        return f"<SecretClient of {str(self._backend.path)!r} via the unlock agent>"

    def create(self, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        return decode_secret(self._backend.call("secret", "create", _plain(request), **_plain(fields)))

    def fetch(self, secret_id: str, *, revision: int | None = None) -> Secret:
        if revision is None:
            return decode_secret(self._backend.call("secret", "fetch", secret_id))
        return decode_secret(self._backend.call("secret", "fetch", secret_id, revision=revision))

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
        extra = {"deleted": deleted} if deleted is not False else {}
        page = self._backend.call(
            "secret", "list", _plain(request), order=order, take=take, cursor=cursor, meta=_plain(meta), **extra
        )
        return Page(items=[decode_secret(i) for i in page["items"]], cursor=page.get("cursor"))

    def update(self, secret_id: str, request: Mapping[str, Any] | None = None, **fields: Any) -> Secret:
        return decode_secret(self._backend.call("secret", "update", secret_id, _plain(request), **_plain(fields)))

    def delete(self, secret_id: str, *, purge: bool = False) -> Secret:
        if purge is False:
            return decode_secret(self._backend.call("secret", "delete", secret_id))
        return decode_secret(self._backend.call("secret", "delete", secret_id, purge=purge))

    def history(self, secret_id: str) -> builtins.list[Secret]:
        return [decode_secret(s) for s in self._backend.call("secret", "history", secret_id)]

    def restore(self, secret_id: str, revision: int) -> Secret:
        return decode_secret(self._backend.call("secret", "restore", secret_id, revision))

    def undelete(self, secret_id: str) -> Secret:
        return decode_secret(self._backend.call("secret", "undelete", secret_id))

    def purge(self, secret_id: str) -> Secret:
        return decode_secret(self._backend.call("secret", "purge", secret_id))


class _AgentRawRecords(RawRecords):
    """The records seam through the agent (sync, import and the CLI work on an unlocked vault too)."""

    def __init__(self, backend: AgentBackend) -> None:
        self._backend = backend

    def all(self) -> list[tuple[Secret, dict[str, Any], bool]]:
        return [(decode_secret(s), ext, bool(has)) for s, ext, has in self._backend.call("raw", "all")]

    def value_tags(self) -> dict[str, str]:
        return {str(k): str(t) for k, t in self._backend.call("raw", "value_tags").items()}

    def lookup(self, identifier: str) -> Secret:
        return decode_secret(self._backend.call("raw", "lookup", identifier))

    def fetch(self, record_id: str) -> tuple[Secret, dict[str, Any]]:
        secret, ext = self._backend.call("raw", "fetch", record_id)
        return decode_secret(secret), ext

    def fetch_for_use(self, identifier: str) -> Secret:
        return decode_secret(self._backend.call("raw", "fetch_for_use", identifier))

    def put(
        self,
        record_id: str | None,
        fields: Mapping[str, Any],
        *,
        created_at: int | None = None,
        updated_at: int | None = None,
        ext: Mapping[str, Any] | None = None,
    ) -> Secret:
        return decode_secret(
            self._backend.call(
                "raw", "put", record_id, _plain(fields), created_at=created_at, updated_at=updated_at, ext=_plain(ext)
            )
        )

    def delete(self, record_id: str, *, purge: bool = False) -> None:
        if purge is False:
            self._backend.call("raw", "delete", record_id)
        else:
            self._backend.call("raw", "delete", record_id, purge=purge)

    def setting(self, key: str, default: Any = None) -> Any:
        return self._backend.call("raw", "setting", key, default)

    def set_setting(self, key: str, value: Any) -> None:
        self._backend.call("raw", "set_setting", key, value)


def _plain(obj: Any) -> Any:
    """Mappings and sequences as JSON data (SDK request objects and tuples included)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    raise InvalidRequestError(f"{type(obj).__name__} cannot be sent to the unlock agent")


def open(
    path: str | os.PathLike[str] | None = None,
    passphrase: str | bytes | None = None,
    *,
    clock: Clock | None = None,
    lock_timeout: float = 10.0,
    _rng: _crypto.RandomSource | None = None,
    _io: IO | None = None,
    _version: int | None = None,
) -> Vault:
    """Unlock the vault at ``path`` (None: the default path).

    With a ``passphrase``, the key is derived here (Argon2id) and the file read in this
    process. Without one, the vault is used through the unlock agent (``cbk-vault unlock``),
    so an agent process never needs the passphrase in its environment; when the agent does
    not hold this vault, :class:`~vault.NotUnlockedError` says to run ``cbk-vault unlock``.
    """
    if passphrase is None:
        return open_unlocked(path)
    if _version is not None:  # the frozen v1 writer, for golden-file and test-vector generators
        return _vault.open(
            path, passphrase, clock=clock, lock_timeout=lock_timeout, _rng=_rng, _io=_io, _version=_version
        )
    return _vault.open(path, passphrase, clock=clock, lock_timeout=lock_timeout, _rng=_rng, _io=_io)


def open_unlocked(path: str | os.PathLike[str] | None = None, *, sock_path: Path | None = None) -> Vault:
    """The vault at ``path`` through the unlock agent; :class:`~vault.NotUnlockedError` when it is not unlocked."""
    target = resolve_path(path)
    return Vault(AgentBackend(target, sock_path))
