"""cbk-vault: a local, encrypted vault for AI-agent credentials with ChatBotKit's secret API.

::

    import vault

    with vault.init("agent.cbkv", "correct horse battery staple") as v:
        s = v.secret.create(name="PaymentAPIKey", type="bearer", value="sk_live_...")
        v.secret.fetch(s.id).value

The public API is exactly the names in ``__all__``; everything else is private.
"""

from __future__ import annotations

from ._accesslog import AccessRecord, access_context
from ._crypto import KdfParams
from ._dotenv import load_env
from ._history import Retention
from ._records import Page, Secret
from ._refs import SecretRef, inject_refs, parse_ref, read, ref_resolver, resolve_refs
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
