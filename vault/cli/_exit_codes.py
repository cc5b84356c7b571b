"""The exit statuses of ``cbk-vault``: the map from a VaultError's code, the named statuses, and the table
``--help`` prints. They sit side by side so the status a command returns and the one documented agree."""

from __future__ import annotations

from typing import Final

from ..errors import VaultError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES",
    "EXIT_HELP",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OTHER",
    "EXIT_UNSETTLED",
    "EXIT_USAGE",
    "exit_code_for",
]

#: VaultError.code -> exit status. Any other code (sync's cloud errors, a future code) exits EXIT_OTHER.
EXIT_CODES: Final[dict[str, int]] = {
    "NOT_FOUND": 1,
    "BAD_REQUEST": 2,
    "CONFLICT": 2,
    "WRONG_PASSPHRASE": 3,
    # The key this command unlocked with no longer opens the vault: unlock again.
    "KEY_CHANGED": 3,
    # Only from the library: the command line falls back to asking for the passphrase.
    "NOT_UNLOCKED": 3,
    "VAULT_CORRUPT": 4,
    "UNSUPPORTED_VERSION": 4,
    "KDF_PARAMS": 4,
    "LOCKED": 5,
    "VAULT_EXISTS": 6,
    "VAULT_NOT_FOUND": 6,
    "INSECURE_FILE": 7,
    "IO_ERROR": 7,
    # An optional extra is missing: the fix is a different invocation (pip install ...).
    "MISSING_DEPENDENCY": 2,
    # The cloud refused or failed during sync.
    "NOT_AUTHENTICATED": 8,
    "NOT_AUTHORIZED": 8,
    "UNAVAILABLE": 8,
    "BAD_RESPONSE": 8,
    "REMOTE_ERROR": 8,
    "VAULT_CLOSED": 70,
}
EXIT_USAGE: Final = 2
EXIT_OTHER: Final = 8
#: Not 3 (the wrong passphrase): sync ran, but left conflicts or per-secret errors.
EXIT_UNSETTLED: Final = 9
EXIT_INTERNAL: Final = 70
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141

EXIT_HELP: Final = """\
exit status:
  0    success
  1    not found (no such secret, or it has no value to reveal or inject)
  2    usage or bad input (bad option, field, file, ambiguous name, alias in use, Ctrl-D at a prompt)
  3    wrong passphrase (after three tries at a prompt), or the vault was re-keyed meanwhile
  4    vault damaged or tampered with, or a format this version cannot read
  5    vault locked by another process for longer than --lock-timeout
  6    vault already exists (init) or does not exist (every other command)
  7    storage error: the disk failed, or the file is unsafe (symlink, foreign owner, writable by others)
  8    any other error, e.g. from the cloud during sync (the [CODE] at the end says which)
  9    sync ran but left conflicts or per-secret errors (listed in its output)
  70   internal error (please report it, with the output of --debug)
  130  interrupted (Ctrl-C); an import in progress is rolled back
  141  stdout was closed early (e.g. piped into head)
  run returns the command's own exit status; 126/127 if it cannot be started."""


def exit_code_for(exc: VaultError) -> int:
    """The documented exit status of a vault error (see ``cbk-vault --help``)."""
    return EXIT_CODES.get(exc.code, EXIT_OTHER)
