"""``cbk-vault serve``: the offline ChatBotKit stand-in (``vault._http``) on a vault, until stopped.

The options are in ``_parser``; the CLI imports this module only when ``serve`` runs, so
``import vault.cli`` never loads ``http.server``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO, Final

from .._http import StandInServer
from .._net import is_loopback
from .._vault import Vault

__all__ = ["SERVE_TOKEN_ENV", "serve_command"]

#: Read for the token when ``--token`` is not given (argv is visible to other local users in ``ps``).
SERVE_TOKEN_ENV: Final = "CBK_VAULT_SERVE_TOKEN"  # noqa: S105 - a variable name, not a token


def serve_command(
    args: argparse.Namespace,
    open_vault: Callable[[], Vault],
    *,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run ``cbk-vault serve`` until SIGINT or SIGTERM. Returns the exit code.

    Prints ``base_url=<url>`` and ``token=<token>`` on stdout (one JSON line
    ``{"baseUrl", "token"}`` under the CLI's ``--json``; a configured token is not echoed:
    ``(configured)``), then a human line on stderr. The printed token is required, unless
    the vault is ``--ephemeral`` or ``--accept-any-token`` says otherwise. Exit 2 when asked to
    bind a non-loopback address without a configured token.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    token = args.token if args.token is not None else (os.environ.get(SERVE_TOKEN_ENV) or None)
    # Any token only where it gives nothing away: a throwaway vault, or a flag that says so.
    any_token = token is None and (args.ephemeral or args.accept_any_token)
    if args.accept_any_token and token is not None:
        err.write(f"cbk-vault serve: --accept-any-token and --token/${SERVE_TOKEN_ENV} exclude each other\n")
        return 2
    if not is_loopback(args.host) and (token is None or any_token):
        err.write(
            f"cbk-vault serve: binding {args.host} needs --token or ${SERVE_TOKEN_ENV} (any-token is loopback only)\n"
        )
        return 2
    if args.ephemeral:
        from ..testing import memory_vault

        v = memory_vault()
    else:
        v = open_vault()
    try:
        try:
            server = StandInServer(v, args.host, args.port, token, any_token=any_token, verbose=args.verbose)
        except OSError as exc:
            err.write(f"cbk-vault serve: cannot bind {args.host}:{args.port}: {exc.strerror or exc}\n")
            return 1
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            with server:
                shown = "(configured)" if token is not None else server.token
                if getattr(args, "json", False):  # the CLI's global --json
                    out.write(json.dumps({"baseUrl": server.base_url, "token": shown}) + "\n")
                else:
                    out.write(f"base_url={server.base_url}\ntoken={shown}\n")
                out.flush()
                policy = (
                    "any bearer token"
                    if any_token
                    else ("only the configured token" if token is not None else "only the token above")
                )
                err.write(
                    f"cbk-vault serve: ChatBotKit secret API for {v.path} at {server.base_url} "
                    f"({policy} is accepted); Ctrl-C to stop\n"
                )
                err.flush()
                with contextlib.suppress(KeyboardInterrupt):
                    while not stop.wait(0.5):
                        pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        v.close()
    return 0
