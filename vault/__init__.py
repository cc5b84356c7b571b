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
    from ._accesslog import AccessRecord, access_context
    from ._crypto import KdfParams
    from ._dotenv import load_env
    from ._history import Retention
    from ._records import Page, Secret
    from ._refs import (
        SecretRef,
        inject_refs,
        parse_ref,
        read,
        ref_resolver,
        resolve_refs,
    )
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


del TYPE_CHECKING  # a name for type checkers only: not part of the public API

__version__ = "0.1.0"

__all__ = [
    "AccessRecord",
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
    "Retention",
    "Secret",
    "SecretClient",
    "SecretRef",
    "StorageError",
    "UnsupportedVersionError",
    "Vault",
    "VaultClosedError",
    "VaultError",
    "VaultExistsError",
    "VaultNotFoundError",
    "WrongPassphraseError",
    "__version__",
    "access_context",
    "default_path",
    "init",
    "inject_refs",
    "load_env",
    "open",
    "parse_ref",
    "read",
    "ref_resolver",
    "resolve_refs",
]

#: Every public name but ``__version__``, and the module it comes from.
_LAZY = {
    "AccessRecord": "._accesslog",
    "access_context": "._accesslog",
    "KdfParams": "._crypto",
    "load_env": "._dotenv",
    "Retention": "._history",
    "Page": "._records",
    "Secret": "._records",
    "SecretRef": "._refs",
    "inject_refs": "._refs",
    "parse_ref": "._refs",
    "read": "._refs",
    "ref_resolver": "._refs",
    "resolve_refs": "._refs",
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
