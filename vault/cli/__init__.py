"""The ``cbk-vault`` command line.

The parser lives here; the commands in ``_commands``, the terminal and file edges in
``_terminal``, the export/import formats in ``_formats`` and completion in
``_completion``. ``serve`` and ``sync`` come from their own modules through two small
hooks (``add_*_arguments(parser)`` and ``*_command(args, open_vault) -> int``), imported
only when one of them runs.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from .. import __version__
from .._vault import Vault
from ..errors import VaultError
from . import _completion, _demo
from ._commands import COMMANDS, Context, kdf_names
from ._terminal import (
    ENV_NEW_PASSPHRASE,
    ENV_PASSPHRASE,
    PassphraseSource,
    UsageError,
    dump_json,
    harden_process,
    prompt_new_passphrase,
)

__all__ = ["EXIT_CODES", "exit_code_for", "main"]

#: VaultError.code -> exit status. Any other code (sync's cloud errors, a future code) exits EXIT_OTHER.
EXIT_CODES: Final[dict[str, int]] = {
    "NOT_FOUND": 1,
    "BAD_REQUEST": 2,
    "CONFLICT": 2,
    "WRONG_PASSPHRASE": 3,
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
EXIT_INTERNAL: Final = 70
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141

_EXIT_TABLE = """\
exit status:
  0    success
  1    not found (no such secret, or it has no value to reveal or inject)
  2    usage or bad input (bad option, field, file, ambiguous name, alias in use, Ctrl-D at a prompt)
  3    wrong passphrase (after three tries at a prompt)
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

_ENV_HELP = f"""\
environment:
  CBK_VAULT_PATH        the vault file when --path is not given
  {ENV_PASSPHRASE}  the passphrase, for CI and scripts where nothing can answer a prompt;
                        prefer --passphrase-file or --passphrase-fd elsewhere (the environment
                        of a process can be read by tools running as the same user).
                        Never passed on to the command of `run`.
  {ENV_NEW_PASSPHRASE}  the new passphrase for passwd, likewise for CI"""

_MAIN_EXAMPLES = """\
examples:
  cbk-vault init                                  # new vault at the default path
  cbk-vault create --name OpenAI --alias openai --type bearer --meta env=OPENAI_API_KEY
  cbk-vault list
  cbk-vault fetch @openai --reveal
  cbk-vault run -- python agent.py                # secrets with meta env=NAME become $NAME
  cbk-vault export --format json --output backup.json
  source <(cbk-vault completion bash)"""

# Options that take a value at the top level, so the command finder skips their argument.
_GLOBAL_VALUE_OPTIONS: Final = frozenset({"--path", "--passphrase-file", "--passphrase-fd", "--lock-timeout"})

_HOOKS: Final[dict[str, tuple[str, str, str, str]]] = {
    # command: (module, add-arguments function, command function, pip extra that brings its dependencies)
    "serve": ("vault.cli._serve", "add_serve_arguments", "serve_command", "serve"),
    "sync": ("vault.cli._sync", "add_sync_arguments", "sync_command", "sync"),
}


def exit_code_for(exc: VaultError) -> int:
    """The documented exit status of a vault error (see ``cbk-vault --help``)."""
    return EXIT_CODES.get(exc.code, EXIT_OTHER)


#: Whether --json is anywhere in argv: argparse reports a usage error before the options are known.
_json_errors: contextvars.ContextVar[bool] = contextvars.ContextVar("_json_errors", default=False)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other cbk-vault error (exit 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see: {self.prog} --help)"
        if _json_errors.get():
            # --json promises one JSON object on stderr for every error, argparse's own included.
            self.exit(EXIT_USAGE, dump_json({"message": text, "code": "USAGE", "exitCode": EXIT_USAGE}) + "\n")
        self.exit(EXIT_USAGE, f"cbk-vault: error: {text} [USAGE]\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _fd(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a file descriptor number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be a file descriptor number")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return value


def _take(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 100") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 100")
    return value


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, accepted before or after the command name.

    On subcommands the defaults are SUPPRESS so a value given before the command is not
    overwritten by the subcommand's default.
    """
    d: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("vault and unlock options")
    group.add_argument(
        "--path", metavar="PATH", default=d, help="vault file (default: $CBK_VAULT_PATH or the user data dir)"
    )
    group.add_argument("--passphrase-file", metavar="FILE", default=d, help="read the passphrase from FILE (one line)")
    group.add_argument(
        "--passphrase-fd", metavar="FD", type=_fd, default=d, help="read the passphrase from descriptor FD"
    )
    group.add_argument(
        "--lock-timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=argparse.SUPPRESS if suppress else 10.0,
        help="wait this long for another process's lock (default 10)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="machine-readable output (the cloud's camelCase JSON); errors as JSON on stderr",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="show a traceback on errors",
    )


def _sub(
    sub: Any, name: str, help_text: str, description: str, examples: str, *, hook: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=_Formatter,
        # A hook module may define an option we also define (e.g. its own --json); its definition wins.
        conflict_handler="resolve" if hook else "error",
    )
    _global_options(parser, suppress=True)
    return parser


def _field_options(parser: argparse.ArgumentParser, *, update: bool) -> None:
    g = parser.add_argument_group("fields (as in the ChatBotKit secret API)")
    g.add_argument("--name", help="display name")
    g.add_argument("--description", help="free text")
    g.add_argument(
        "--type",
        choices=["plain", "basic", "bearer", "jwt", "oauth", "template", "reference"],
        help="secret type" + ("" if update else " (default plain)"),
    )
    g.add_argument(
        "--kind", choices=["shared", "personal"], help="shared or personal" + ("" if update else " (default shared)")
    )
    g.add_argument(
        "--visibility",
        choices=["private", "protected", "public"],
        help="who may use it" + ("" if update else " (default private)"),
    )
    g.add_argument(
        "--alias", help="unique handle, [a-z0-9_-]; address it as @ALIAS" + ('; "" clears it' if update else "")
    )
    g.add_argument("--blueprint-id", dest="blueprint_id", metavar="ID", help="linked blueprint id")
    g.add_argument(
        "--meta",
        action="append",
        metavar="KEY=VALUE",
        help="set a metadata key (repeatable); meta env=NAME makes `run` inject it as $NAME"
        + (" (merged into the stored meta)" if update else ""),
    )
    g.add_argument(
        "--meta-json", metavar="JSON", help="the whole metadata object" + (" (replaces it)" if update else "")
    )
    if update:
        g.add_argument("--unset-meta", action="append", metavar="KEY", help="remove a metadata key (repeatable)")
    g.add_argument(
        "--config-json", metavar="JSON", help="the config object (put a clientSecret in --config-file instead)"
    )
    g.add_argument("--config-file", metavar="FILE", help="read the config object from a JSON file")
    v = parser.add_argument_group("value (never taken from the command line)")
    v.add_argument(
        "--value-stdin", action="store_true", help="read the value from standard input (one trailing newline dropped)"
    )
    v.add_argument("--value-file", metavar="FILE", help="read the value from FILE (one trailing newline dropped)")
    v.add_argument(
        "--value-prompt",
        action="store_true",
        help="ask for the value at a hidden prompt" + ("" if update else " (the default on a terminal)"),
    )
    v.add_argument("--no-value", action="store_true", help="store no value" + (" (clears it)" if update else ""))


def _hook_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, found without parsing (so only a hook that runs is imported)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--":  # noqa: S105 - an argv token, not a password
            return None
        if token in _GLOBAL_VALUE_OPTIONS:
            skip = True
            continue
        if token.startswith("-"):
            continue
        return token
    return None


def _load_hook(name: str) -> tuple[Any | None, str | None]:
    module_name = _HOOKS[name][0]
    try:
        return importlib.import_module(module_name), None
    except ImportError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + ".") or not missing:
            return None, f"`{name}` is not available in this build of cbk-vault ({module_name} is missing)"
        extra = _HOOKS[name][3]
        return None, f"`{name}` needs the optional package {missing!r}: pip install 'cbk-vault[{extra}]'"


def build_parser(load_hooks: Sequence[str] = ()) -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    """The whole parser; ``load_hooks`` names the hook commands whose modules should add their options."""
    parser = _Parser(
        prog="cbk-vault",
        description="A local, encrypted vault for AI-agent credentials, with ChatBotKit's secret API.\n"
        "Secrets are addressed by id, @alias, (name), or a bare name when it is unique.",
        epilog="\n\n".join([_MAIN_EXAMPLES, _EXIT_TABLE, _ENV_HELP]),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"cbk-vault {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(
        sub,
        "init",
        "create a new, empty vault",
        "Create a new vault file (mode 0600) and set its passphrase.",
        "  cbk-vault init\n  cbk-vault --path ./agent.cbkv init --kdf sensitive\n"
        "  CBK_VAULT_PASSPHRASE=... cbk-vault init --kdf interactive   # CI",
    )
    p.add_argument(
        "--kdf",
        choices=kdf_names(),
        default="moderate",
        help="Argon2id cost: interactive (fast), moderate (default), sensitive (slow, strongest)",
    )

    p = _sub(
        sub,
        "passwd",
        "change the vault passphrase",
        "Rewrap the vault key under a new passphrase (records are not rewritten).",
        "  cbk-vault passwd\n  cbk-vault passwd --passphrase-file old.txt --new-passphrase-file new.txt",
    )
    p.add_argument("--new-passphrase-file", metavar="FILE", help="read the new passphrase from FILE")
    p.add_argument("--new-passphrase-fd", metavar="FD", type=_fd, help="read the new passphrase from descriptor FD")
    p.add_argument("--kdf", choices=kdf_names(), default=None, help="also change the Argon2id cost")

    p = _sub(
        sub,
        "create",
        "create a secret (the value is prompted for, never an argument)",
        "Create a secret. The value comes from a hidden prompt, --value-stdin or --value-file.",
        "  cbk-vault create --name PaymentAPIKey --type bearer --alias payments\n"
        '  printf %s "$TOKEN" | cbk-vault create --name GitHub --value-stdin --meta env=GITHUB_TOKEN\n'
        "  cbk-vault create --name Google --type oauth --kind personal --config-file google.json",
    )
    _field_options(p, update=False)

    p = _sub(
        sub,
        "fetch",
        "show a secret's metadata, or its value with --reveal",
        "Show a secret. Only --reveal prints the value, and then nothing else.",
        "  cbk-vault fetch @payments\n  cbk-vault fetch '(PaymentAPIKey)' --json\n"
        '  export TOKEN="$(cbk-vault fetch @payments --reveal)"',
    )
    p.add_argument("ref", metavar="SECRET", help="id, @alias, (name) or a unique name")
    p.add_argument("--reveal", action="store_true", help="print the value (only the value) to stdout")
    p.add_argument("-n", "--no-newline", action="store_true", help="with --reveal: no newline after the value")

    p = _sub(
        sub,
        "list",
        "list secrets (never their values)",
        "List secrets as a table, or one page of JSON.",
        "  cbk-vault list\n  cbk-vault list --order asc --take 20\n  cbk-vault list --meta env=OPENAI_API_KEY --json\n"
        "  cbk-vault list --all --json | jq -r '.items[].id'",
    )
    p.add_argument("--order", choices=["asc", "desc"], default="desc", help="by creation time (default desc)")
    p.add_argument("--take", type=_take, default=None, metavar="N", help="page size, 1..100 (default 100)")
    p.add_argument("--cursor", metavar="ID", help="start after this id (the cursor of the previous page)")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="only secrets whose meta matches (repeatable)")
    p.add_argument("--all", action="store_true", help="follow the cursor to the end")

    p = _sub(
        sub,
        "update",
        "change fields or the value of a secret",
        "Change the given fields; the others stay. The value changes only with a --value-* option.",
        "  cbk-vault update @payments --description 'rotated 2026-05'\n"
        "  cbk-vault update @payments --value-prompt\n"
        "  cbk-vault update PaymentAPIKey --meta env=PAY_KEY --unset-meta old",
    )
    p.add_argument("ref", metavar="SECRET", help="id, @alias, (name) or a unique name")
    _field_options(p, update=True)

    p = _sub(
        sub,
        "delete",
        "delete a secret",
        "Delete a secret (asks first on a terminal, also with --json, unless --yes; declining exits 0).",
        "  cbk-vault delete @payments\n  cbk-vault delete m2q1x0c3v4b5n6m7a8s9d0f1 --yes --json",
    )
    p.add_argument("ref", metavar="SECRET", help="id, @alias, (name) or a unique name")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = _sub(
        sub,
        "run",
        "run a command with secrets in its environment",
        "Run COMMAND with secrets as environment variables: those named by --env, or else every secret\n"
        "whose meta has an `env` key. Values never appear on any command line; cbk-vault replaces\n"
        "itself with COMMAND, so its exit status is COMMAND's. CBK_VAULT_PASSPHRASE is not passed on.",
        "  cbk-vault run -- python agent.py\n"
        "  cbk-vault run --env OPENAI_API_KEY=@openai --env 'DB_URL=(Database)' -- ./deploy.sh\n"
        "  cbk-vault run --env TOKEN=@gh -- sh -c 'curl -H \"Authorization: Bearer $TOKEN\" ...'",
    )
    p.add_argument("--env", action="append", metavar="NAME=SECRET", help="inject SECRET's value as $NAME (repeatable)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="the command to run")

    p = _sub(
        sub,
        "export",
        "write every secret in plaintext (JSON or dotenv)",
        "Export every secret in PLAINTEXT. JSON keeps every field (ids, timestamps, value, config);\n"
        "env writes NAME='value' lines (NAME from meta env, else alias, else name). A new --output\n"
        "file is created with mode 0600 and never overwrites; printing to a terminal needs --force.",
        "  cbk-vault export --format json --output backup.json\n  cbk-vault export --format env --output .env\n"
        "  cbk-vault export --format json | gpg -e -r me@example.com > backup.json.gpg",
    )
    p.add_argument("--format", choices=["json", "env"], default="json", help="json (every field, default) or env")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (must not exist) instead of stdout")
    p.add_argument("--force", action="store_true", help="allow printing plaintext on a terminal")

    p = _sub(
        sub,
        "import",
        "import secrets from JSON, dotenv or KeePass (all or nothing)",
        "Import secrets in one all-or-nothing commit. JSON (a cbk-vault export, or the cloud's list body)\n"
        "keeps ids and timestamps; env makes one plain secret per variable (meta env=NAME); kdbx reads a\n"
        "KeePass database (needs: pip install 'cbk-vault[kdbx]').",
        "  cbk-vault import --format json backup.json\n  cbk-vault import --format env .env\n"
        "  cbk-vault import --format kdbx passwords.kdbx --kdbx-password-file kp.txt",
    )
    p.add_argument("file", metavar="FILE", help="the file to read ('-' for stdin; not for kdbx)")
    p.add_argument("--format", choices=["json", "env", "kdbx"], default="json", help="json (default), env or kdbx")
    p.add_argument("--new-ids", action="store_true", help="give imported secrets new ids (timestamps are still kept)")
    p.add_argument("--kdbx-password-file", metavar="FILE", help="KeePass password from FILE (else a prompt)")
    p.add_argument("--kdbx-password-fd", metavar="FD", type=_fd, help="KeePass password from descriptor FD")
    p.add_argument("--kdbx-keyfile", metavar="FILE", help="KeePass key file")
    p.add_argument("--kdbx-no-password", action="store_true", help="the KeePass database has a key file only")

    p = _sub(
        sub,
        "completion",
        "print a shell completion script",
        "Print a completion script for bash, zsh or fish.",
        "  source <(cbk-vault completion bash)       # in ~/.bashrc\n"
        '  cbk-vault completion zsh > "${fpath[1]}/_cbk-vault"\n'
        "  cbk-vault completion fish > ~/.config/fish/completions/cbk-vault.fish",
    )
    p.add_argument("shell", choices=list(_completion.SHELLS))

    hook_errors: dict[str, Any] = {}
    for name, help_text in (
        ("serve", "serve the vault over a local ChatBotKit-compatible HTTP API"),
        ("sync", "sync the vault with a ChatBotKit account"),
    ):
        p = _sub(
            sub, name, help_text, help_text[0].upper() + help_text[1:] + ".", f"  cbk-vault {name} --help", hook=True
        )
        if name in load_hooks:
            module, error = _load_hook(name)
            if module is not None:
                getattr(module, _HOOKS[name][1])(p)
                hook_errors[name] = module
                continue
            hook_errors[name] = error
        # Not loaded (another command runs, or --help lists it): main() reports a missing module before parsing.
        p.add_argument("hook_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    demo = sub.add_parser(
        "demo",
        help="walk through create, fetch, list, update and delete on a local vault",
        description="Walk the seed example end to end on a throwaway vault (no server, no account).",
        epilog="examples:\n  cbk-vault demo\n  cbk-vault demo --path ./demo.cbkv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--path",
        # SUPPRESS: a --path given before `demo` (the global option) must not be reset to None here.
        default=argparse.SUPPRESS,
        help="create the demo vault here instead of a temporary directory "
        "(passphrase from CBK_VAULT_PASSPHRASE or a prompt)",
    )
    return parser, hook_errors


def _report(message: str, code: str, status: int, *, as_json: bool) -> int:
    if as_json:
        line = dump_json({"message": message, "code": code, "exitCode": status})
        print(line, file=sys.stderr)
    else:
        print(f"cbk-vault: error: {message}" + (f" [{code}]" if code else ""), file=sys.stderr)
    return status


def _run_hook(name: str, ctx: Context, args: argparse.Namespace, loaded: Any) -> int:
    if not hasattr(loaded, _HOOKS[name][2]):
        raise UsageError(str(loaded))
    command: Callable[[argparse.Namespace, Callable[[], Vault]], int] = getattr(loaded, _HOOKS[name][2])
    return int(command(args, ctx.open_vault))


def main(argv: Sequence[str] | None = None) -> int:
    harden_process()
    arguments = list(sys.argv[1:] if argv is None else argv)
    hook = _hook_command(arguments)
    parser, hooks = build_parser([hook] if hook in _HOOKS else [])
    if hook in _HOOKS and isinstance(hooks.get(hook), str):
        # The module is missing, so its options are unknown: report that, not a confusing usage error.
        return _report(hooks[hook], "USAGE", EXIT_USAGE, as_json="--json" in arguments)
    _json_errors.set("--json" in arguments[: arguments.index("--")] if "--" in arguments else "--json" in arguments)
    args = parser.parse_args(arguments)
    # Read once and drop from the environment: no child (run, an editor, a pager) inherits it.
    env_pass = os.environ.pop(ENV_PASSPHRASE, None)
    env_new = os.environ.pop(ENV_NEW_PASSPHRASE, None)
    ctx = Context(args=args, env_passphrase=env_pass or None, env_new_passphrase=env_new or None)
    as_json = ctx.json
    debug = bool(getattr(args, "debug", False))
    try:
        if args.command == "demo":
            passphrase = None
            raw = getattr(args, "path", None)
            if raw == "":
                raise UsageError("--path must not be empty")
            path = Path(raw) if raw is not None else None
            if path is not None:
                # The vault outlives the demo: its passphrase is asked for exactly as `init` asks.
                source = PassphraseSource(env=env_pass or None, err=sys.stderr)
                passphrase = prompt_new_passphrase(source, "New vault passphrase")
            return _demo.run(path, passphrase, sys.stdout)
        if args.command == "completion":
            full, _ = build_parser(list(_HOOKS))
            sys.stdout.write(_completion.render(args.shell, full))
            return 0
        if args.command in _HOOKS:
            return _run_hook(args.command, ctx, args, hooks.get(args.command))
        handler = COMMANDS.get(args.command or "")
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
