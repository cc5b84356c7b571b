"""``cbk-vault sync [push|pull|both] [--dry-run] [--base-url URL] [--prefer local|remote] [--concurrency N] [--json]``.

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
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from .._vault import raw_records
from ..errors import InvalidRequestError, NotFoundError, RemoteAuthError
from ..sync._client import DEFAULT_BASE_URL, TOKEN_ALIAS, TOKEN_ENV, ChatBotKitRemote
from ..sync._run import Change, SyncReport, sync
from ._commands import resolve_ref
from ._exit_codes import EXIT_UNSETTLED
from ._terminal import UsageError, for_terminal

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
    "link-shared": "another local secret is linked to the same cloud secret (delete or re-create one of them here)",
}


Side = Literal["local", "remote"]


def _prefer_for(args: argparse.Namespace, v: Vault) -> dict[str, Side | None]:
    """--prefer-for SECRET=SIDE as {id: side}. SECRET is resolved in the vault; an id the vault does not
    have is taken as a cloud id (a secret deleted here has only that one, as the conflict shows it)."""
    out: dict[str, Side | None] = {}
    for item in getattr(args, "prefer_for", None) or []:
        secret, sep, side = item.rpartition("=")
        if not sep or not secret or side not in ("local", "remote"):
            raise UsageError("--prefer-for must be SECRET=local or SECRET=remote")
        try:
            key = resolve_ref(v, secret)
            if key.startswith("@") or key.startswith("("):
                key = raw_records(v).lookup(key).id
        except NotFoundError:
            key = secret
        out[key] = "local" if side == "local" else "remote"
    return out


def _option_names(exc: InvalidRequestError | RemoteAuthError, args: argparse.Namespace) -> None:
    """Reword a library message that names Python arguments (``base_url``, ``token=``) in the CLI's terms."""
    if exc.message.startswith("base_url"):
        where = "--base-url" if args.base_url else f"${BASE_URL_ENV}"
        exc.message = where + exc.message[len("base_url") :]
    elif exc.message.startswith("no ChatBotKit API token"):
        exc.message = (
            f"no ChatBotKit API token: set ${TOKEN_ENV}, or store it in the vault with "
            f"cbk-vault create --name 'ChatBotKit API token' --alias {TOKEN_ALIAS}"
        )
    else:
        exc.message = exc.message.replace("(check the API token: argument, ", "(check the API token: ")
    exc.args = (exc.message,)


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

    quiet_until = [0.0]
    announce_lock = threading.Lock()

    def retrying(delay: float) -> None:
        # The client waits before each retry: say so, or an unreachable host looks like a hang.
        # Several workers may meet the same 429 at once: one line for them all.
        with announce_lock:
            now = time.monotonic()
            announce, quiet_until[0] = now >= quiet_until[0], max(quiet_until[0], now + delay)
        if announce and not args.json:
            clear = "\r\033[K" if show_progress else ""
            err.write(f"{clear}sync: no answer from {_safe(base_url)} yet (or it is busy); retrying in {delay:.2g} s\n")
            err.flush()
        time.sleep(delay)

    with open_vault() as v:
        prefer_for = _prefer_for(args, v)
        try:
            remote = ChatBotKitRemote(base_url=base_url, vault=v, sleep=retrying)
        except (InvalidRequestError, RemoteAuthError) as exc:
            _option_names(exc, args)
            raise
        with remote:
            try:
                report = sync(
                    v,
                    remote,
                    direction=args.direction,
                    dry_run=args.dry_run,
                    prefer=args.prefer,
                    prefer_for=prefer_for,
                    progress=progress if show_progress else None,
                    concurrency=args.concurrency,
                )
            except RemoteAuthError as exc:
                _option_names(exc, args)
                raise
        valueless = _pulled_without_value(v, report)
    if args.json:
        doc: dict[str, Any] = report.to_dict()
        doc["pulledWithoutValue"] = [c.local_id or c.remote_id for c in valueless]
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        out.write(format_report(report, pulled_without_value=valueless))
        for line in _cannot_settle(report, args.prefer, prefer_for):
            err.write(for_terminal(line) + "\n")
        matched = {key for c in report.conflicts for key in (c.local_id, c.remote_id) if key}
        for key in prefer_for:
            if key not in matched:
                err.write(f"cbk-vault: note: --prefer-for {_safe(key)}: that secret has no conflict\n")
    return 0 if report.ok else EXIT_UNSETTLED


def _pulled_without_value(v: Vault, report: SyncReport) -> list[Change]:
    """The pulled secrets that hold no value here (the cloud never sends one): they need one set by hand."""
    if report.dry_run:
        return [c for c in report.pulled if c.local_id is None]  # a new pull arrives without a value
    has_value = {sec.id: held for sec, _, held in raw_records(v).all()}
    return [c for c in report.pulled if c.local_id is not None and not has_value.get(c.local_id, True)]


def _cannot_settle(report: SyncReport, prefer: Side | None, prefer_for: dict[str, Side | None]) -> list[str]:
    """Why a side asked for could not win: push never writes to the vault, pull never to the cloud."""
    lines: list[str] = []
    for c in report.conflicts:
        if c.resolution is not None:
            continue
        wanted = next((prefer_for[k] for k in (c.local_id, c.remote_id) if k and k in prefer_for), prefer)
        if wanted == "remote" and report.direction == "push":
            lines.append(
                f"cbk-vault: note: {c.name or c.local_id or c.remote_id}: sync push never writes to the vault, so the "
                "cloud cannot win it there; run `cbk-vault sync --prefer remote` (or `sync pull --prefer remote`)"
            )
        elif wanted == "local" and report.direction == "pull":
            lines.append(
                f"cbk-vault: note: {c.name or c.local_id or c.remote_id}: sync pull never writes to the cloud, so the "
                "vault cannot win it there; run `cbk-vault sync --prefer local` (or `sync push --prefer local`)"
            )
    return lines


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


def format_report(report: SyncReport, *, pulled_without_value: list[Change] | None = None) -> str:
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
            differ = f"; differs in: {', '.join(c.fields)}" if c.fields else ""
            if c.reason == "both-changed" and not c.fields:
                differ = "; no field differs that the cloud shows (its value may have changed)"
            lines.append(f"    ! {_safe(c.name) or '(no name)'} [{ids}]: {_REASONS[c.reason]}{differ}; {how}")
        if any(c.resolution is None for c in report.conflicts):
            lines.append(
                "    (rerun with --prefer local or --prefer remote to settle them all, "
                "or --prefer-for SECRET=local|remote one by one)"
            )
    if pulled_without_value:
        verb = "would arrive" if report.dry_run else "arrived"
        lines.append(
            f"  without a value: {len(pulled_without_value)} ({verb} from the cloud, which never sends values; "
            "`run` leaves them out until you set one)"
        )
        for change in pulled_without_value:
            lid = change.local_id
            how = f"cbk-vault update {lid or 'ID'} --value-prompt" + ("" if lid else " (once it is pulled)")
            lines.append(f"    ? {_label(change)}: {how}")
    if report.errors:
        lines.append(f"  errors: {len(report.errors)}")
        for e in report.errors:
            ids = _ids(e.local_id, e.remote_id, sep=" / ")
            name = _safe(e.name) or "(no name)"
            lines.append(f"    E {e.action} {name} [{ids}]: {_safe(e.message)} [{_safe(e.code)}]")
    return "\n".join(lines) + "\n"
