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
    ├── WrongPassphraseError            WRONG_PASSPHRASE    the passphrase does not unlock the vault
    ├── CorruptVaultError               VAULT_CORRUPT       damaged or tampered file
    │   ├── UnsupportedVersionError     UNSUPPORTED_VERSION a format version this build cannot read
    │   └── KdfParamsError              KDF_PARAMS          key-derivation cost outside the caps
    ├── VaultExistsError                VAULT_EXISTS        init() over an existing file
    ├── VaultNotFoundError              VAULT_NOT_FOUND     open() of a missing file
    ├── InsecureFileError               INSECURE_FILE       symlinked, foreign-owned or writable by others
    ├── LockTimeoutError (TimeoutError) LOCKED              another process held the lock too long
    ├── StorageError                    IO_ERROR            the disk failed (ENOSPC, EIO, ...)
    └── VaultClosedError                VAULT_CLOSED        use after close()

``NotFoundError`` is also a ``KeyError`` and ``InvalidRequestError`` also a
``ValueError``, so code written against the builtins keeps working. Foreign
errors (``OSError``, decoder errors) are translated in one place each, with
``raise ... from``; nothing else escapes the public API.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "CorruptVaultError",
    "InsecureFileError",
    "InvalidRequestError",
    "KdfParamsError",
    "LockTimeoutError",
    "NotFoundError",
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
