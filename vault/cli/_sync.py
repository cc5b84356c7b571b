"""``cbk-vault sync [push|pull|both] [--dry-run] [--base-url URL] [--prefer local|remote] [--json]``.

The options are in ``_parser``; the CLI imports this module (and so httpx) only when ``sync``
runs. Nothing here reads a passphrase or a token from argv. Exit statuses, as in
``cbk-vault --help``: 0 done and clean; 9 (``EXIT_UNSETTLED``) done, but with conflicts left
or per-secret errors; a VaultError (bad token, cloud unreachable) propagates to the CLI's
handler (8 for the cloud's errors).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TextIO

from ..sync._client import DEFAULT_BASE_URL, ChatBotKitRemote
from ..sync._run import Change, SyncReport, sync
from ._exit_codes import EXIT_UNSETTLED
from ._terminal import for_terminal

if TYPE_CHECKING:
    from .._vault import Vault

__all__ = ["BASE_URL_ENV", "format_report", "sync_command"]

#: Read for the API's base URL when --base-url is not given.
BASE_URL_ENV: Final = "CHATBOTKIT_BASE_URL"

_REASONS = {
    "both-changed": "changed in the vault and in the cloud since the last sync",
    "deleted-remotely": "deleted in the cloud, but changed here (or its value exists only here)",
    "deleted-locally": "deleted here, but changed in the cloud (or it cannot be told)",
    "alias-taken": "its alias names a different secret on the other side",
    "kind-changed": "the cloud changed its kind (personal/shared) while it holds a value here",
}


def sync_command(args: argparse.Namespace, open_vault: Callable[[], Vault]) -> int:
    """Run ``cbk-vault sync`` on the vault ``open_vault`` unlocks; print the report; return the exit status."""
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    base_url = args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    show_progress = not args.json and err.isatty()

    def progress(done: int, total: int, op: str, name: str) -> None:
        if op == "done":
            err.write("\r\033[K")
        else:
            err.write(f"\r\033[Ksync: {done + 1}/{total} {op} {_safe(name[:40])}")
        err.flush()

    with open_vault() as v, ChatBotKitRemote(base_url=base_url, vault=v) as remote:
        report = sync(
            v,
            remote,
            direction=args.direction,
            dry_run=args.dry_run,
            prefer=args.prefer,
            progress=progress if show_progress else None,
        )
    if args.json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(format_report(report))
    return 0 if report.ok else EXIT_UNSETTLED


def _safe(text: str) -> str:
    """Names, ids and messages come from the cloud: a control character (ESC, C1 CSI, CR, BEL...)
    or a bidi override would let the cloud rewrite the user's terminal, so they are shown escaped
    (the CLI's one rule, :func:`~._terminal.for_terminal`)."""
    return for_terminal(text)


def _ids(*ids: str | None, sep: str) -> str:
    return _safe(sep.join(i for i in ids if i))


def _label(c: Change) -> str:
    name = _safe(c.name) or "(no name)"
    return f"{name} [{_ids(c.local_id, c.remote_id, sep=' -> ')}]"


def format_report(report: SyncReport) -> str:
    """Human text: a plan for a dry run, a result otherwise. Names and ids only, never values."""
    verb = "would" if report.dry_run else ""
    sections: list[tuple[str, str, tuple[Change, ...]]] = [
        ("+", "create in the cloud" if verb else "created in the cloud", report.created_remote),
        ("~", "update in the cloud" if verb else "updated in the cloud", report.updated_remote),
        ("-", "delete in the cloud" if verb else "deleted in the cloud", report.deleted_remote),
        ("<", "pull into the vault" if verb else "pulled into the vault", report.pulled),
        ("x", "delete in the vault" if verb else "deleted in the vault", report.deleted_local),
    ]
    lines: list[str] = []
    head = f"sync {report.direction}"
    lines.append(f"{head}: dry run, nothing was changed. Plan:" if report.dry_run else f"{head}: done.")
    any_change = False
    for mark, title, items in sections:
        if items:
            any_change = True
            lines.append(f"  {title}: {len(items)}")
            lines.extend(f"    {mark} {_label(c)}" for c in items)
    if not any_change:
        lines.append("  nothing to do" if report.dry_run else "  nothing changed")
    if report.conflicts:
        lines.append(f"  conflicts: {len(report.conflicts)}")
        for c in report.conflicts:
            ids = _ids(c.local_id, c.remote_id, sep=" / ")
            how = f"settled: {c.resolution} wins" if c.resolution else "left alone on both sides"
            lines.append(f"    ! {_safe(c.name) or '(no name)'} [{ids}]: {_REASONS[c.reason]}; {how}")
        if any(c.resolution is None for c in report.conflicts):
            lines.append("    (rerun with --prefer local or --prefer remote to settle them)")
    if report.errors:
        lines.append(f"  errors: {len(report.errors)}")
        for e in report.errors:
            ids = _ids(e.local_id, e.remote_id, sep=" / ")
            name = _safe(e.name) or "(no name)"
            lines.append(f"    E {e.action} {name} [{ids}]: {_safe(e.message)} [{_safe(e.code)}]")
    return "\n".join(lines) + "\n"
