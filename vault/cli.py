"""The ``cbk-vault`` command line."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, _demo
from .errors import VaultError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cbk-vault",
        description="A local, encrypted vault for AI-agent credentials, with ChatBotKit's secret API.",
    )
    parser.add_argument("--version", action="version", version=f"cbk-vault {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="walk through create, fetch, list, update and delete on a local vault",
        description="Walk the seed example end to end on a throwaway vault (no server, no account).",
        epilog="examples:\n  cbk-vault demo\n  cbk-vault demo --path ./demo.cbkv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--path",
        type=Path,
        help="create the demo vault here instead of a temporary directory "
        "(passphrase from CBK_VAULT_PASSPHRASE or a prompt)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            passphrase = None
            if args.path is not None:
                passphrase = os.environ.get("CBK_VAULT_PASSPHRASE") or getpass.getpass("New vault passphrase: ")
            return _demo.run(args.path, passphrase, sys.stdout)
        parser.print_help()
        return 2
    except VaultError as exc:
        if args.debug:
            raise
        print(f"cbk-vault: error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
