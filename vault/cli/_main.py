"""What ``cbk-vault`` does with its argv: parse it, run the one command it names, and map errors to exit statuses.

:func:`vault.cli.main` comes here for every command line but ``--version``. A command's
module is imported when it runs (:data:`_RUN`), not before: ``--help`` needs none of them, and
``fetch`` needs neither the engine nor the other commands.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from ..errors import VaultError
from ._exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    exit_code_for,
)
from ._parser import build_parser, global_value_options
from ._terminal import ENV_NEW_PASSPHRASE, ENV_PASSPHRASE, UsageError, dump_json, for_terminal

if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    from .._vault import Vault
    from ._context import Context

__all__ = ["run"]

_HOOKS: Final[dict[str, tuple[str, str, str]]] = {
    # command: (module, command function, pip extra that brings its dependencies)
    "serve": ("vault.cli._serve", "serve_command", "serve"),
    "sync": ("vault.cli._sync", "sync_command", "sync"),
}

#: command: (module, function) that runs it; the module is imported only when its command runs.
_RUN: Final[dict[str, tuple[str, str]]] = {
    "init": ("vault.cli._commands", "cmd_init"),
    "passwd": ("vault.cli._commands", "cmd_passwd"),
    "unlock": ("vault.cli._commands", "cmd_unlock"),
    "lock": ("vault.cli._commands", "cmd_lock"),
    "status": ("vault.cli._commands", "cmd_status"),
    "create": ("vault.cli._commands", "cmd_create"),
    "fetch": ("vault.cli._fetch", "cmd_fetch"),
    "list": ("vault.cli._commands", "cmd_list"),
    "update": ("vault.cli._commands", "cmd_update"),
    "delete": ("vault.cli._commands", "cmd_delete_any"),
    "run": ("vault.cli._commands", "cmd_run_logged"),
    "export": ("vault.cli._commands", "cmd_export_logged"),
    "import": ("vault.cli._commands", "cmd_import"),
    "read": ("vault.cli._commands", "cmd_read"),
    "inject": ("vault.cli._commands", "cmd_inject"),
    "generate": ("vault.cli._commands", "cmd_generate"),
    "find": ("vault.cli._commands", "cmd_find"),
    "history": ("vault.cli._commands", "cmd_history"),
    "restore": ("vault.cli._commands", "cmd_restore"),
    "trash": ("vault.cli._commands", "cmd_trash"),
    "log": ("vault.cli._commands", "cmd_log"),
    "completion": ("vault.cli._completion", "completion_command"),
    "demo": ("vault.cli._demo", "demo_command"),
}


def _handler(name: str) -> Callable[[Context, argparse.Namespace], int] | None:
    found = _RUN.get(name)
    if found is None:
        return None
    handler: Callable[[Context, argparse.Namespace], int] = getattr(importlib.import_module(found[0]), found[1])
    return handler


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, found without parsing (so only a hook that runs is imported)."""
    skip = False
    value_options = global_value_options()
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--":  # noqa: S105 - an argv token, not a password
            return None
        if token in value_options:
            skip = True
            continue
        if token.startswith("-"):
            continue
        return token
    return None


def _load_hook(name: str) -> tuple[ModuleType | None, str]:
    """The hook's module, or None and the line that says why it cannot be loaded."""
    module_name, _, extra = _HOOKS[name]
    try:
        return importlib.import_module(module_name), ""
    except ImportError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + ".") or not missing:
            return None, f"`{name}` is not available in this build of cbk-vault ({module_name} is missing)"
        return None, f"`{name}` needs the optional package {missing!r}: pip install 'cbk-vault[{extra}]'"


def _report(message: str, code: str, status: int, *, as_json: bool) -> int:
    if as_json:
        line = dump_json({"message": message, "code": code, "exitCode": status})
        print(line, file=sys.stderr)
    else:
        # A message may quote a path, a name or a server's text: escaped, it stays one harmless line.
        print(for_terminal(f"cbk-vault: error: {message}" + (f" [{code}]" if code else "")), file=sys.stderr)
    return status


def _run_hook(name: str, module: ModuleType | None, ctx: Context, args: argparse.Namespace) -> int:
    if module is None:
        module, problem = _load_hook(name)
        if module is None:
            raise UsageError(problem)
    command: Callable[[argparse.Namespace, Callable[[], Vault]], int] = getattr(module, _HOOKS[name][1])
    return int(command(args, ctx.open_vault))


def run(arguments: list[str]) -> int:
    """Run ``cbk-vault`` with ``arguments`` (the process is hardened already) and return its exit status."""
    before_dashdash = arguments[: arguments.index("--")] if "--" in arguments else arguments
    json_errors = "--json" in before_dashdash
    name = _command_name(arguments)
    hook = None
    if name in _HOOKS:
        hook, problem = _load_hook(name)
        if hook is None:
            # The module is missing, so its command cannot run: say that, not a confusing usage error.
            return _report(problem, "USAGE", EXIT_USAGE, as_json=json_errors)
    parser = build_parser(json_errors=json_errors, command=name)
    args = parser.parse_args(arguments)
    # Read once and drop from the environment: no child (run, an editor, a pager) inherits it.
    env_pass = os.environ.pop(ENV_PASSPHRASE, None)
    env_new = os.environ.pop(ENV_NEW_PASSPHRASE, None)
    from ._context import Context

    ctx = Context(args=args, env_passphrase=env_pass or None, env_new_passphrase=env_new or None)
    as_json = ctx.json
    debug = bool(getattr(args, "debug", False))
    try:
        if args.command in _HOOKS:
            return _run_hook(args.command, hook if name == args.command else None, ctx, args)
        handler = _handler(args.command or "")
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return handler(ctx, args)
    except VaultError as exc:
        if debug:
            raise
        return _report(exc.message, exc.code, exit_code_for(exc), as_json=as_json)
    except UsageError as exc:
        if debug:
            raise
        return _report(str(exc), "USAGE", EXIT_USAGE, as_json=as_json)
    except EOFError:
        # Ctrl-D at a prompt: the user gave no answer, like a missing option (not a crash, not Ctrl-C).
        if debug:
            raise
        print("", file=sys.stderr)
        return _report("no input at the prompt", "USAGE", EXIT_USAGE, as_json=as_json)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return _report("interrupted", "INTERRUPTED", EXIT_INTERRUPTED, as_json=as_json)
    except BrokenPipeError:
        # `cbk-vault list | head`: the reader left; not an error worth a message.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if debug:
            raise
        # The type name only: an unexpected exception's text could quote data it was handed.
        return _report(
            f"internal error ({type(exc).__name__}); rerun with --debug",
            "INTERNAL",
            EXIT_INTERNAL,
            as_json=as_json,
        )
    finally:
        ctx.close_all()
