"""The one error tree of cbk-vault.

Every error the package raises on purpose is a :class:`VaultError`. Each carries a
stable ``code`` (the ChatBotKit cloud's code where one applies) and a message that
never contains a secret value, passphrase or key: messages name fields, ids and
limits, never contents.

::

    VaultError                          code
    ├── NotFoundError (KeyError)        NOT_FOUND           unknown id, @alias or (name)
    ├── InvalidRequestError (ValueError) BAD_REQUEST        bad field, type, size or request
    ├── ConflictError                   CONFLICT            duplicate alias, cloud rule broken
    │   └── MintRefusedError            NOT_MINTABLE, ...   mint refused (the cloud's {error, message} shape)
    ├── WrongPassphraseError            WRONG_PASSPHRASE    the passphrase does not unlock the vault
    ├── NotUnlockedError                NOT_UNLOCKED        no passphrase, and the unlock agent does not hold it
    ├── CorruptVaultError               VAULT_CORRUPT       damaged or tampered file
    │   ├── UnsupportedVersionError     UNSUPPORTED_VERSION a format version this build cannot read
    │   └── KdfParamsError              KDF_PARAMS          key-derivation cost outside the caps
    ├── VaultExistsError                VAULT_EXISTS        init() over an existing file
    ├── VaultNotFoundError              VAULT_NOT_FOUND     open() of a missing file
    ├── InsecureFileError               INSECURE_FILE       symlinked, foreign-owned or writable by others
    ├── LockTimeoutError (TimeoutError) LOCKED              another process held the lock too long
    ├── StorageError                    IO_ERROR            the disk failed (ENOSPC, EIO, ...)
    ├── MissingDependencyError (ImportError) MISSING_DEPENDENCY an optional extra is not installed
    ├── RemoteError                     the cloud's code    the ChatBotKit cloud refused or failed (sync)
    │   ├── RemoteAuthError             NOT_AUTHENTICATED   401, or no token at all
    │   ├── RemoteForbiddenError        NOT_AUTHORIZED      403
    │   ├── RemoteNotFoundError (KeyError) NOT_FOUND        404
    │   ├── RemoteUnavailableError      UNAVAILABLE         retries and time budget used up, network down
    │   └── RemoteProtocolError         BAD_RESPONSE        a response that breaks the API's shape
    └── VaultClosedError                VAULT_CLOSED        use after close()
        └── KeyChangedError             KEY_CHANGED         another process re-keyed the vault: open it again

``NotFoundError`` is also a ``KeyError`` and ``InvalidRequestError`` also a
``ValueError``, so code written against the builtins keeps working. Foreign
errors (``OSError``, decoder errors) are translated in one place each, with
``raise ... from``; nothing else escapes the public API.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ConflictError",
    "CorruptVaultError",
    "InsecureFileError",
    "InvalidRequestError",
    "KdfParamsError",
    "KeyChangedError",
    "MintRefusedError",
    "MissingDependencyError",
    "LockTimeoutError",
    "NotFoundError",
    "NotUnlockedError",
    "RemoteAuthError",
    "RemoteError",
    "RemoteForbiddenError",
    "RemoteNotFoundError",
    "RemoteProtocolError",
    "RemoteUnavailableError",
    "StorageError",
    "UnsupportedVersionError",
    "VaultClosedError",
    "VaultError",
    "VaultExistsError",
    "VaultNotFoundError",
    "WrongPassphraseError",
]


class VaultError(Exception):
    """Root of every error cbk-vault raises. ``code`` is stable; ``message`` is for people."""

    code: str = "VAULT_ERROR"
    #: The HTTP status the ChatBotKit cloud (and the local stand-in) answers with.
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"

    def to_dict(self) -> dict[str, str]:
        """The cloud's error body: ``{"message": ..., "code": ...}``."""
        return {"message": self.message, "code": self.code}


class NotFoundError(VaultError, KeyError):
    code = "NOT_FOUND"
    status = 404

    # KeyError quotes its argument in str(); keep the plain message instead.
    __str__ = VaultError.__str__


class InvalidRequestError(VaultError, ValueError):
    code = "BAD_REQUEST"
    status = 400


class ConflictError(VaultError):
    code = "CONFLICT"
    status = 409


class WrongPassphraseError(VaultError):
    code = "WRONG_PASSPHRASE"
    status = 401


class CorruptVaultError(VaultError):
    code = "VAULT_CORRUPT"


class UnsupportedVersionError(CorruptVaultError):
    code = "UNSUPPORTED_VERSION"


class KdfParamsError(CorruptVaultError):
    code = "KDF_PARAMS"


class VaultExistsError(VaultError):
    code = "VAULT_EXISTS"
    status = 409


class VaultNotFoundError(VaultError):
    code = "VAULT_NOT_FOUND"
    status = 404


class InsecureFileError(VaultError):
    code = "INSECURE_FILE"


class LockTimeoutError(VaultError, TimeoutError):
    code = "LOCKED"
    status = 503


class StorageError(VaultError):
    """The operating system failed a read or write. ``errno`` is kept; the vault on disk is unchanged."""

    code = "IO_ERROR"

    def __init__(self, message: str, *, errno: int | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.errno = errno


class VaultClosedError(VaultError):
    code = "VAULT_CLOSED"


class NotUnlockedError(VaultError):
    """``vault.open(path)`` without a passphrase, and the unlock agent does not hold this vault.

    Run ``cbk-vault unlock PATH`` first, or pass the passphrase.
    """

    code = "NOT_UNLOCKED"
    status = 401


class KeyChangedError(VaultClosedError):
    """The vault was re-keyed (``change_passphrase(..., rekey=True)``) since this handle unlocked it.

    The handle's keys no longer open the file; it is closed. Open the vault again with the
    new passphrase.
    """

    code = "KEY_CHANGED"


class MintRefusedError(ConflictError):
    """The cloud's mint refusal: HTTP 409 with ``{"error": ..., "message": ..., "url"?: ...}``.

    ``error`` is ``not_mintable`` or ``authorization_required``; ``code`` is the same word in
    upper case (the Python SDK reports ``AUTHORIZATION_REQUIRED``).
    """

    def __init__(self, error: str, message: str, *, url: str | None = None) -> None:
        super().__init__(message, code=error.upper())
        self.error = error
        self.url = url

    def to_dict(self) -> dict[str, str]:
        """The mint route's body, which has ``error`` instead of ``code``."""
        out = {"error": self.error, "message": self.message}
        if self.url is not None:
            out["url"] = self.url
        return out


class MissingDependencyError(VaultError, ImportError):
    """An optional extra is needed (for example ``pip install 'cbk-vault[jwt]'`` for jwt minting)."""

    code = "MISSING_DEPENDENCY"
    status = 501

    __str__ = VaultError.__str__


class RemoteError(VaultError):
    """The ChatBotKit cloud refused or failed a request. ``status`` is the HTTP status (0: none)."""

    code = "REMOTE_ERROR"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        if status is not None:
            self.status = status


class RemoteAuthError(RemoteError):
    code = "NOT_AUTHENTICATED"
    status = 401


class RemoteForbiddenError(RemoteError):
    code = "NOT_AUTHORIZED"
    status = 403


class RemoteNotFoundError(RemoteError, KeyError):
    code = "NOT_FOUND"
    status = 404
    __str__ = VaultError.__str__


class RemoteUnavailableError(RemoteError):
    code = "UNAVAILABLE"
    status = 503


class RemoteProtocolError(RemoteError):
    code = "BAD_RESPONSE"
    status = 502


def error_for_code(code: str, message: str) -> VaultError:
    """The VaultError subclass whose ``code`` is ``code`` (a plain VaultError with that code when none is).

    Errors that crossed a process boundary (the unlock agent, a JSONL error line) come back as
    the class the caller's ``except`` clauses name. The Remote* branch is left out: its codes
    repeat the vault's own (NOT_FOUND) for errors of the cloud, which never cross such a boundary.
    """
    cls = _BY_CODE.get(code)
    if cls is None:
        return VaultError(message, code=code or None)
    return cls(message)


def _by_code() -> dict[str, type[VaultError]]:
    found: dict[str, type[VaultError]] = {}
    pending: list[type[VaultError]] = [VaultError]
    while pending:
        cls = pending.pop()
        if cls in (RemoteError, MintRefusedError) or cls.__module__ != __name__:
            continue
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls):
            found.setdefault(cls.code, cls)
    return found


_BY_CODE: Final = _by_code()
