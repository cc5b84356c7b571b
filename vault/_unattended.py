"""Opening a vault from library code, where no one can answer a prompt.

``vault.read``, ``vault.load_env`` and the keyring backend (``vault.keyring``) run inside
other programs: an agent at start-up, a test, a ``keyring.get_password`` call deep in a
dependency. They must never block on a terminal, so they open a vault in this order:

1. through the unlock agent (``cbk-vault unlock``), when it holds the vault: no key
   derivation, and no passphrase in this process at all;
2. with ``$CBK_VAULT_PASSPHRASE``, when it is set and not empty (meant for CI, where no
   agent runs; each open derives the key once);
3. otherwise :class:`~vault.NotUnlockedError`, which says both ways out.

The agent comes first because it costs no Argon2id run and keeps the passphrase out of the
environment. The CLI's order differs on purpose: a command line names its passphrase
source explicitly, so there the variable is an explicit choice and wins.
"""

from __future__ import annotations

import os
from typing import Final

from . import _session, _vault
from ._store import resolve_path
from .errors import NotUnlockedError, VaultNotFoundError

__all__ = ["PASSPHRASE_ENV", "PathArg", "open_unattended"]

#: The CI passphrase variable, shared with the CLI.
PASSPHRASE_ENV: Final = "CBK_VAULT_PASSPHRASE"  # noqa: S105 - a variable name, not a secret

PathArg = str | os.PathLike[str] | None


def open_unattended(path: PathArg = None) -> _vault.Vault:
    """The vault at ``path`` (None: ``$CBK_VAULT_PATH``, else the default path), opened without a prompt.

    Tries the unlock agent, then ``$CBK_VAULT_PASSPHRASE``; raises
    :class:`~vault.VaultNotFoundError` when there is no file and
    :class:`~vault.NotUnlockedError` when neither can open it.
    """
    target = resolve_path(path)
    if not target.exists():
        raise VaultNotFoundError(f"no vault at {target} (create one with: cbk-vault init)")
    try:
        return _session.open_unlocked(target)
    except NotUnlockedError:
        pass
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return _vault.open(target, passphrase)
    raise NotUnlockedError(
        f"the vault {target} is not unlocked: run `cbk-vault unlock` (or set ${PASSPHRASE_ENV} in CI); "
        "library calls never prompt"
    )
