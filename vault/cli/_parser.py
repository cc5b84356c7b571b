"""The grammar of ``cbk-vault`` as data, and the argparse parser built from it.

:data:`GLOBAL_OPTIONS` and :data:`COMMANDS` describe every command, argument and help text
once. :func:`build_parser` turns them into argparse; ``_completion`` writes the shell
completion scripts from the same table, so neither has to read the other's internals.
Nothing here runs a command: ``serve`` and ``sync`` are described here too, but their code
(and http.server, httpx) is imported only when one of them runs.

Start-up cost: every invocation imports this module, so it imports nothing heavy (no
dataclasses, no cryptography), and :func:`build_parser` gives each command a subparser that
is filled in with the command's arguments only when argv names it (or asks for its help).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, NoReturn

from .. import __version__
from ._exit_codes import EXIT_HELP, EXIT_USAGE
from ._passwords import DEFAULT_LENGTH, MAX_LENGTH, MIN_LENGTH
from ._suggest import argparse_hint
from ._terminal import ENV_NEW_PASSPHRASE, ENV_PASSPHRASE, dump_json

__all__ = [
    "COMMANDS",
    "GLOBAL_OPTIONS",
    "PROG",
    "SHELLS",
    "Arg",
    "Command",
    "build_parser",
    "command_options",
    "global_value_options",
    "top_options",
]

PROG: Final = "cbk-vault"
#: The shells ``cbk-vault completion`` writes a script for.
SHELLS: Final = ("bash", "zsh", "fish")


class Arg:
    """One option (``--name``) or positional argument: what argparse is told, and what completion offers.

    A plain immutable class: a dataclass or NamedTuple would cost more start-up time (every
    command line builds this table) than the rest of the grammar.
    """

    __slots__ = ("action", "choices", "default", "dest", "group", "help", "metavar", "names", "nargs", "type")

    #: ``("--path",)``, ``("-n", "--no-newline")``; a positional has one name without a dash.
    names: tuple[str, ...]
    help: str
    metavar: str | None
    choices: tuple[str, ...]
    #: store: takes a value; store_true: a switch; append: a value, repeatable; help, version: argparse's own.
    action: Literal["store", "store_true", "append", "help", "version"]
    type: Callable[[str], Any] | None
    #: None leaves argparse's default (None, or False for a switch).
    default: Any
    dest: str | None
    #: Positionals only: "?" (optional) or argparse.REMAINDER (the rest of argv, a command to run).
    nargs: str | None
    #: The --help section it is listed under; "" for argparse's own sections.
    group: str

    def __init__(
        self,
        names: tuple[str, ...],
        help: str,
        metavar: str | None = None,
        choices: tuple[str, ...] = (),
        action: Literal["store", "store_true", "append", "help", "version"] = "store",
        type: Callable[[str], Any] | None = None,
        default: Any = None,
        dest: str | None = None,
        nargs: str | None = None,
        group: str = "",
    ) -> None:
        _set = object.__setattr__
        for key, value in (
            ("names", names), ("help", help), ("metavar", metavar), ("choices", choices), ("action", action),
            ("type", type), ("default", default), ("dest", dest), ("nargs", nargs), ("group", group),
        ):  # fmt: skip
            _set(self, key, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arg) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Arg(names={self.names!r}, action={self.action!r})"

    @property
    def positional(self) -> bool:
        """Whether it is a positional argument rather than an option."""
        return not self.names[0].startswith("-")

    @property
    def takes_value(self) -> bool:
        """Whether the option reads the next word as its value."""
        return self.action in ("store", "append")

    @property
    def files(self) -> bool:
        """Whether its value names a file (completion then offers file names)."""
        return self.metavar in ("FILE", "PATH")

    @property
    def runs_command(self) -> bool:
        """Whether it takes the rest of the command line as a command to run (``run -- COMMAND``)."""
        return self.nargs == argparse.REMAINDER


class Command:
    """One subcommand: its line in ``cbk-vault --help``, its own ``--help`` page and its arguments."""

    __slots__ = ("args", "description", "examples", "global_options", "help", "name")

    name: str
    help: str
    description: str
    #: Lines of ``  cbk-vault ...``, printed under "examples:".
    examples: str
    args: tuple[Arg, ...]
    #: Whether the vault and unlock options are accepted after the command name too.
    global_options: bool

    def __init__(
        self,
        name: str,
        help: str,
        description: str,
        examples: str,
        args: tuple[Arg, ...] = (),
        global_options: bool = True,
    ) -> None:
        _set = object.__setattr__
        for key, value in (
            ("name", name), ("help", help), ("description", description), ("examples", examples), ("args", args),
            ("global_options", global_options),
        ):  # fmt: skip
            _set(self, key, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"Command(name={self.name!r})"


# --- argument types ----------------------------------------------------------------------------


_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h30m``, ``2d``: seconds."""
    pos, total = 0, 0.0
    for found in _DURATION_PART.finditer(text.strip()):
        if found.start() != pos:
            break
        total += float(found.group(1)) * _UNITS[found.group(2)]
        pos = found.end()
    if pos != len(text.strip()) or total <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (examples: 90s, 15m, 1h30m)")
    return total


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


def _length(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from {MIN_LENGTH} to {MAX_LENGTH}") from None
    if not MIN_LENGTH <= value <= MAX_LENGTH:
        raise argparse.ArgumentTypeError(f"must be a whole number from {MIN_LENGTH} to {MAX_LENGTH}")
    return value


# --- the table ---------------------------------------------------------------------------------

_DESCRIPTION = (
    "A local, encrypted vault for AI-agent credentials, with ChatBotKit's secret API.\n"
    "Secrets are addressed by id, @alias, (name), or a bare name when it is unique."
)

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

HELP: Final = Arg(("-h", "--help"), "show this help message and exit", action="help")
VERSION: Final = Arg(("--version",), "show program's version number and exit", action="version")

_UNLOCK = "vault and unlock options"
#: Accepted before the command name, and after it by every command but demo.
GLOBAL_OPTIONS: Final = (
    Arg(("--path",), "vault file (default: $CBK_VAULT_PATH or the user data dir)", metavar="PATH", group=_UNLOCK),
    Arg(("--passphrase-file",), "read the passphrase from FILE (one line)", metavar="FILE", group=_UNLOCK),
    Arg(("--passphrase-fd",), "read the passphrase from descriptor FD", metavar="FD", type=_fd, group=_UNLOCK),
    Arg(
        ("--lock-timeout",),
        "wait this long for another process's lock (default 10)",
        metavar="SECONDS",
        type=_positive_float,
        default=10.0,
        group=_UNLOCK,
    ),
    Arg(
        ("--json",),
        "machine-readable output (the cloud's camelCase JSON); errors as JSON on stderr",
        action="store_true",
        group=_UNLOCK,
    ),
    Arg(("--debug",), "show a traceback on errors", action="store_true", group=_UNLOCK),
)

#: vault._crypto.KDF_PRESETS, cheapest first (tests/test_startup.py checks they agree): named here so
#: that building the grammar does not import the cryptography.
_KDF_NAMES: Final = ("interactive", "moderate", "sensitive")
_CLIP = Arg(
    ("--clip",),
    "copy it to the clipboard instead of printing it; cleared after $CBK_VAULT_CLIP_TIME seconds (default 45) "
    "if the clipboard still holds it",
    action="store_true",
)


def _generate_args(*, update: bool) -> tuple[Arg, ...]:
    """``--generate`` and its shape: a new random value that is stored and never printed."""
    value = "value (never taken from the command line)"
    return (
        Arg(
            ("--generate",),
            ("replace the value with" if update else "store") + " a random password (never printed)",
            action="store_true",
            group=value,
        ),
        Arg(
            ("--length",),
            f"with --generate: its length (default {DEFAULT_LENGTH})",
            metavar="N",
            type=_length,
            group=value,
        ),
        Arg(("--no-symbols",), "with --generate: letters and digits only", action="store_true", group=value),
    )
_REF = Arg(("ref",), "id, @alias, (name) or a unique name", metavar="SECRET")


def _field_args(*, update: bool) -> tuple[Arg, ...]:
    """The secret's fields and its value source, for create (defaults named) and update (changes only)."""
    fields = "fields (as in the ChatBotKit secret API)"
    value = "value (never taken from the command line)"
    unset_meta = (
        (Arg(("--unset-meta",), "remove a metadata key (repeatable)", action="append", metavar="KEY", group=fields),)
        if update
        else ()
    )
    return (
        Arg(("--name",), "display name", group=fields),
        Arg(("--description",), "free text", group=fields),
        Arg(
            ("--type",),
            "secret type" + ("" if update else " (default plain)"),
            choices=("plain", "basic", "bearer", "jwt", "oauth", "template", "reference"),
            group=fields,
        ),
        Arg(
            ("--kind",),
            "shared or personal" + ("" if update else " (default shared)"),
            choices=("shared", "personal"),
            group=fields,
        ),
        Arg(
            ("--visibility",),
            "who may use it" + ("" if update else " (default private)"),
            choices=("private", "protected", "public"),
            group=fields,
        ),
        Arg(
            ("--alias",),
            "unique handle, [a-z0-9_-]; address it as @ALIAS" + ('; "" clears it' if update else ""),
            group=fields,
        ),
        Arg(("--blueprint-id",), "linked blueprint id", dest="blueprint_id", metavar="ID", group=fields),
        Arg(
            ("--meta",),
            "set a metadata key (repeatable); meta env=NAME makes `run` inject it as $NAME"
            + (" (merged into the stored meta)" if update else ""),
            action="append",
            metavar="KEY=VALUE",
            group=fields,
        ),
        Arg(
            ("--meta-json",),
            "the whole metadata object" + (" (replaces it)" if update else ""),
            metavar="JSON",
            group=fields,
        ),
        *unset_meta,
        Arg(
            ("--config-json",),
            "the config object (put a clientSecret in --config-file instead)",
            metavar="JSON",
            group=fields,
        ),
        Arg(("--config-file",), "read the config object from a JSON file", metavar="FILE", group=fields),
        Arg(
            ("--value-stdin",),
            "read the value from standard input (one trailing newline dropped)",
            action="store_true",
            group=value,
        ),
        Arg(("--value-file",), "read the value from FILE (one trailing newline dropped)", metavar="FILE", group=value),
        Arg(
            ("--value-prompt",),
            "ask for the value at a hidden prompt" + ("" if update else " (the default on a terminal)"),
            action="store_true",
            group=value,
        ),
        Arg(("--no-value",), "store no value" + (" (clears it)" if update else ""), action="store_true", group=value),
    )


#: Every command, in the order ``cbk-vault --help`` lists them.
COMMANDS: Final = (
    Command(
        "init",
        "create a new, empty vault",
        "Create a new vault file (mode 0600) and set its passphrase.",
        "  cbk-vault init\n  cbk-vault --path ./agent.cbkv init --kdf sensitive\n"
        "  CBK_VAULT_PASSPHRASE=... cbk-vault init --kdf interactive   # CI",
        (
            Arg(
                ("--kdf",),
                "Argon2id cost: interactive (fast), moderate (default), sensitive (slow, strongest)",
                choices=_KDF_NAMES,
                default="moderate",
            ),
        ),
    ),
    Command(
        "passwd",
        "change the vault passphrase",
        "Rewrap the vault key under a new passphrase (records are not rewritten).",
        "  cbk-vault passwd\n  cbk-vault passwd --passphrase-file old.txt --new-passphrase-file new.txt",
        (
            Arg(("--new-passphrase-file",), "read the new passphrase from FILE", metavar="FILE"),
            Arg(("--new-passphrase-fd",), "read the new passphrase from descriptor FD", metavar="FD", type=_fd),
            Arg(("--kdf",), "also change the Argon2id cost", choices=_KDF_NAMES),
            Arg(
                ("--rekey",),
                "also replace the data key and seal every value again (an old copy of the file and the old "
                "passphrase then open nothing written afterwards)",
                action="store_true",
            ),
        ),
    ),
    Command(
        "unlock",
        "keep the vault unlocked in a per-user agent (no more prompts)",
        "Hand the vault to the per-user unlock agent (started if needed). It keeps the vault's key, never the\n"
        "passphrase, until the vault stays unused for --timeout, --max passes, `cbk-vault lock`, or the\n"
        "passphrase changes. Commands without a passphrase option then use it with no prompt.",
        "  cbk-vault unlock                           # 15 minutes unused, 8 hours at most\n"
        "  cbk-vault unlock --timeout 1h --max 10h\n"
        "  cbk-vault status\n  cbk-vault lock --all",
        (
            Arg(("--timeout",), "lock after this long unused (default 15m)", metavar="DURATION", type=_duration),
            Arg(("--max",), "lock after this long in any case (default 8h)", metavar="DURATION", type=_duration),
        ),
    ),
    Command(
        "lock",
        "make the unlock agent forget a vault's key",
        "The unlock agent forgets the vault's key (the default vault, --path, VAULT, or --all).",
        "  cbk-vault lock\n  cbk-vault lock ~/agents/prod.cbkv\n  cbk-vault lock --all",
        (
            Arg(("vault",), "the vault file (default: --path or the default vault)", nargs="?", metavar="VAULT"),
            Arg(("--all",), "forget every vault", action="store_true"),
        ),
    ),
    Command(
        "status",
        "show which vaults the unlock agent holds",
        "Which vaults the unlock agent holds, and when each locks.",
        "  cbk-vault status\n  cbk-vault status --json",
        (),
    ),
    Command(
        "create",
        "create a secret (the value is prompted for, never an argument)",
        "Create a secret. The value comes from a hidden prompt, --value-stdin or --value-file.",
        "  cbk-vault create --name PaymentAPIKey --type bearer --alias payments\n"
        '  printf %s "$TOKEN" | cbk-vault create --name GitHub --value-stdin --meta env=GITHUB_TOKEN\n'
        "  cbk-vault create --name Google --type oauth --kind personal --config-file google.json\n"
        "  cbk-vault create --name Database --alias db --generate --length 32",
        (*_field_args(update=False), *_generate_args(update=False)),
    ),
    Command(
        "fetch",
        "show a secret's metadata, or its value with --reveal",
        "Show a secret. Only --reveal prints the value, and then nothing else.",
        "  cbk-vault fetch @payments\n  cbk-vault fetch '(PaymentAPIKey)' --json\n"
        '  export TOKEN="$(cbk-vault fetch @payments --reveal)"',
        (
            _REF,
            Arg(("--reveal",), "print the value (only the value) to stdout", action="store_true"),
            Arg(("-n", "--no-newline"), "with --reveal: no newline after the value", action="store_true"),
            Arg(("--revision",), "a past revision (see: cbk-vault history REF)", metavar="N", type=int),
            _CLIP,
        ),
    ),
    Command(
        "read",
        "print one field of a secret, named by a cbk:// reference",
        "Print the string a reference names, and nothing else: cbk://SECRET[/FIELD]. SECRET is an id,\n"
        "@alias, (name) or a unique name (escape / % ? # { } as %XX); FIELD is value (the default),\n"
        "username, password, token, meta.KEY or a config key (docs/REFERENCES.md).",
        "  cbk-vault read cbk://@openai\n"
        '  export DB_USER="$(cbk-vault read cbk://@db/username)"\n'
        "  cbk-vault read cbk://@db/password --clip\n"
        "  cbk-vault read 'cbk://Partner%20API/clientId'",
        (
            Arg(("reference",), "cbk://SECRET[/FIELD]", metavar="REF"),
            Arg(("-n", "--no-newline"), "no newline after the value", action="store_true"),
            _CLIP,
        ),
    ),
    Command(
        "list",
        "list secrets (never their values)",
        "List secrets as a table, or one page of JSON.",
        "  cbk-vault list\n  cbk-vault list --order asc --take 20\n  cbk-vault list --meta env=OPENAI_API_KEY --json\n"
        "  cbk-vault list --all --json | jq -r '.items[].id'",
        (
            Arg(("--order",), "by creation time (default desc)", choices=("asc", "desc"), default="desc"),
            Arg(("--take",), "page size, 1..100 (default 100)", metavar="N", type=_take),
            Arg(("--cursor",), "start after this id (the cursor of the previous page)", metavar="ID"),
            Arg(
                ("--meta",),
                "only secrets whose meta matches (repeatable)",
                action="append",
                metavar="KEY=VALUE",
            ),
            Arg(("--all",), "follow the cursor to the end", action="store_true"),
        ),
    ),
    Command(
        "find",
        "find secrets by name, alias, description or meta (never values)",
        "List the secrets whose name, alias, description or meta (keys and values) contains TEXT,\n"
        "ignoring case. Values are never searched, and nothing is decrypted.",
        "  cbk-vault find openai\n  cbk-vault find OPENAI_API_KEY --json",
        (Arg(("text",), "the text to look for", metavar="TEXT"),),
    ),
    Command(
        "update",
        "change fields or the value of a secret",
        "Change the given fields; the others stay. The value changes only with a --value-* option.",
        "  cbk-vault update @payments --description 'rotated 2026-05'\n"
        "  cbk-vault update @payments --value-prompt\n"
        "  cbk-vault update PaymentAPIKey --meta env=PAY_KEY --unset-meta old\n"
        "  cbk-vault update @db --generate                 # rotate: a new random value, never printed",
        (_REF, *_field_args(update=True), *_generate_args(update=True)),
    ),
    Command(
        "delete",
        "delete a secret",
        "Delete a secret (asks first on a terminal, also with --json, unless --yes; declining exits 0).",
        "  cbk-vault delete @payments\n  cbk-vault delete m2q1x0c3v4b5n6m7a8s9d0f1 --yes --json",
        (
            _REF,
            Arg(("-y", "--yes"), "do not ask for confirmation", action="store_true"),
            Arg(("--purge",), "delete for good, past revisions too (default: to the trash)", action="store_true"),
        ),
    ),
    Command(
        "history",
        "list the revisions the vault keeps of a secret (never values)",
        "List a secret's revisions, newest (the current one) first. Fetch one with fetch --revision N,\n"
        "make one current again with restore.",
        "  cbk-vault history @payments\n  cbk-vault fetch @payments --revision 3 --reveal\n"
        "  cbk-vault restore @payments 3",
        (_REF,),
    ),
    Command(
        "restore",
        "make a past revision of a secret current again",
        "Make revision N of a secret current again, as a new revision (fields and value).",
        "  cbk-vault restore @payments 3",
        (_REF, Arg(("revision",), "the revision to restore (see: cbk-vault history REF)", metavar="N", type=int)),
    ),
    Command(
        "trash",
        "list, restore or purge deleted secrets",
        "Deleted secrets stay in the trash until its retention runs out (30 days by default).\n"
        "restore takes one back; purge deletes it for good.",
        "  cbk-vault trash list\n  cbk-vault trash restore m2q1x0c3v4b5n6m7a8s9d0f1\n"
        "  cbk-vault trash purge m2q1x0c3v4b5n6m7a8s9d0f1 --yes",
        (
            Arg(("action",), "list (default), restore or purge", choices=("list", "restore", "purge"), nargs="?"),
            Arg(("id",), "the deleted secret's id (restore, purge)", metavar="ID", nargs="?"),
            Arg(("-y", "--yes"), "purge: do not ask for confirmation", action="store_true"),
        ),
    ),
    Command(
        "log",
        "show who read which secret's value, when (the sealed access log)",
        "Show the access log: every read of a value, with its time, secret, revision, operation\n"
        "and process. The whole log is verified first; a removed or edited record is an error.",
        "  cbk-vault log\n  cbk-vault log @payments --since 2d\n  cbk-vault log --since 2026-05-01 --json",
        (
            Arg(("ref",), "only this secret's reads (id, @alias, (name))", metavar="REF", nargs="?"),
            Arg(("--since",), "from this time: 30m, 2h, 7d ago, an ISO date/time, or epoch ms", metavar="WHEN"),
        ),
    ),
    Command(
        "run",
        "run a command with secrets in its environment",
        "Run COMMAND with secrets as environment variables: those named by --env, or else every secret\n"
        "whose meta has an `env` key. Values never appear on any command line; cbk-vault replaces\n"
        "itself with COMMAND, so its exit status is COMMAND's. CBK_VAULT_PASSPHRASE is not passed on.\n"
        "A secret's meta env may not name a variable that changes what runs or whom it trusts\n"
        "(LD_*, DYLD_*, PYTHON*, PATH, HOME, proxies, CA bundles, GIT_*, EDITOR...): run refuses to\n"
        "start (exit 2) unless you name it yourself with --env NAME=SECRET or --allow-env NAME.",
        "  cbk-vault run -- python agent.py\n"
        "  cbk-vault run --env OPENAI_API_KEY=@openai --env 'DB_URL=(Database)' -- ./deploy.sh\n"
        "  cbk-vault run --env TOKEN=@gh -- sh -c 'curl -H \"Authorization: Bearer $TOKEN\" ...'",
        (
            Arg(
                ("--env",),
                "inject SECRET's value as $NAME (repeatable)",
                action="append",
                metavar="NAME=SECRET",
            ),
            Arg(
                ("--allow-env",),
                "let a secret's meta env set NAME although it is on the denylist (LD_*, PATH, proxies...; "
                "see docs/CLI.md); repeatable",
                action="append",
                metavar="NAME",
            ),
            Arg(
                ("--env-file",),
                "read variables from a dotenv FILE; values that are cbk:// references are resolved "
                "(repeatable; later files win, --env wins over files)",
                action="append",
                metavar="FILE",
            ),
            Arg(
                ("--strict",),
                "without --env/--env-file: fail when a secret with meta env has no value "
                "(default: leave it out with a warning)",
                action="store_true",
            ),
            Arg(("cmd",), "the command to run", metavar="-- COMMAND [ARGS...]", nargs=argparse.REMAINDER),
        ),
    ),
    Command(
        "inject",
        "fill the {{ cbk://... }} placeholders of a template",
        "Copy a template with every {{ cbk://... }} placeholder replaced by the string it names (other\n"
        "{{ ... }} text is left alone). Every placeholder is resolved before anything is written. An\n"
        "--out-file is created with mode 0600 and never replaces an existing file unless --force.",
        "  cbk-vault inject -i config.tpl.yml -o config.yml\n"
        "  echo 'api_key: {{ cbk://@openai }}' | cbk-vault inject\n"
        "  cbk-vault inject -i .env.tpl -o .env --force",
        (
            Arg(("-i", "--in-file"), "read the template from FILE (default: standard input)", metavar="FILE"),
            Arg(("-o", "--out-file"), "write to FILE, mode 0600 (default: standard output)", metavar="FILE"),
            Arg(("-f", "--force"), "replace an existing --out-file", action="store_true"),
        ),
    ),
    Command(
        "generate",
        "print a random password (from the OS's random source)",
        "Print a random password: every character drawn from the OS's random source (Python's secrets),\n"
        "with lower- and upper-case letters, digits and, unless --no-symbols, symbols that need no\n"
        "quoting in a shell or a .env file. To store one without ever printing it: create --generate.",
        "  cbk-vault generate\n"
        "  cbk-vault generate --length 40 --no-symbols\n"
        "  cbk-vault generate --clip\n"
        "  cbk-vault create --name Database --alias db --generate",
        (
            Arg(("--length",), f"number of characters (default {DEFAULT_LENGTH})", metavar="N", type=_length),
            Arg(("--no-symbols",), "letters and digits only", action="store_true"),
            Arg(("-n", "--no-newline"), "no newline after the password", action="store_true"),
            _CLIP,
        ),
    ),
    Command(
        "export",
        "write every secret in plaintext (JSON or dotenv)",
        "Export every secret in PLAINTEXT. JSON keeps every field (ids, timestamps, value, config);\n"
        "env writes NAME='value' lines (NAME from meta env, else alias, else name). A new --output\n"
        "file is created with mode 0600 and never overwrites; printing to a terminal needs --force.",
        "  cbk-vault export --format json --output backup.json\n  cbk-vault export --format env --output .env\n"
        "  cbk-vault export --format json | gpg -e -r me@example.com > backup.json.gpg",
        (
            Arg(("--format",), "json (every field, default) or env", choices=("json", "env"), default="json"),
            Arg(("-o", "--output"), "write to FILE (must not exist) instead of stdout", metavar="FILE"),
            Arg(("--force",), "allow printing plaintext on a terminal", action="store_true"),
            Arg(
                ("--allow-env",),
                "env: let a secret export as NAME although it is on the denylist (LD_*, PATH, proxies...); repeatable",
                action="append",
                metavar="NAME",
            ),
        ),
    ),
    Command(
        "import",
        "import secrets from JSON, dotenv or KeePass (all or nothing)",
        "Import secrets in one all-or-nothing commit. JSON (a cbk-vault export, or the cloud's list body)\n"
        "keeps ids and timestamps; env makes one plain secret per variable (meta env=NAME); kdbx reads a\n"
        "KeePass database (needs: pip install 'cbk-vault[kdbx]').",
        "  cbk-vault import --format json backup.json\n  cbk-vault import --format env .env\n"
        "  cbk-vault import --format kdbx passwords.kdbx --kdbx-password-file kp.txt",
        (
            Arg(("file",), "the file to read ('-' for stdin; not for kdbx)", metavar="FILE"),
            Arg(
                ("--format",),
                "json, env or kdbx (default: from the file name, *.json, *.env, .env*, *.kdbx; else from its content)",
                choices=("json", "env", "kdbx"),
            ),
            Arg(("--new-ids",), "give imported secrets new ids (timestamps are still kept)", action="store_true"),
            Arg(
                ("--on-conflict",),
                "when an item's id or alias is already in the vault: skip the item, or replace that secret "
                "with it (keeping the secret's id); default: import nothing",
                choices=("skip", "replace"),
            ),
            Arg(("--kdbx-password-file",), "KeePass password from FILE (else a prompt)", metavar="FILE"),
            Arg(("--kdbx-password-fd",), "KeePass password from descriptor FD", metavar="FD", type=_fd),
            Arg(("--kdbx-keyfile",), "KeePass key file", metavar="FILE"),
            Arg(("--kdbx-no-password",), "the KeePass database has a key file only", action="store_true"),
        ),
    ),
    Command(
        "completion",
        "print a shell completion script",
        "Print a completion script for bash, zsh or fish.",
        "  source <(cbk-vault completion bash)       # in ~/.bashrc\n"
        '  cbk-vault completion zsh > "${fpath[1]}/_cbk-vault"\n'
        "  cbk-vault completion fish > ~/.config/fish/completions/cbk-vault.fish",
        (Arg(("shell",), "", choices=SHELLS),),
    ),
    Command(
        "serve",
        "serve the vault over a local ChatBotKit-compatible HTTP API",
        "Serve the vault over a local ChatBotKit-compatible HTTP API, until Ctrl-C or SIGTERM.\n"
        "Prints base_url=URL and token=TOKEN (one JSON line with --json).",
        "  cbk-vault serve --ephemeral                # a new, empty throwaway vault; any bearer token\n"
        "  cbk-vault serve --port 8080                # this vault; only the printed token\n"
        "  CBK_VAULT_SERVE_TOKEN=... cbk-vault serve --host 0.0.0.0",
        (
            Arg(("--host",), "address to bind (default 127.0.0.1, loopback only)", default="127.0.0.1"),
            Arg(("--port",), "port to bind (default 0: a free port, printed at start)", type=int, default=0),
            Arg(
                ("--token",),
                # The variable is vault.cli._serve.SERVE_TOKEN_ENV (tests/test_cli.py checks the two agree).
                "the only bearer token to accept (default: $CBK_VAULT_SERVE_TOKEN, else a random one, printed); "
                "note that argv is visible to other local users",
            ),
            Arg(
                ("--accept-any-token",),
                "accept any bearer token (loopback only): any local process can then read, change and delete "
                "what is served; --ephemeral does this by default",
                action="store_true",
            ),
            Arg(
                ("--ephemeral",),
                "serve a new, empty throwaway vault (private temp directory, deleted on exit) instead of opening one",
                action="store_true",
            ),
            Arg(("--verbose",), "log each request's method and path to stderr", action="store_true"),
        ),
    ),
    Command(
        "sync",
        "sync the vault with a ChatBotKit account",
        # The names are vault.sync's TOKEN_ENV and TOKEN_ALIAS (tests/test_cli.py checks they agree).
        "Push local changes to the ChatBotKit cloud and pull the cloud's changes. "
        "The API token comes from $CHATBOTKIT_API_TOKEN or the vault secret @chatbotkit-api-token.",
        "  cbk-vault sync --dry-run                   # the plan; nothing changes\n"
        "  cbk-vault sync push\n"
        "  cbk-vault sync --prefer remote --json\n"
        "  cbk-vault sync --prefer-for @openai=local --prefer-for @gh=remote\n"
        "  cbk-vault sync push --concurrency 8",
        (
            Arg(
                ("direction",),
                "push: write only to the cloud; pull: write only to the vault; both (default)",
                choices=("push", "pull", "both"),
                default="both",
                nargs="?",
            ),
            Arg(("--dry-run",), "print the plan; change nothing anywhere", action="store_true"),
            Arg(
                ("--base-url",),
                "the API's base URL (default $CHATBOTKIT_BASE_URL or https://api.chatbotkit.com); "
                "https only, except loopback",
            ),
            Arg(
                ("--prefer",),
                "settle conflicts: local makes the cloud match the vault, remote the other way "
                "(default: report them and change neither side)",
                choices=("local", "remote"),
            ),
            Arg(
                ("--prefer-for",),
                "settle one secret's conflict: SECRET (id, @alias, name, or the cloud id shown) and the side "
                "that wins; repeatable, and wins over --prefer",
                action="append",
                metavar="SECRET=local|remote",
            ),
            Arg(
                ("--concurrency",),
                # vault.sync._run.DEFAULT_CONCURRENCY and _client.MAX_CONCURRENCY (tests/test_cli.py checks they agree).
                "cloud requests in flight at once, 1..16 (default 4; all wait together when the cloud says 429)",
                type=int,
                default=4,
                metavar="N",
            ),
        ),
    ),
    Command(
        "demo",
        "walk through create, fetch, list, update and delete on a local vault",
        "Walk the seed example end to end on a throwaway vault (no server, no account).",
        "  cbk-vault demo\n  cbk-vault demo --path ./demo.cbkv",
        (
            Arg(
                ("--path",),
                "create the demo vault here instead of a temporary directory "
                "(passphrase from CBK_VAULT_PASSPHRASE or a prompt)",
                metavar="PATH",
                # SUPPRESS: a --path given before `demo` (the global option) must not be reset to None here.
                default=argparse.SUPPRESS,
            ),
        ),
        global_options=False,
    ),
)


def top_options() -> tuple[Arg, ...]:
    """The options accepted before the command name."""
    return (HELP, VERSION, *GLOBAL_OPTIONS)


def command_options(command: Command) -> tuple[Arg, ...]:
    """Everything ``command`` accepts after its name, in --help order: -h, the global options, its own."""
    return (HELP, *(GLOBAL_OPTIONS if command.global_options else ()), *command.args)


def global_value_options() -> frozenset[str]:
    """The global options that take a value, so a scan of argv can skip that value."""
    return frozenset(name for arg in GLOBAL_OPTIONS if arg.takes_value for name in arg.names)


def _option_names() -> list[str]:
    """Every --option of every command, for a did-you-mean on an unknown one."""
    args = (*top_options(), *(arg for command in COMMANDS for arg in command.args))
    return sorted({name for arg in args for name in arg.names if name.startswith("--")})


# --- argparse ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other cbk-vault error (exit 2, no usage dump)."""

    #: --json was given: --json promises one JSON object on stderr for every error, argparse's own included.
    json_errors = False

    def error(self, message: str) -> NoReturn:
        """Exit 2 with one error line (one JSON object with --json), not argparse's usage dump."""
        text = f"{argparse_hint(message, _option_names())} (see: {self.prog} --help)"
        if self.json_errors:
            self.exit(EXIT_USAGE, dump_json({"message": text, "code": "USAGE", "exitCode": EXIT_USAGE}) + "\n")
        self.exit(EXIT_USAGE, f"cbk-vault: error: {text} [USAGE]\n")


_columns: int | None = None


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, asked once: argparse asks on every ``add_argument``.

    The same rule as shutil's ($COLUMNS, else stdout's terminal, else 80), without importing
    shutil (and the compression modules it brings) into every command.
    """
    global _columns
    if _columns is None:
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
            columns = columns or 80
        _columns = columns
    return _columns


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        # argparse's own default width: the terminal's columns minus 2.
        super().__init__(prog, max_help_position=32, width=_terminal_columns() - 2)


def _add(parser: argparse.ArgumentParser, args: Sequence[Arg], *, suppress_defaults: bool = False) -> None:
    # Any: argparse's group type is private; both it and the parser have add_argument.
    groups: dict[str, Any] = {}
    for arg in args:
        target: Any = parser
        if arg.group:
            if arg.group not in groups:
                groups[arg.group] = parser.add_argument_group(arg.group)
            target = groups[arg.group]
        options: dict[str, Any] = {"action": arg.action, "help": arg.help}
        if arg.action == "version":
            options["version"] = f"{PROG} {__version__}"
        if arg.metavar is not None:
            options["metavar"] = arg.metavar
        if arg.choices:
            options["choices"] = list(arg.choices)
        if arg.type is not None:
            options["type"] = arg.type
        if arg.dest is not None:
            options["dest"] = arg.dest
        if arg.nargs is not None:
            options["nargs"] = arg.nargs
        if suppress_defaults:
            # A global option given before the command name must not be reset by the command's default.
            options["default"] = argparse.SUPPRESS
        elif arg.default is not None:
            options["default"] = arg.default
        target.add_argument(*arg.names, **options)


class _CommandParser(_Parser):
    """A command's subparser, made real only when argv reaches it (or its help is printed).

    The top-level parser needs every command's name and one-line help (the pseudo-actions
    ``add_parser(help=...)`` records), not 17 parsers with all their arguments: building those
    (argparse looks up a translation catalogue for every parser) cost more than the rest of
    ``cbk-vault fetch``. So argparse's own ``__init__`` and the command's arguments wait for
    :meth:`fill`, which every way in (parse, usage, help) calls first.
    """

    command: Command | None = None

    def __init__(self, **kwargs: Any) -> None:
        # argparse.ArgumentParser.__init__ runs in fill(), with these arguments.
        self._deferred: dict[str, Any] | None = kwargs

    def fill(self) -> None:
        """Become the command's full argparse parser (once)."""
        kwargs, self._deferred = self._deferred, None
        if kwargs is None:
            return
        super().__init__(**kwargs)
        command = self.command
        assert command is not None, "build_parser names the command of every subparser"
        _add(self, (HELP,))
        if command.global_options:
            _add(self, GLOBAL_OPTIONS, suppress_defaults=True)
        _add(self, command.args)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.fill()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.fill()
        return super().format_usage()

    def format_help(self) -> str:
        self.fill()
        return super().format_help()


def build_parser(*, json_errors: bool = False, command: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of the whole command line, built from :data:`COMMANDS`.

    Each command's subparser is built when argv reaches it (:class:`_CommandParser`), or here
    for ``command`` (the one argv names, found by a scan); the result parses, and prints help,
    exactly as if all of them had been built up front.
    """
    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog="\n\n".join([_MAIN_EXAMPLES, EXIT_HELP, _ENV_HELP]),
        formatter_class=_Formatter,
        add_help=False,
    )
    parser.json_errors = json_errors
    _add(parser, top_options())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for spec in COMMANDS:
        p = sub.add_parser(
            spec.name,
            help=spec.help,
            description=spec.description,
            epilog="examples:\n" + spec.examples,
            formatter_class=_Formatter,
            add_help=False,
        )
        p.json_errors = json_errors
        p.command = spec
        if spec.name == command:
            p.fill()
    return parser
