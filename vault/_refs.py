"""Secret references: ``cbk://SECRET[/FIELD]`` names one string held in a vault.

A reference lets a ``.env`` file, a config template or a script say *where* a credential
lives without holding it::

    cbk://@openai                  the value of the secret whose alias is "openai"
    cbk://(GitHub)/token           the token of the (oldest) secret named "GitHub"
    cbk://Stripe%20Live/password   a basic secret's password, by a name no other secret has
    cbk://@partner/clientId        a config key (the same as cbk://@partner/config.clientId)
    cbk://@openai/meta.team.owner  a meta key; dots walk nested objects

Grammar (a full reference; the scheme is matched in any case)::

    ref     = "cbk://" secret [ "/" field ]
    secret  = 1*char                                  an id, @alias, (name) or a unique name
    field   = "value" / "username" / "password" / "token"
            / "meta." path / "config." path / path    a bare path is a config key
    path    = segment *( "." segment )
    segment = 1*char                                  a raw "." separates segments
    char    = %XX (UTF-8 bytes, decoded strictly) / any character except
              "/" "?" "#" "{" "}" "%", controls, format characters (bidi, zero-width)
              and whitespace other than U+0020; a space may not begin or end a part

So a name holding ``/`` is written ``%2F``, a meta key holding ``.`` is written ``%2E``, and
whatever ``fetch`` accepts can be referenced. ``?``, ``#``, ``{`` and ``}`` are reserved.

Parsing (:func:`parse_ref`) and printing (``str(SecretRef)``, the canonical form) are pure;
so are :func:`resolve_refs` and :func:`inject_refs`, which work over any resolver
callable. :func:`ref_resolver` makes that callable for an open vault, and :func:`read`
opens the vault itself (see ``_unattended`` for the order). Errors are typed:
:class:`~vault.InvalidRequestError` for a malformed reference or an ambiguous name,
:class:`~vault.NotFoundError` for a missing secret or field. Messages name positions,
fields and ids, never a value (and never echo a malformed reference, in case a value
was pasted where a reference belongs).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from . import _credentials
from ._accesslog import surface
from ._credentials import BasicCredentials
from ._records import Secret
from ._unattended import PathArg, open_unattended
from ._vault import Vault, raw_records
from .errors import ConflictError, InvalidRequestError, MintRefusedError, NotFoundError, VaultError

__all__ = [
    "FIELDS",
    "MAX_REF_LENGTH",
    "SCHEME",
    "RefResolver",
    "Resolver",
    "SecretRef",
    "field_of",
    "inject_refs",
    "is_ref",
    "parse_ref",
    "read",
    "ref_resolver",
    "resolve_refs",
]

SCHEME: Final = "cbk://"
#: The FIELD words; ``meta`` and ``config`` take a key path.
FIELDS: Final = ("value", "username", "password", "token", "meta", "config")
_WORDS: Final = frozenset(FIELDS[:4])
#: A name is at most 1024 characters; fully escaped (12 bytes of %XX per 4-byte character) it fits.
MAX_REF_LENGTH: Final = 16384
#: meta and config nest at most 8 deep; a longer path can only miss.
_MAX_PATH: Final = 32
#: Characters that always need %XX: the separators and the reserved ones.
_RESERVED: Final = frozenset("/?#{}%")
_BAD_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_HEX: Final = frozenset("0123456789abcdefABCDEF")

#: What resolves one reference to its string: ``ref_resolver(v)``, or your own (tests, the CLI).
Resolver = Callable[[str], str]
_T = TypeVar("_T")


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError(f"malformed secret reference: {message}")


def _raw_ok(char: str) -> bool:
    """Whether ``char`` may appear unescaped (reserved ones aside)."""
    category = unicodedata.category(char)
    if category in _BAD_CATEGORIES:
        return False
    return not (category == "Zs" and char != " ")


def is_ref(text: object) -> bool:
    """Whether ``text`` is meant as a reference: a string starting with ``cbk://`` (any case).

    Such a string is parsed, and a malformed one is an error rather than a literal value.
    """
    # ASCII only: str.lower() maps the Kelvin sign (U+212A) to "k".
    return isinstance(text, str) and text[:6].isascii() and text[:6].lower() == SCHEME


def _decode(part: str, offset: int, what: str) -> str:
    """One percent-encoded part, checked character by character and decoded strictly as UTF-8."""
    if not part:
        raise _bad(f"{what} is empty (at character {offset + 1})")
    if part[0] == " " or part[-1] == " ":
        raise _bad(f"{what} begins or ends with a space (write it as %20)")
    out = bytearray()
    i = 0
    while i < len(part):
        char = part[i]
        if char == "%":
            pair = part[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise _bad(f"'%' at character {offset + i + 1} is not followed by two hex digits")
            out.append(int(pair, 16))
            i += 3
            continue
        if char in _RESERVED or not _raw_ok(char):
            raise _bad(f"character {offset + i + 1} (U+{ord(char):04X}) must be percent-encoded")
        out += char.encode("utf-8")
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"the %XX escapes of the {what} are not UTF-8") from None


def _encode(text: str, *, dots: bool) -> str:
    """The canonical escaped form of one part (``_decode``'s inverse)."""
    out: list[str] = []
    last = len(text) - 1
    for i, char in enumerate(text):
        edge_space = char == " " and i in (0, last)
        if char in _RESERVED or (dots and char == ".") or edge_space or not _raw_ok(char):
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed reference: which secret (``secret``, decoded) and which of its strings.

    ``field`` is one of ``value`` (the default), ``username``, ``password``, ``token``,
    ``meta`` or ``config``; ``path`` is the key path for the last two (empty otherwise).
    ``str(ref)`` is the canonical ``cbk://`` form, which parses back to an equal ref.
    """

    secret: str
    field: str = "value"
    path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.secret) is not str or not self.secret:
            raise InvalidRequestError("SecretRef.secret must be a non-empty string")
        if self.field not in FIELDS:
            raise InvalidRequestError(f"SecretRef.field must be one of {', '.join(FIELDS)}")
        if type(self.path) is not tuple or not all(type(p) is str and p for p in self.path):
            raise InvalidRequestError("SecretRef.path must be a tuple of non-empty strings")
        if (self.field in ("meta", "config")) != bool(self.path):
            raise InvalidRequestError("SecretRef.path is required for meta and config, and only for them")
        if len(self.path) > _MAX_PATH:
            raise InvalidRequestError(f"SecretRef.path is longer than {_MAX_PATH} keys")
        for part in (self.secret, *self.path):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError("SecretRef parts must be valid Unicode text") from None

    def __str__(self) -> str:
        head = SCHEME + _encode(self.secret, dots=False)
        if self.field == "value":
            return head
        if not self.path:
            return f"{head}/{self.field}"
        return f"{head}/{self.field}." + ".".join(_encode(p, dots=True) for p in self.path)


def parse_ref(text: str) -> SecretRef:
    """Parse ``cbk://SECRET[/FIELD]`` (see the module docstring); :class:`~vault.InvalidRequestError` if malformed.

    Pure: no vault is touched. ``str()`` of the result is the canonical form.
    """
    if type(text) is not str:
        raise InvalidRequestError("a secret reference must be a string")
    if len(text) > MAX_REF_LENGTH:
        raise _bad(f"longer than {MAX_REF_LENGTH} characters")
    if not is_ref(text):
        raise _bad("it must start with cbk://")
    body = text[len(SCHEME) :]
    secret_text, sep, field_text = body.partition("/")
    secret = _decode(secret_text, len(SCHEME), "SECRET")
    if not sep:
        return SecretRef(secret)
    start = len(SCHEME) + len(secret_text) + 1
    if "/" in field_text:
        at = start + field_text.index("/") + 1
        raise _bad(f"a second '/' at character {at} (write a '/' inside a name as %2F)")
    if not field_text:
        raise _bad("FIELD after '/' is empty")
    segments: list[str] = []
    offset = start
    for raw in field_text.split("."):
        segments.append(_decode(raw, offset, "FIELD segment"))
        offset += len(raw) + 1
    head = segments[0]
    if len(segments) == 1 and head in _WORDS:
        return SecretRef(secret, head)
    if head in ("meta", "config"):
        if len(segments) == 1:
            raise _bad(f"FIELD {head} needs a key: {head}.KEY")
        field, path = head, segments[1:]
    elif head in _WORDS:
        raise _bad(f"{head} takes no key (for a config key named {head!r} write config.{head})")
    else:
        field, path = "config", segments
    if len(path) > _MAX_PATH:
        raise _bad(f"FIELD has more than {_MAX_PATH} keys")
    return SecretRef(secret, field, tuple(path))


# --- what a reference picks out of a secret --------------------------------------------------------


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(found: object) -> str:
    """A meta or config leaf as text: strings as they are, other JSON as compact JSON."""
    if isinstance(found, str):
        return found
    return json.dumps(found, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _walk(secret: Secret, tree: dict[str, Any] | None, ref: SecretRef) -> str:
    current: Any = tree
    for key in ref.path:
        if type(current) is not dict or key not in current:
            current = None
            break
        current = current[key]
    if current is None:
        where = ".".join(ref.path)
        raise NotFoundError(f"secret {secret.id} has no {ref.field}.{_shown(where)}")
    return _text(current)


def field_of(secret: Secret, ref: SecretRef, source: _credentials.SecretSource | None = None) -> str:
    """The string ``ref`` picks out of ``secret`` (fetched, with its value).

    A ``reference`` secret is first resolved through ``source`` (its target's type, config and
    value; its own meta). ``username``/``password``: a basic secret, parsed as
    ``Secret.credentials()`` does. ``token``: what ``Secret.credentials()`` gives for bearer,
    jwt (freshly minted), oauth (the stored access token) and plain. A missing value or key is
    :class:`~vault.NotFoundError`; an oauth or jwt secret that cannot give a token raises
    :class:`~vault.MintRefusedError`.
    """
    if ref.field == "meta":
        return _walk(secret, secret.meta, ref)
    effective = _credentials.resolve(source, secret)
    if ref.field == "config":
        return _walk(secret, effective.config, ref)
    if ref.field == "value":
        if effective.value is None:
            raise NotFoundError(f"secret {secret.id} has no value")
        return effective.value
    if ref.field in ("username", "password"):
        if effective.type != "basic":
            raise NotFoundError(
                f"secret {secret.id} is a {effective.type} secret: only basic secrets have a {ref.field}"
            )
        creds = _credentials_of(secret, effective)
        assert isinstance(creds, BasicCredentials)
        return creds.username if ref.field == "username" else creds.password
    # token
    if effective.type not in ("bearer", "jwt", "oauth", "plain"):
        hint = " (use /username or /password)" if effective.type == "basic" else ""
        raise NotFoundError(f"secret {secret.id} is a {effective.type} secret: it has no token{hint}")
    creds = _credentials_of(secret, effective)
    assert isinstance(creds, str)
    return creds


def _credentials_of(secret: Secret, effective: Secret) -> BasicCredentials | str:
    try:
        return _credentials.credentials(effective)
    except MintRefusedError:
        raise
    except ConflictError:
        # Only "has no value here" reaches this: the field does not exist.
        raise NotFoundError(f"secret {secret.id} has no value") from None
    except InvalidRequestError:
        if effective.type != "basic":
            raise
        raise NotFoundError(
            f"secret {secret.id} is a basic secret whose value is in no accepted form: it has no username or password"
        ) from None


# --- resolving against a vault --------------------------------------------------------------------


class RefResolver:
    """Resolves references against one open vault: ``resolver("cbk://@openai") -> str``.

    Each secret is fetched once per resolver (so ``/username`` and ``/password`` of one
    secret cost one fetch); bare names are looked up in one pass over the metadata. Keep a
    resolver for one batch of references; it holds the values it fetched.
    """

    def __init__(self, v: Vault) -> None:
        self._vault = v
        self._fetched: dict[str, Secret] = {}
        self._names: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"<RefResolver over {self._vault!r}>"

    def __call__(self, ref: str | SecretRef) -> str:
        parsed = ref if isinstance(ref, SecretRef) else parse_ref(ref)
        # Its reads are logged as ``read`` unless the entry point that called it named them
        # (inject_refs, resolve_refs, load_env), or the caller did (access_context).
        with surface("read"):
            secret = self._fetched.get(parsed.secret)
            if secret is None:
                secret = self._vault.secret.fetch(self._identifier(parsed.secret))
                self._fetched[parsed.secret] = secret
            return field_of(secret, parsed, self._vault)

    def _identifier(self, secret: str) -> str:
        """What ``fetch`` takes: ``@alias`` and ``(name)`` as written, else an id, else a unique name."""
        if secret.startswith("@") or (len(secret) >= 2 and secret[0] == "(" and secret[-1] == ")"):
            return secret
        raw = raw_records(self._vault)
        try:
            return raw.lookup(secret).id  # an exact id: one dict lookup, and an id wins over a name
        except NotFoundError:
            pass
        if self._names is None:
            names: dict[str, list[str]] = {}
            for item, _ext, _has_value in raw.all():
                names.setdefault(item.name, []).append(item.id)
            self._names = names
        ids = self._names.get(secret, [])
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise NotFoundError(f"no secret has the id, or the name, {_shown(secret)!r}")
        listed = ", ".join(sorted(ids)[:10]) + (", ..." if len(ids) > 10 else "")
        raise InvalidRequestError(
            f"the name {_shown(secret)!r} matches {len(ids)} secrets ({listed}); reference one by its id"
        )


def ref_resolver(v: Vault) -> RefResolver:
    """A resolver over the open vault ``v`` for :func:`resolve_refs` and :func:`inject_refs`."""
    return RefResolver(v)


def read(ref: str | SecretRef, *, path: PathArg = None) -> str:
    """The string a ``cbk://`` reference names, read from the vault at ``path``.

    ``path=None`` means ``$CBK_VAULT_PATH``, else the default vault. The vault is opened
    without ever prompting: through the unlock agent if it holds the vault, else with
    ``$CBK_VAULT_PASSPHRASE`` if set, else :class:`~vault.NotUnlockedError`. A malformed
    reference fails before the vault is opened.
    """
    parsed = ref if isinstance(ref, SecretRef) else parse_ref(ref)
    with open_unattended(path) as v, surface("read"):
        return RefResolver(v)(parsed)


# --- pure helpers over any resolver -----------------------------------------------------------------


def _with_context(exc: VaultError, where: str) -> VaultError:
    # Every VaultError's constructor differs (MintRefusedError takes two arguments), so the
    # message is amended in place rather than rebuilt; the type and code stay the same.
    exc.message = f"{where}: {exc.message}"
    exc.args = (exc.message,)
    return exc


def resolve_refs(values: Mapping[str, _T], resolve: Resolver) -> dict[str, _T | str]:
    """A copy of ``values`` with every ``cbk://`` string replaced by ``resolve(it)``.

    Other values pass through unchanged. An error names the key it happened at (the key is
    a variable or setting name, never a value). Pure over ``resolve``.
    """
    out: dict[str, _T | str] = {}
    with surface("resolve"):  # the access log's name for the reads, unless a caller named them
        for key, value in values.items():
            if isinstance(value, str) and is_ref(value):
                try:
                    out[key] = resolve(value)
                except VaultError as exc:
                    raise _with_context(exc, _shown(str(key))) from None
            else:
                out[key] = value
    return out


#: ``{{ cbk://... }}``: spaces or tabs inside the braces are optional, a reference holds no brace or line break.
_PLACEHOLDER: Final = re.compile(r"\{\{[ \t]*(cbk://[^{}\r\n]*?)[ \t]*\}\}", re.IGNORECASE | re.ASCII)
_OPENING: Final = re.compile(r"\{\{[ \t]*cbk://", re.IGNORECASE | re.ASCII)


def inject_refs(template: str, resolve: Resolver) -> str:
    """``template`` with every ``{{ cbk://... }}`` placeholder replaced by ``resolve(ref)``.

    Other ``{{ ... }}`` text is left alone (it may belong to another template language). A
    placeholder that starts like ``{{ cbk://`` but does not close on the same line is an
    error, so a typo never leaves a reference behind in the output. Errors name the line.
    Pure over ``resolve``; the result holds secret values.
    """
    if type(template) is not str:
        raise InvalidRequestError("a template must be a string")
    out: list[str] = []
    pos = 0
    for opening in _OPENING.finditer(template):
        start = opening.start()
        if start < pos:
            continue
        line = template.count("\n", 0, start) + 1
        found = _PLACEHOLDER.match(template, start)
        if found is None:
            raise InvalidRequestError(f"line {line}: a {{{{ cbk://... }}}} placeholder is not closed on its line")
        try:
            with surface("inject"):  # the access log's name for the reads, unless a caller named them
                value = resolve(found.group(1))
        except VaultError as exc:
            raise _with_context(exc, f"line {line}") from None
        out.append(template[pos:start])
        out.append(value)
        pos = found.end()
    out.append(template[pos:])
    return "".join(out)
