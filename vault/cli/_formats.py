"""Export and import formats of the command line: JSON (every field), dotenv, and KeePass (read only).

Parsing is pure: a file's bytes become a list of :class:`Record` or a :class:`UsageError`
naming the item or line at fault, never its contents. Nothing touches a vault until the
whole file has parsed, and then everything is written inside one ``batch()``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .. import _format, _rules
from .._records import Secret
from ..errors import InvalidRequestError, WrongPassphraseError
from ._terminal import UsageError, dump_json, load_json

__all__ = [
    "DENIED_ENV",
    "EXPORT_FORMAT",
    "Record",
    "env_denial",
    "env_name_for",
    "looks_like_env",
    "parse_env",
    "parse_json",
    "parse_kdbx",
    "render_env",
    "require_pykeepass",
    "render_json",
]

EXPORT_FORMAT: Final = "cbk-vault-export"
EXPORT_VERSION: Final = 1
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIMESTAMP_KEYS: Final = ("createdAt", "updatedAt")
_ALLOWED_KEYS: Final = frozenset(_rules.REQUEST_FIELDS) | {"id", *_TIMESTAMP_KEYS}
_MAX_TIMESTAMP: Final = 253402300799999  # 9999-12-31: anything later is not an epoch-ms time


@dataclass
class Record:
    """One secret to import: snake_case fields, and the id and timestamps to keep when known."""

    fields: dict[str, Any]
    id: str | None = None
    created_at: int | None = None
    updated_at: int | None = None
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- variable names a secret may not choose ----------------------------------------------------


@dataclass(frozen=True)
class EnvGroup:
    """Variables a secret may not choose, and why: exact names, name prefixes and name suffixes (upper case)."""

    reason: str
    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()

    def matches(self, upper: str) -> bool:
        """Whether the upper-cased variable name ``upper`` is in this group."""
        return upper in self.names or upper.startswith(self.prefixes) or upper.endswith(self.suffixes)


#: Variables that change what a program runs, loads, trusts or talks to, rather than handing it a
#: credential. A secret is written by anyone who can write one: a sync pull from a hostile or
#: compromised cloud, an imported file, any client of the stand-in. Through ``meta.env`` (or,
#: for ``export --format env``, an alias or a name) it chooses the variable it lands in, and the
#: owner's next ``cbk-vault run -- anything`` would load ``LD_PRELOAD=/tmp/evil.so``. So a secret
#: may not choose one of these; only the owner may, by naming it on the command line
#: (``run --env NAME=SECRET``, or ``--allow-env NAME`` on ``run`` and ``export``).
#:
#: Names are compared without regard to case: proxies are read as ``http_proxy`` and
#: ``HTTP_PROXY`` alike, Windows ignores case in every name, and no credential needs to be
#: spelled ``path``. docs/CLI.md lists the same groups (a test keeps the two in step).
DENIED_ENV: Final[tuple[EnvGroup, ...]] = (
    EnvGroup(
        "the dynamic loader loads code from it",
        names=frozenset({"GCONV_PATH", "HOSTALIASES", "LOCPATH", "NLSPATH", "RESOLV_HOST_CONF"}),
        prefixes=("LD_", "DYLD_"),
    ),
    EnvGroup(
        "an interpreter runs or loads code from it at start-up",
        names=frozenset(
            {
                "CLASSPATH",
                "JAVA_TOOL_OPTIONS",
                "JDK_JAVA_OPTIONS",
                "NODE_OPTIONS",
                "NODE_PATH",
                "PERL5DB",
                "PERL5LIB",
                "PERL5OPT",
                "PERLLIB",
                "PHPRC",
                "PHP_INI_SCAN_DIR",
                "RUBYLIB",
                "RUBYOPT",
                "R_PROFILE",
                "R_PROFILE_USER",
                "TCLLIBPATH",
                "_JAVA_OPTIONS",
            }
        ),
        prefixes=("PYTHON", "LUA_"),
    ),
    EnvGroup(
        "a shell runs code from it at start-up or when it prompts, or it changes how scripts parse",
        names=frozenset(
            {
                "BASHOPTS",
                "BASH_ENV",
                "CDPATH",
                "ENV",
                "GLOBIGNORE",
                "IFS",
                "PROMPT_COMMAND",
                "PS0",
                "PS1",
                "PS2",
                "PS3",
                "PS4",
                "SHELLOPTS",
                "ZDOTDIR",
            }
        ),
        prefixes=("BASH_FUNC_",),
    ),
    EnvGroup(
        "it decides which program a name runs, or where configuration and temporary files are found",
        names=frozenset({"HOME", "PATH", "SHELL", "TEMP", "TMP", "TMPDIR", "XDG_CONFIG_DIRS", "XDG_CONFIG_HOME"}),
    ),
    EnvGroup(
        "it sends the program's traffic, tokens included, through another host",
        names=frozenset({"ALL_PROXY", "FTP_PROXY", "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}),
    ),
    EnvGroup(
        # OPENAI_BASE_URL, ANTHROPIC_BASE_URL, CHATBOTKIT_BASE_URL...; OPENAI_API_BASE is the old spelling.
        "it sends an SDK's requests, the API key included, to another host",
        names=frozenset({"OPENAI_API_BASE"}),
        suffixes=("_BASE_URL",),
    ),
    EnvGroup(
        "it changes which TLS certificates are trusted, or writes the TLS session keys to a file",
        names=frozenset(
            {
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
                "NODE_TLS_REJECT_UNAUTHORIZED",
                "OPENSSL_CONF",
                "OPENSSL_ENGINES",
                "OPENSSL_MODULES",
                "REQUESTS_CA_BUNDLE",
                "SSLKEYLOGFILE",
                "SSL_CERT_DIR",
                "SSL_CERT_FILE",
            }
        ),
    ),
    EnvGroup(
        "git runs commands and reads configuration from it",
        prefixes=("GIT_",),
    ),
    EnvGroup(
        "tools run it as a program (an editor, a pager, a password prompt, a browser)",
        names=frozenset(
            {
                "BROWSER",
                "EDITOR",
                "LESSCLOSE",
                "LESSOPEN",
                "MANPAGER",
                "PAGER",
                "SSH_ASKPASS",
                "SUDO_ASKPASS",
                "VISUAL",
            }
        ),
    ),
    EnvGroup(
        "cbk-vault reads it itself (the vault path, passphrases, the sync endpoint)",
        names=frozenset({"CHATBOTKIT_BASE_URL"}),
        prefixes=("CBK_VAULT_",),
    ),
)


def env_denial(name: str) -> str | None:
    """Why a secret may not choose the variable ``name`` (one of :data:`DENIED_ENV`), or None if it may."""
    upper = name.upper()
    for group in DENIED_ENV:
        if group.matches(upper):
            return group.reason
    return None


# --- JSON -------------------------------------------------------------------------------


def render_json(secrets: Iterable[Secret], exported_at: int) -> str:
    """Every field of every secret, value and unmasked config included: import restores them exactly."""
    doc = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exportedAt": exported_at,
        "items": [s.to_dict(reveal=True) for s in secrets],
    }
    return dump_json(doc, indent=2) + "\n"


def _timestamp(item: Mapping[str, Any], key: str, where: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP:
        raise UsageError(f"{where}: {key} must be epoch milliseconds")
    return value


def _record_from_item(item: object, where: str) -> Record:
    if not isinstance(item, dict):
        raise UsageError(f"{where}: must be an object")
    unknown = sorted(k for k in item if k not in _ALLOWED_KEYS)
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:37] + "..."
        raise UsageError(f"{where}: unknown field {shown!r}")
    record_id = item.get("id")
    if record_id is not None and (type(record_id) is not str or _format.ID_RE.fullmatch(record_id) is None):
        raise UsageError(f"{where}: id has the wrong form")
    fields: dict[str, Any] = {}
    for wire, snake in _rules.REQUEST_FIELDS.items():
        if wire in item:
            try:
                fields[snake] = _rules.check_field(snake, item[wire])
            except InvalidRequestError as exc:
                raise UsageError(f"{where}: {exc.message}") from None
    config = fields.get("config")
    if config is not None and config.get("clientSecret") == _rules.MASK:
        # A masked config came from a non-revealing list; importing it would store the mask as the secret.
        raise UsageError(f"{where}: config.clientSecret is masked; export with `cbk-vault export --format json`")
    return Record(
        fields=fields,
        id=record_id,
        created_at=_timestamp(item, "createdAt", where),
        updated_at=_timestamp(item, "updatedAt", where),
        label=str(item.get("name") or record_id or where),
    )


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse_json(data: bytes) -> list[Record]:
    """Our export document, the cloud's list body ``{"items": [...]}``, or a bare list of items."""
    doc = load_json(data, "the file")
    if isinstance(doc, dict):
        if "format" in doc and doc["format"] != EXPORT_FORMAT:
            raise UsageError('not a cbk-vault export (unknown "format")')
        if "version" in doc and doc["version"] != EXPORT_VERSION:
            # Never echo the field: a foreign file may hold anything in it, a secret included.
            raise UsageError(f"export version is not supported (this build reads {EXPORT_VERSION})")
        items = doc.get("items")
        if not isinstance(items, list):
            raise UsageError('expected an "items" list')
    elif isinstance(doc, list):
        items = doc
    else:
        raise UsageError('expected a cbk-vault export, {"items": [...]}, or a list of secrets')
    records = [_record_from_item(item, f"item {i + 1}") for i, item in enumerate(items)]
    _check_unique(records)
    return records


def _check_unique(records: list[Record]) -> None:
    ids: dict[str, int] = {}
    aliases: dict[str, int] = {}
    for n, rec in enumerate(records, 1):
        if rec.id is not None:
            if rec.id in ids:
                raise UsageError(f"item {n}: id {rec.id} repeats item {ids[rec.id]}")
            ids[rec.id] = n
        alias = rec.fields.get("alias")
        if alias is not None:
            if alias in aliases:
                raise UsageError(f"item {n}: alias {alias!r} repeats item {aliases[alias]}")
            aliases[alias] = n


# --- dotenv -----------------------------------------------------------------------------

_SAFE_SINGLE: Final = re.compile(r"[^'\r\n]*")
_ESCAPES: Final = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$", "`": "`"}


def env_name_for(secret: Secret) -> str | None:
    """The variable a secret exports as: ``meta.env``, else its alias, else its name, upper snake case."""
    meta_env = (secret.meta or {}).get("env")
    if isinstance(meta_env, str) and ENV_NAME.fullmatch(meta_env):
        return meta_env
    for source in (secret.alias, secret.name):
        if source:
            name = re.sub(r"[^A-Za-z0-9]+", "_", source).strip("_").upper()
            if name and ENV_NAME.fullmatch(name):
                return name
    return None


def _quote_env(value: str) -> str:
    # Single quotes are literal in POSIX shells and in dotenv parsers; only values that cannot be
    # single-quoted fall back to double quotes with backslash escapes (which our parser reverses).
    if _SAFE_SINGLE.fullmatch(value):
        return f"'{value}'"
    out = []
    for ch in value:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in '\\"$`':
            # Inside double quotes a shell still expands $, ` and backslash: a bare backtick would run
            # a command when the file is sourced (`set -a; . ./.env`).
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_env(pairs: Iterable[tuple[str, str]]) -> str:
    """``NAME=value`` lines, quoted so that sourcing the file never runs a command."""
    return "".join(f"{name}={_quote_env(value)}\n" for name, value in pairs)


_ENV_LINE: Final = re.compile(rb"(?:export[ \t]+)?[A-Za-z_][A-Za-z0-9_]*[ \t]*=")


def looks_like_env(data: bytes) -> bool:
    """Whether the first line that is not blank or a comment reads ``NAME=`` (a guess for import and errors)."""
    for line in data.lstrip(b"\xef\xbb\xbf").splitlines()[:200]:
        stripped = line.strip()
        if stripped and not stripped.startswith(b"#"):
            return _ENV_LINE.match(stripped) is not None
    return False


def parse_env(data: bytes) -> list[Record]:
    """``KEY=value`` lines (``export`` prefix, ``#`` comments, single, double or no quotes) -> plain secrets.

    Each variable becomes a secret named after it with ``meta.env`` set, so ``cbk-vault run``
    injects it under the same name again.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the file is not UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    # Only CR, LF and CRLF end a line: str.splitlines() also breaks at \x0b, \x0c, \x85,
    # \u2028 and others, which may sit inside a quoted value that must come back unchanged.
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    records: list[Record] = []
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not ENV_NAME.fullmatch(key):
            raise UsageError(f"line {lineno}: expected NAME=value")
        rest = rest.lstrip()
        if rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise UsageError(f"line {lineno}: unclosed single quote")
            value, tail = rest[1:end], rest[end + 1 :]
        elif rest.startswith('"'):
            value, tail, i = _parse_double(rest, lines, i, lineno)
        else:
            value, tail = rest.split(" #", 1)[0].split("\t#", 1)[0].rstrip(), ""
        tail = tail.strip()
        if tail and not tail.startswith("#"):
            raise UsageError(f"line {lineno}: unexpected text after the closing quote")
        if key in seen:
            raise UsageError(f"line {lineno}: {key} was already set on line {seen[key]}")
        seen[key] = lineno
        try:
            checked = _rules.check_field("value", value)
        except InvalidRequestError as exc:
            raise UsageError(f"line {lineno}: {exc.message}") from None
        records.append(Record(fields={"name": key, "value": checked, "meta": {"env": key}}, label=key))
    return records


def _parse_double(rest: str, lines: list[str], i: int, lineno: int) -> tuple[str, str, int]:
    """A double-quoted value, possibly over several lines; returns (value, text after it, next line index)."""
    out: list[str] = []
    text = rest[1:]
    while True:
        j = 0
        while j < len(text):
            ch = text[j]
            if ch == "\\" and j + 1 < len(text):
                nxt = text[j + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                j += 2
                continue
            if ch == '"':
                return "".join(out), text[j + 1 :], i
            out.append(ch)
            j += 1
        if i >= len(lines):
            raise UsageError(f"line {lineno}: unclosed double quote")
        out.append("\n")
        text = lines[i]
        i += 1


# --- KeePass ------------------------------------------------------------------------------


def _epoch_ms(value: object) -> int | None:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return max(0, int(value.timestamp() * 1000))
    return None


def require_pykeepass() -> tuple[Any, Any]:
    """The optional ``pykeepass`` module and its exceptions, or a usage error saying how to install it."""
    try:
        # importlib keeps the optional dependency out of the type check (it ships no stubs).
        return importlib.import_module("pykeepass"), importlib.import_module("pykeepass.exceptions")
    except ImportError:
        raise UsageError("KeePass import needs the optional package pykeepass: pip install 'cbk-vault[kdbx]'") from None


def parse_kdbx(path: str, password: str | None, keyfile: str | None) -> list[Record]:
    """Entries of a KeePass 3/4 database through the optional ``pykeepass`` package.

    Title -> name, notes -> description, a username turns the entry into a ``basic`` secret
    whose value is ``{"username", "password"}`` JSON (a form the cloud's basic type reads),
    otherwise a ``plain`` secret holding the password. URL, group path and the entry's UUID
    go to ``meta.keepass``; creation and modification times are kept.
    """
    pykeepass, kp_errors = require_pykeepass()
    try:
        db: Any = pykeepass.PyKeePass(path, password=password, keyfile=keyfile)
    except kp_errors.CredentialsError:
        raise WrongPassphraseError("wrong password or key file for the KeePass database") from None
    except FileNotFoundError:
        raise UsageError(f"file {path!r} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror}") from None
    except Exception:
        # pykeepass raises construct/lxml/checksum errors of many kinds for a damaged or foreign file;
        # their text can quote decrypted bytes, so none of it is shown.
        raise UsageError(f"{path!r} is not a readable KeePass database") from None
    records: list[Record] = []
    recycle = getattr(db, "recyclebin_group", None)
    for n, entry in enumerate(db.entries, 1):
        group = entry.group
        if recycle is not None and _in_group(group, recycle):
            continue
        where = f"entry {n}"
        username = entry.username or ""
        password_text = entry.password or ""
        if username:
            type_ = "basic"
            value: str | None = json.dumps({"username": username, "password": password_text})
        else:
            type_ = "plain"
            value = password_text or None
        keepass: dict[str, Any] = {"uuid": str(entry.uuid)}
        group_path = [p for p in (group.path if group is not None else []) if p]
        if group_path:
            keepass["group"] = "/".join(group_path)
        if entry.url:
            keepass["url"] = entry.url
        raw = {"name": entry.title or "", "description": entry.notes or "", "type": type_, "value": value}
        fields: dict[str, Any] = {}
        try:
            for key, item in raw.items():
                fields[key] = _rules.check_field(key, item)
            fields["meta"] = _rules.check_field("meta", {"keepass": keepass})
        except InvalidRequestError as exc:
            raise UsageError(f"{where}: {exc.message}") from None
        records.append(
            Record(
                fields=fields,
                created_at=_epoch_ms(getattr(entry, "ctime", None)),
                updated_at=_epoch_ms(getattr(entry, "mtime", None)),
                label=fields["name"] or where,
            )
        )
    return records


def _in_group(group: Any, target: Any) -> bool:
    while group is not None:
        if group == target:
            return True
        group = group.parentgroup
    return False
