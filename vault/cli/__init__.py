"""The ``cbk-vault`` command line: :func:`main` parses argv, runs one command and returns its exit status.

The package, one concept per module:

* ``_main``: everything :func:`main` does after the one check it makes itself (``--version``);
* ``_parser``: the grammar (every command, option and help text) as data, and the argparse
  parser built from it;
* ``_exit_codes``: the exit statuses, and the table ``--help`` prints;
* ``_context``: the :class:`~._context.Context` every command shares (options, streams,
  opening the vault) and secret references;
* ``_fetch``: ``fetch``, which reveals a value the unlock agent holds without the engine;
* ``_commands``: the other vault commands (init, passwd, unlock, lock, status, create, list,
  update, delete, run, export, import);
* ``_terminal``: the terminal and file edges: passphrase sources, prompts, values, private
  output files, JSON in and out, process hardening;
* ``_formats``: the export and import formats (JSON, dotenv, KeePass);
* ``_completion``: bash, zsh and fish completion scripts, written from the grammar;
* ``_demo``: ``cbk-vault demo``;
* ``_serve``, ``_sync``: ``serve`` and ``sync``, imported only when one of them runs, so
  ``import vault.cli`` never loads http.server or httpx.

Start-up cost is part of the interface (``export TOKEN="$(cbk-vault fetch @x --reveal)"`` runs
in scripts and agents' loops). ``import vault.cli`` imports nothing: ``cbk-vault --version``
prints without argparse; every other command line loads the grammar, the terminal edge and the
exit codes (``_main``), and then only the module of the command that runs (``_main._RUN``), so
``--help`` imports no command module and an agent-served ``fetch --reveal`` no engine.
"""

from __future__ import annotations

import importlib
import sys

# Nothing else at the top: see the module docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._exit_codes import EXIT_CODES, exit_code_for

__all__ = ["EXIT_CODES", "exit_code_for", "main"]


def harden_process() -> None:
    """:func:`._terminal.harden_process`, looked up here by :func:`main` (tests switch it off in-process)."""
    from ._terminal import harden_process as harden

    harden()


def _print_version() -> int:
    """What argparse's ``version`` action does for ``cbk-vault --version``, without argparse or the grammar."""
    from .. import __version__

    try:  # noqa: SIM105 - contextlib.suppress would import contextlib for this one line
        sys.stdout.write(f"cbk-vault {__version__}\n")
    except (AttributeError, OSError):
        pass  # argparse ignores a closed stdout here too
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cbk-vault`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["--version"]:
        # Prints a constant: nothing to harden, no grammar to load.
        return _print_version()
    harden_process()
    from ._main import run

    return run(arguments)


def __getattr__(name: str) -> object:
    # The exit-status table, documented in --help: imported when asked for.
    if name in ("EXIT_CODES", "exit_code_for"):
        return getattr(importlib.import_module("vault.cli._exit_codes"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
