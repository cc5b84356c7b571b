"""cbk-vault: a local, encrypted vault for AI-agent credentials with ChatBotKit's secret API.

::

    import vault

    with vault.init("agent.cbkv", "correct horse battery staple") as v:
        s = v.secret.create(name="PaymentAPIKey", type="bearer", value="sk_live_...")
        v.secret.fetch(s.id).value

The public API is exactly the names in ``__all__``; everything else is private.
"""

from __future__ import annotations

# Nothing is imported here: ``import vault`` costs nothing, and the command line (which imports
# only the modules a command needs) starts as fast as the interpreter. The public names are
# imported on first use (PEP 562 ``__getattr__`` below); type checkers see them here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._crypto import KdfParams
    from ._records import Page, Secret
    from ._secret_client import SecretClient
    from ._session import open
    from ._store import default_path
    from ._vault import Vault, init
    from .errors import (
        ConflictError,
        CorruptVaultError,
        InsecureFileError,
        InvalidRequestError,
        KdfParamsError,
        KeyChangedError,
        LockTimeoutError,
        MintRefusedError,
        MissingDependencyError,
        NotFoundError,
        NotUnlockedError,
        RemoteAuthError,
        RemoteError,
        RemoteForbiddenError,
        RemoteNotFoundError,
        RemoteProtocolError,
        RemoteUnavailableError,
        StorageError,
        UnsupportedVersionError,
        VaultClosedError,
        VaultError,
        VaultExistsError,
        VaultNotFoundError,
        WrongPassphraseError,
    )
del TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "CorruptVaultError",
    "InsecureFileError",
    "InvalidRequestError",
    "KdfParams",
    "KdfParamsError",
    "KeyChangedError",
    "LockTimeoutError",
    "MintRefusedError",
    "MissingDependencyError",
    "NotFoundError",
    "NotUnlockedError",
    "Page",
    "RemoteAuthError",
    "RemoteError",
    "RemoteForbiddenError",
    "RemoteNotFoundError",
    "RemoteProtocolError",
    "RemoteUnavailableError",
    "Secret",
    "SecretClient",
    "StorageError",
    "UnsupportedVersionError",
    "Vault",
    "VaultClosedError",
    "VaultError",
    "VaultExistsError",
    "VaultNotFoundError",
    "WrongPassphraseError",
    "__version__",
    "default_path",
    "init",
    "open",
]

#: Every public name but ``__version__``, and the module it comes from.
_LAZY = {
    "KdfParams": "._crypto",
    "Page": "._records",
    "Secret": "._records",
    "SecretClient": "._secret_client",
    "open": "._session",
    "default_path": "._store",
    "Vault": "._vault",
    "init": "._vault",
    "ConflictError": ".errors",
    "CorruptVaultError": ".errors",
    "InsecureFileError": ".errors",
    "InvalidRequestError": ".errors",
    "KdfParamsError": ".errors",
    "KeyChangedError": ".errors",
    "LockTimeoutError": ".errors",
    "MintRefusedError": ".errors",
    "MissingDependencyError": ".errors",
    "NotFoundError": ".errors",
    "NotUnlockedError": ".errors",
    "RemoteAuthError": ".errors",
    "RemoteError": ".errors",
    "RemoteForbiddenError": ".errors",
    "RemoteNotFoundError": ".errors",
    "RemoteProtocolError": ".errors",
    "RemoteUnavailableError": ".errors",
    "StorageError": ".errors",
    "UnsupportedVersionError": ".errors",
    "VaultClosedError": ".errors",
    "VaultError": ".errors",
    "VaultExistsError": ".errors",
    "VaultNotFoundError": ".errors",
    "WrongPassphraseError": ".errors",
}


def __getattr__(name: str) -> object:
    """Import the public API on first use of any of its names (all at once: the namespace is never half there)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    found = {attr: getattr(import_module(module, __name__), attr) for attr, module in _LAZY.items()}
    globals().update(found)
    return found[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
