"""A `keyring <https://pypi.org/project/keyring/>`_ backend that keeps passwords in a cbk-vault.

Programs that already call ``keyring.get_password(service, username)`` (pip, twine, the
GitHub and cloud CLIs' Python helpers, your own code) then read and write the vault::

    import keyring
    from vault.keyring import VaultKeyring

    keyring.set_keyring(VaultKeyring())          # or PYTHON_KEYRING_BACKEND=vault.keyring.VaultKeyring
    keyring.set_password("pypi", "alice", "pypi-AgEI...")
    keyring.get_password("pypi", "alice")

**The mapping.** A (service, username) pair is one ``basic`` secret:

* ``meta`` ``{"keyring": {"service": SERVICE, "username": USERNAME}}``: the key the backend
  finds it by, compared exactly (case and all);
* ``value`` the basic JSON form ``{"username": USERNAME, "password": PASSWORD}``, so
  ``cbk://(SERVICE)/password`` and ``Secret.credentials()`` read it too;
* ``name`` SERVICE (cut to 1024 characters), no alias, kind ``shared``.

``set_password`` updates that secret's value, or creates it; ``delete_password`` deletes
every secret with that key (``PasswordDeleteError`` when there is none);
``get_credential(service, None)`` gives the oldest credential of the service. A
secret you make yourself with that ``meta`` is found the same way; one of another type
gives its value as the password.

**Choosing it.** Its priority is negative, so keyring never picks it, nor chains it behind
the system keyring, unless you ask: ``keyring.set_keyring(VaultKeyring())``,
``PYTHON_KEYRING_BACKEND=vault.keyring.VaultKeyring``, or ``default-keyring =
vault.keyring.VaultKeyring`` in ``keyringrc.cfg``. It is registered under the
``keyring.backends`` entry point, so ``keyring --list-backends`` shows it.

**Unlocking.** Each call opens the vault (``path``, settable as ``KEYRING_PROPERTY_PATH``;
else ``$CBK_VAULT_PATH``; else the default vault) and closes it again: through the unlock
agent if it holds the vault, else with ``$CBK_VAULT_PASSPHRASE``. It never prompts: a vault
neither can open raises ``keyring.errors.KeyringLocked``, a missing vault
``keyring.errors.NoKeyringError``. Other vault errors become ``PasswordSetError``,
``PasswordDeleteError`` or ``KeyringError``, with the vault error as the cause. For tests,
``VaultKeyring(vault=v)`` works on an open handle (for example the ``cbk_vault`` fixture)
and leaves it open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from ._accesslog import surface
from ._credentials import parse_basic
from ._format import MAX_NAME
from ._records import Secret
from ._unattended import PathArg, open_unattended
from ._vault import Vault, raw_records
from .errors import MissingDependencyError, NotUnlockedError, VaultError, VaultNotFoundError, WrongPassphraseError

try:
    from keyring import credentials as _kr_credentials
    from keyring import errors as _kr_errors
    from keyring.backend import KeyringBackend
    from keyring.compat import properties as _kr_properties
except ImportError:  # pragma: no cover - the module is only imported where keyring is installed
    raise MissingDependencyError("the keyring backend needs keyring: pip install 'cbk-vault[keyring]'") from None

__all__ = ["META_KEY", "VaultKeyring"]

#: The meta key under which a secret records the (service, username) it stands for.
META_KEY: Final = "keyring"


def _mark(secret: Secret) -> tuple[str, str] | None:
    """The (service, username) a secret stands for, or None if it is not a keyring credential."""
    found = (secret.meta or {}).get(META_KEY)
    if type(found) is not dict:
        return None
    service, username = found.get("service"), found.get("username")
    if type(service) is not str or type(username) is not str:
        return None
    return service, username


def _candidates(v: Vault, service: str) -> Iterator[Secret]:
    """Secrets that may stand for ``service`` (metadata only), oldest first."""
    if service in ("true", "false"):
        # The list filter reads these two words as booleans (the cloud's query rule): scan instead.
        yield from sorted((s for s, _ext, _has in raw_records(v).all()), key=lambda s: (s.created_at, s.id))
        return
    cursor: str | None = None
    while True:
        page = v.secret.list(order="asc", take=100, cursor=cursor, meta={f"{META_KEY}.service": service})
        if not page.items:
            return
        yield from page.items
        cursor = page.cursor


def _find(v: Vault, service: str, username: str | None) -> list[Secret]:
    out = []
    for secret in _candidates(v, service):
        mark = _mark(secret)
        if mark is not None and mark[0] == service and (username is None or mark[1] == username):
            out.append(secret)
    return out


def _password(secret: Secret) -> str | None:
    """The password a fetched keyring secret holds (None: it holds no value)."""
    if secret.value is None:
        return None
    if secret.type != "basic":
        return secret.value
    creds = parse_basic(secret.value)
    if creds is None:
        raise _kr_errors.KeyringError(f"secret {secret.id} holds a basic value in no accepted form")
    return creds.password


class VaultKeyring(KeyringBackend):
    """keyring's backend interface over a cbk-vault (see the module docstring for the mapping).

    ``VaultKeyring(path=None)`` opens the vault at ``path`` for each call; ``vault=v`` uses
    an open handle instead (tests). Never prompts.
    """

    #: The vault file; None: ``$CBK_VAULT_PATH``, else the default vault. ``KEYRING_PROPERTY_PATH`` sets it.
    path: PathArg = None

    def __init__(self, path: PathArg = None, *, vault: Vault | None = None) -> None:
        # Applies KEYRING_PROPERTY_* (so KEYRING_PROPERTY_PATH), as every backend does; keyring leaves it untyped.
        super().__init__()  # type: ignore[no-untyped-call]
        if path is not None:
            self.path = path
        self._handle = vault

    @_kr_properties.classproperty
    def priority(cls) -> float:
        # Below fail.Keyring (0) and the chainer's cut-off (> 0): chosen only when configured.
        return -1

    @_kr_properties.classproperty
    def name(cls) -> str:
        return "cbk-vault"

    def __repr__(self) -> str:
        where = "an open vault" if self._handle is not None else str(self.path or "the default vault")
        return f"<VaultKeyring over {where}>"

    @contextmanager
    def _opened(self) -> Iterator[Vault]:
        if self._handle is not None:
            yield self._handle
            return
        try:
            v = open_unattended(self.path)
        except (NotUnlockedError, WrongPassphraseError) as exc:
            raise _kr_errors.KeyringLocked(str(exc)) from exc
        except VaultNotFoundError as exc:
            raise _kr_errors.NoKeyringError(str(exc)) from exc
        with v:
            yield v

    def get_password(self, service: str, username: str) -> str | None:
        """The password stored for (service, username), or None."""
        try:
            with self._opened() as v, surface("keyring"):
                found = _find(v, service, username)
                return _password(v.secret.fetch(found[0].id)) if found else None
        except VaultError as exc:
            raise _kr_errors.KeyringError(str(exc)) from exc

    def set_password(self, service: str, username: str, password: str) -> None:
        """Store the password as a ``basic`` secret (updated in place when one exists)."""
        value = json.dumps({"username": username, "password": password}, ensure_ascii=False)
        try:
            with self._opened() as v, v.batch():
                # One writer lock around find-then-write: two processes cannot both create it.
                found = _find(v, service, username)
                if found:
                    v.secret.update(found[0].id, type="basic", value=value)
                else:
                    meta: dict[str, Any] = {META_KEY: {"service": service, "username": username}}
                    v.secret.create(name=service[:MAX_NAME], type="basic", value=value, meta=meta)
        except VaultError as exc:
            raise _kr_errors.PasswordSetError(str(exc)) from exc

    def delete_password(self, service: str, username: str) -> None:
        """Delete the password of (service, username); ``PasswordDeleteError`` when there is none."""
        try:
            with self._opened() as v, v.batch():
                found = _find(v, service, username)
                if not found:
                    raise _kr_errors.PasswordDeleteError("Password not found")
                for secret in found:
                    v.secret.delete(secret.id)
        except VaultError as exc:
            raise _kr_errors.PasswordDeleteError(str(exc)) from exc

    def get_credential(self, service: str, username: str | None) -> _kr_credentials.Credential | None:
        """The credential of (service, username); with ``username=None``, the oldest of the service."""
        try:
            with self._opened() as v, surface("keyring"):
                for secret in _find(v, service, username):
                    password = _password(v.secret.fetch(secret.id))
                    mark = _mark(secret)
                    if password is not None and mark is not None:
                        return _kr_credentials.SimpleCredential(mark[1], password)
        except VaultError as exc:
            raise _kr_errors.KeyringError(str(exc)) from exc
        return None
