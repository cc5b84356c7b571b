"""Credentials: what the cloud does with a secret's value when it is *used*: typed credentials, the
``Authorization`` header it would inject, reference resolution and local JWT/OAuth minting.

These are the offline equivalents of the platform's use-time logic (``secret.value``,
``creds.basic.parse``, ``secret.reference``, ``secret.mint``, ``secret.proxy``), read from the
platform's source (docs/FIDELITY.md, section I). :func:`use_value` is what the stand-in's
verify, revoke, mint and proxy decide on; ``credentials()``, ``authorization_header()`` and
``mint()`` are the local helpers, with their own documented rules. Nothing here talks to the
network. Error messages name the secret's id and the rule that failed, never any part of the value.

``Secret.credentials()`` and ``Secret.authorization_header()`` delegate here. This module sits
below ``_records``: it takes a Secret and a vault by their shape, never by import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import math
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from .errors import ConflictError, InvalidRequestError, MintRefusedError, MissingDependencyError, NotFoundError

if TYPE_CHECKING:
    from ._records import Secret


class _SecretFetcher(Protocol):
    def fetch(self, secret_id: str) -> Secret: ...


class SecretSource(Protocol):
    """Where a reference's target comes from: anything with ``.secret.fetch`` (a Vault)."""

    @property
    def secret(self) -> _SecretFetcher: ...

__all__ = [
    "NO_CONTEXT_MESSAGE",
    "REFERENCE_DEPTH",
    "BasicCredentials",
    "ContextRequiredError",
    "MintRefusedError",
    "MissingDependencyError",
    "ResolutionError",
    "SecretSource",
    "UsableValue",
    "authorization_header",
    "cloud_identifier",
    "credentials",
    "destination_refused",
    "is_http_uri",
    "js_trim",
    "mint",
    "mint_jwt",
    "outbound_headers",
    "parse_basic",
    "placeholder_names",
    "resolve",
    "secret_name",
    "signed_state",
    "use_value",
]

#: The cloud's jwt defaults (SRV ``secret.mint``): RS256, ten minutes.
JWT_DEFAULT_ALGORITHM: Final = "RS256"
JWT_DEFAULT_EXPIRY: Final = 600
#: A generous cap so a typo in ``expiresInSeconds`` cannot mint a token that never expires.
JWT_MAX_EXPIRY: Final = 366 * 24 * 3600

# Config keys a reference secret may override on its target (SRV ``ALLOWED_USER_CONFIG_FIELDS``).
_REFERENCE_OVERRIDES: Final = frozenset({"clientId", "clientSecret", "scope", "user", "username", "pass", "password"})
_USER_KEYS: Final = ("username", "user")
_PASS_KEYS: Final = ("password", "pass")


def _json_object(text: str) -> dict[str, Any] | None:
    """A JSON object held in a secret value, or None (not JSON, not an object, or nested past the stack)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


@dataclass(frozen=True, slots=True, repr=False)
class BasicCredentials:
    """Username and password of a ``basic`` secret. Unpacks as ``user, password = creds``."""

    username: str
    password: str

    def __iter__(self) -> Iterator[str]:
        return iter((self.username, self.password))

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__

    def header(self) -> str:
        """``Basic base64(username:password)``, as the cloud injects it."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# --- parsing -------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _pick(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        found = mapping.get(key)
        if isinstance(found, str):
            return found
    return None


def parse_basic(value: str) -> BasicCredentials | None:
    """Parse a basic value in any of the cloud's forms; None when it is empty or unparseable.

    Forms, tried in this order: JSON ``{"username","password"}``; two or more lines of
    ``username: x`` / ``password: y`` (YAML-ish) or ``user=x`` / ``pass=y`` (properties);
    a raw ``user:pass`` split at the first colon. ``user``/``pass`` alias the long keys.
    """
    text = value.strip()
    if not text:
        return None  # the cloud counts an empty value as no value
    if text.startswith("{"):
        obj = _json_object(text)
        if obj is None:
            return None
        user = _pick(obj, _USER_KEYS)
        return None if user is None else BasicCredentials(user, _pick(obj, _PASS_KEYS) or "")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) >= 2:
        fields: dict[str, str] = {}
        for line in lines:
            # Whichever separator comes first decides: "user=a:b" is properties, "user: a=b" YAML.
            colon, equals = line.find(":"), line.find("=")
            seps = [i for i in (colon, equals) if i > 0]
            if not seps:
                continue
            cut = min(seps)
            key = line[:cut].strip().lower()
            if key in _USER_KEYS + _PASS_KEYS and key not in fields:
                fields[key] = _unquote(line[cut + 1 :])
        user = _pick(fields, _USER_KEYS)
        return None if user is None else BasicCredentials(user, _pick(fields, _PASS_KEYS) or "")
    user, sep, password = text.partition(":")
    if not sep:
        return None
    return BasicCredentials(user, password)


def _oauth_state(value: str) -> tuple[str, int | None] | None:
    """The access token (and expiry, epoch ms) from an oauth secret's stored token state.

    Only structured token state counts: a JSON object with ``accessToken`` (or
    ``access_token``) and ``expiresAt`` (epoch ms) or ``expires_at`` (epoch seconds, as OAuth
    servers say it). A bare string is not token state: minting it would hand out a stored
    value as it is, which no route may do.
    """
    text = value.strip()
    if not text.startswith("{"):
        return None
    obj = _json_object(text)
    if obj is None:
        return None
    token = _pick(obj, ("accessToken", "access_token"))
    if not token:
        return None
    expires: int | None = None
    raw_ms = obj.get("expiresAt")
    raw_s = obj.get("expires_at")
    if isinstance(raw_ms, (int, float)) and not isinstance(raw_ms, bool):
        expires = int(raw_ms)
    elif isinstance(raw_s, (int, float)) and not isinstance(raw_s, bool):
        expires = int(raw_s * 1000)
    return token, expires


# --- resolution ----------------------------------------------------------------------------

#: How many references the use-time routes follow before giving up. The platform has no bound:
#: a loop built with ``config.parameters`` recurses there until the request's time runs out.
REFERENCE_DEPTH: Final = 8
# Config keys of a target that a reference never inherits (SRV ``SECRET_METADATA_FIELDS``).
_METADATA_KEYS: Final = ("reference", "secretId", "id")
# JavaScript's String.prototype.trim: WhiteSpace and LineTerminator (not Python's str.strip set).
_JS_SPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def js_trim(text: str) -> str:
    """``text.trim()`` as the platform (JavaScript) trims."""
    return text.strip(_JS_SPACE)


def _js_truthy(value: object) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, float) and value != value)


class ResolutionError(Exception):
    """The platform's plain ``Error`` while it resolves a value for use ("Cannot find secret
    reference", a jwt that does not sign, a malformed identifier).

    Not a :class:`~vault.VaultError`: each route answers it its own way (verify ``409`` with the
    message, mint, revoke and proxy ``500 GENERIC_ERROR``). The message never holds a value.
    """


class ContextRequiredError(Exception):
    """The platform's ``UserAuthError`` for a personal secret used without a contact's context."""


#: The platform's message for a personal secret used outside a contact's context (sic).
NO_CONTEXT_MESSAGE: Final = (
    "Cannot obtain valid authentication context: the current conversation session is mostly likely not trusted"
)


def cloud_identifier(raw: object) -> str:
    """An identifier as the platform's ``findUniqueByIdentifier`` reads it, in the form the vault's
    index resolves (``id``, ``@alias``, ``(name)``): trimmed, and the alias after ``@`` and the
    name inside ``( )`` trimmed too.

    Raises :class:`ResolutionError` where the platform's lookup throws: not a string, blank,
    ``@``/``()`` with nothing inside, and the other users' forms ``@@alias`` and ``@user@alias``
    (a top-level account has no parent to look in).
    """
    if not isinstance(raw, str):
        raise ResolutionError("identifier?.trim is not a function")
    identifier = js_trim(raw)
    if not identifier:
        raise ResolutionError("Identifier is required")
    if identifier.startswith("@@"):
        if not js_trim(identifier[2:]):
            raise ResolutionError("Alias is required")
        raise ResolutionError("Parent ID is required for @@ identifier")
    if identifier.startswith("@"):
        rest = identifier[1:]
        user, at, resource = rest.partition("@")
        if at:
            if not js_trim(user):
                raise ResolutionError("User alias is required")
            if not js_trim(resource):
                raise ResolutionError("Resource alias is required")
            raise ResolutionError("Parent ID is required for @user@resource identifier")
        alias = js_trim(rest)
        if not alias:
            raise ResolutionError("Alias is required")
        return "@" + alias
    if identifier.startswith("(") and identifier.endswith(")"):
        name = js_trim(identifier[1:-1])
        if not name:
            raise ResolutionError("Name is required")
        return f"({name})"
    return identifier


def _reference_target(config: Mapping[str, Any]) -> object:
    # ``const {id, secretId = id, reference = secretId} = config``: a default applies only to an
    # absent key, so a present null stops the fall-through.
    for key in ("reference", "secretId"):
        if key in config:
            return config[key]
    return config.get("id")


def _spread(target: dict[str, Any], extra: object) -> None:
    # JavaScript's ``{...target, ...extra}``: objects by key, strings and arrays by index.
    if isinstance(extra, Mapping):
        target.update(extra)
    elif isinstance(extra, (str, list)):
        target.update({str(i): item for i, item in enumerate(extra)})


def _merge_reference(reference: Secret, target: Secret) -> Secret:
    """The reference as its target (SRV ``revealSecretInstanceFromReferenceSecret``): the target's
    type; its config without ``reference``/``secretId``/``id``, then the reference's own
    ``clientId, clientSecret, scope, user, username, pass, password``, then its ``parameters``
    (or ``params``); the reference's value, else the target's. Id, kind and the rest stay the
    reference's."""
    own = reference.config or {}
    merged = {k: v for k, v in (target.config or {}).items() if k not in _METADATA_KEYS}
    merged.update({k: v for k, v in own.items() if k in _REFERENCE_OVERRIDES})
    _spread(merged, own["parameters"] if "parameters" in own else own.get("params"))
    return replace(reference, type=target.type, config=merged, value=reference.value or target.value)


def resolve(vault: SecretSource | None, secret: Secret) -> Secret:
    """The secret the cloud would actually use: a ``reference`` becomes its target.

    The target is named by ``config.reference`` (or ``secretId``, or ``id``) as an id,
    ``@alias`` or ``(name)`` and fetched from ``vault`` (with its value). The result keeps the
    reference's id, kind, name and alias and takes the target's type; its config and value are
    the platform's merge (``_merge_reference``). A target that is itself a reference has lost its
    own ``reference`` key in that merge, so, as on the platform, it resolves only when the outer
    reference's ``parameters`` name the next target; at most :data:`REFERENCE_DEPTH` steps.
    Any other type is returned unchanged (so passing ``vault=None`` is fine for them).
    """
    effective = secret
    for depth in range(REFERENCE_DEPTH):
        if effective.type != "reference":
            return effective
        target_id = _reference_target(effective.config or {})
        if not _js_truthy(target_id):
            if depth:
                raise InvalidRequestError(
                    f"reference secret {secret.id} points at another reference, which is not followed"
                    " (the cloud answers 'Cannot find secret reference')"
                )
            raise InvalidRequestError(f"reference secret {secret.id} has no config.reference")
        if vault is None:
            raise InvalidRequestError(f"reference secret {secret.id} needs the vault to resolve its target")
        try:
            identifier = cloud_identifier(target_id)
        except ResolutionError as exc:
            raise InvalidRequestError(f"reference secret {secret.id}: {exc}") from None
        effective = _merge_reference(effective, vault.secret.fetch(identifier))
    if effective.type != "reference":
        return effective
    raise InvalidRequestError(f"reference secret {secret.id}: more than {REFERENCE_DEPTH} references in a row")


def _need_value(secret: Secret) -> str:
    if not secret.value:
        raise ConflictError(
            f"secret {secret.id} has no value here (not authenticated, or not fetched: list() never returns values)"
        )
    return secret.value


def credentials(secret: Secret, vault: SecretSource | None = None) -> BasicCredentials | str:
    """Username and password for ``basic``; the token for ``bearer``, ``jwt`` (freshly
    minted) and ``oauth`` (the stored access token); the value as stored for ``plain``.

    A ``reference`` is resolved through ``vault`` first. ``template`` secrets take their
    type from the cloud's catalogue, which is not available offline.
    """
    effective = resolve(vault, secret)
    kind = effective.type
    if kind == "basic":
        if effective.value:
            parsed = parse_basic(effective.value)
            if parsed is None:
                raise InvalidRequestError(f"basic secret {secret.id} has a value in no accepted form")
            return parsed
        # Inferred: with no value, basic-shaped config keys supply the credentials.
        user = _pick(effective.config or {}, _USER_KEYS)
        if user is None:
            _need_value(effective)
        return BasicCredentials(user or "", _pick(effective.config or {}, _PASS_KEYS) or "")
    if kind in ("bearer", "plain"):
        return _need_value(effective)
    if kind == "jwt":
        return mint_jwt(effective)[0]
    if kind == "oauth":
        return _oauth_token(effective)[0]
    raise ConflictError(f"secret {secret.id} is a {kind} secret: its type comes from the cloud catalogue")


def authorization_header(secret: Secret, vault: SecretSource | None = None) -> str:
    """The ``Authorization`` header the cloud would inject for this secret.

    ``Basic <base64(user:pass)>`` for basic; ``<config.schema or Bearer> <token>`` for
    bearer and jwt; ``Bearer <access token>`` for oauth; the value as stored for plain.
    """
    effective = resolve(vault, secret)
    creds = credentials(effective, vault)
    if isinstance(creds, BasicCredentials):
        return creds.header()
    if effective.type in ("bearer", "jwt"):
        schema = (effective.config or {}).get("schema")
        return f"{schema if isinstance(schema, str) and schema else 'Bearer'} {creds}"
    if effective.type == "oauth":
        return f"Bearer {creds}"
    return creds


# --- minting ---------------------------------------------------------------------------------


def _oauth_token(secret: Secret, *, now_ms: int | None = None) -> tuple[str, int | None]:
    state = _oauth_state(secret.value or "")
    if state is None:
        raise MintRefusedError("authorization_required", f"secret {secret.id} is not authenticated")
    token, expires = state
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if expires is not None and expires <= now:
        # The cloud refreshes; offline there is no provider to refresh with.
        raise MintRefusedError("authorization_required", f"secret {secret.id} holds an expired access token")
    return token, expires


def _int_setting(secret: Secret, key: str, default: int) -> int:
    raw = (secret.config or {}).get(key, default)
    if raw is None:
        return default
    if type(raw) is float and raw.is_integer():
        raw = int(raw)
    if type(raw) is not int or not 0 < raw <= JWT_MAX_EXPIRY:
        raise InvalidRequestError(f"jwt secret {secret.id}: config.{key} must be an integer from 1 to {JWT_MAX_EXPIRY}")
    return raw


def mint_jwt(secret: Secret, *, now: float | None = None) -> tuple[str, int]:
    """Sign a fresh JWT with the secret's PEM private key: ``(token, expiresAt epoch ms)``.

    Uses ``config.algorithm`` (default RS256), ``config.expiresInSeconds`` (default 600) and
    ``config.claims``; ``iat`` and ``exp`` are set last, so ``expiresInSeconds`` decides the
    expiry. Needs PyJWT with its crypto extra (``pip install 'cbk-vault[jwt]'``).
    """
    try:
        import jwt
    except ImportError:
        raise MissingDependencyError("minting jwt secrets needs PyJWT: pip install 'cbk-vault[jwt]'") from None
    config = secret.config or {}
    algorithm = config.get("algorithm") or JWT_DEFAULT_ALGORITHM
    if not isinstance(algorithm, str) or algorithm.lower() == "none":
        # An unsigned token would let anyone forge the agent's identity.
        raise InvalidRequestError(f"jwt secret {secret.id}: config.algorithm must name a signing algorithm")
    lifetime = _int_setting(secret, "expiresInSeconds", JWT_DEFAULT_EXPIRY)
    claims = config.get("claims") or {}
    if not isinstance(claims, dict):
        raise InvalidRequestError(f"jwt secret {secret.id}: config.claims must be an object")
    key = secret.value
    if not key:
        raise MintRefusedError("authorization_required", f"jwt secret {secret.id} has no private key")
    issued = int(time.time() if now is None else now)
    payload = {**claims, "iat": issued, "exp": issued + lifetime}
    try:
        token = jwt.encode(payload, key, algorithm=algorithm)
    except NotImplementedError:
        raise InvalidRequestError(f"jwt secret {secret.id}: algorithm {algorithm[:32]!r} is not supported") from None
    except (jwt.exceptions.PyJWTError, ValueError, TypeError, binascii.Error):
        # PyJWT and cryptography report bad keys in several ways; the key itself is never shown.
        raise MintRefusedError(
            "not_mintable", f"jwt secret {secret.id}: the value is not a usable private key for {algorithm[:32]}"
        ) from None
    return token, (issued + lifetime) * 1000


def mint(secret: Secret, vault: SecretSource | None = None) -> tuple[str, int | None]:
    """The cloud's ``mint``: a usable token for an ``oauth`` or ``jwt`` secret, and its expiry (ms).

    Raises :class:`MintRefusedError` (``not_mintable`` for plain, basic, bearer and template
    secrets; ``authorization_required`` for a secret with nothing to mint from, and for
    personal secrets, which hold no value outside a contact's context).
    """
    effective = resolve(vault, secret)
    if effective.type not in ("oauth", "jwt"):
        raise MintRefusedError("not_mintable", f"{effective.type} secrets cannot be minted")
    if effective.kind == "personal":
        raise MintRefusedError(
            "authorization_required", "personal secrets are minted per contact; there is no contact here"
        )
    if effective.type == "jwt":
        token, expires = mint_jwt(effective)
        return token, expires
    return _oauth_token(effective)


# --- use-time values, as the platform resolves them -------------------------------------------------
#
# SRV ``secret.value.ts`` ``getSecretValueAndType`` for a request without a contact: what the
# stand-in's verify, revoke, mint and proxy decide on. The local helpers above (credentials(),
# authorization_header(), mint()) keep their own documented rules for code holding a vault.


@dataclass(frozen=True, slots=True, repr=False)
class UsableValue:
    """A value the platform would use: the header it injects, and the type mint judges by."""

    header: str
    #: The type mint judges by: the secret's own, or for a reference its first target's.
    base_type: str
    #: Epoch ms (jwt: the mint time plus the lifetime; oauth: the token state's expiry), or None.
    expires_at: int | float | None = None

    def __repr__(self) -> str:
        return f"UsableValue(base_type={self.base_type!r}, header=<hidden>)"

    __str__ = __repr__

    @property
    def token(self) -> str:
        """The header without its scheme word (SRV ``secret.mint.ts`` ``splitSchemeAndToken``)."""
        trimmed = js_trim(self.header)
        _, space, rest = trimmed.partition(" ")
        return js_trim(rest) if space else trimmed


def use_value(
    source: SecretSource, secret: Secret, *, base_type: str | None = None, depth: int = 0
) -> UsableValue | None:
    """The value the platform would use for ``secret`` outside a contact's context, or None.

    ``source`` supplies reference targets by identifier (with their value, or without one the
    platform would not see). None is "no value": empty, blank after trimming (basic, bearer,
    jwt), a structured basic value without credentials, no oauth token state. Raises
    :class:`ContextRequiredError` for a personal secret and :class:`ResolutionError` where the
    platform throws: a template (no catalogue offline, so every entry is unknown), a reference
    without a target, a jwt that does not sign.
    """
    if secret.kind == "personal":
        raise ContextRequiredError(NO_CONTEXT_MESSAGE)
    value = secret.value or None
    config = secret.config or {}
    kind = secret.type
    if kind == "plain":
        return None if value is None else UsableValue(value, base_type or "plain")
    if kind == "basic":
        header = _basic_header(value or "")
        return None if header is None else UsableValue(header, base_type or "basic")
    if kind == "bearer":
        token = js_trim(value or "")
        return UsableValue(f"{_schema(config)} {token}", base_type or "bearer") if token else None
    if kind == "jwt":
        key = js_trim(value or "")
        return _signed_jwt(config, key, base_type or "jwt") if key else None
    if kind == "oauth":
        state = _oauth_state(value or "")
        if state is None or (state[1] is not None and state[1] <= time.time_ns() // 1_000_000):
            return None  # no token state, or an expired token: offline nothing can refresh it
        return UsableValue(f"Bearer {js_trim(state[0])}", base_type or "oauth", state[1])
    if kind == "template":
        # SRV ``secret.template.ts`` resolves only ``platform/…`` names, from a private catalogue:
        # every other name is unknown on the cloud too, and offline every name is.
        name = config.get("template")
        if _js_truthy(name) and not isinstance(name, str):
            raise ResolutionError("name.toLowerCase is not a function")
        raise ResolutionError("Cannot find secret template")
    if kind != "reference":
        raise ResolutionError(f"Unknown secret type {kind[:32]!r}")
    if depth >= REFERENCE_DEPTH:
        raise ResolutionError(f"Secret reference chain longer than {REFERENCE_DEPTH}")
    target_id = _reference_target(config)
    target: Secret | None = None
    if _js_truthy(target_id):
        try:
            target = source.secret.fetch(cloud_identifier(target_id))
        except NotFoundError:
            target = None
    if target is None:
        raise ResolutionError("Cannot find secret reference")
    instance = _merge_reference(secret, target)
    return use_value(source, instance, base_type=base_type or target.type, depth=depth + 1)


def _schema(config: Mapping[str, Any]) -> str:
    raw = config.get("schema")
    return (js_trim(raw) if isinstance(raw, str) else "") or "Bearer"


# SRV ``creds.basic.parse.ts`` and ``keyvalue.ts``: which basic values are credentials.
_CREDENTIAL_KEYS: Final = ("username", "user", "password", "pass")
_WS: Final = "[" + "".join(f"\\u{ord(c):04x}" for c in _JS_SPACE) + "]"  # JavaScript's \s
_ANY: Final = "[^\\n\\r\\u2028\\u2029]"  # JavaScript's .
_KEY: Final = "[a-zA-Z_][a-zA-Z0-9_]*"
_LINE_BREAK: Final = re.compile("\r?\n")
_PROPERTIES_FORM: Final = re.compile(f"{_KEY}{_WS}*={_WS}*{_ANY}+")
_YAML_FORM: Final = re.compile(f"{_KEY}:{_WS}+{_ANY}+")
_COMPACT_FORM: Final = re.compile(f"(?:username|user|password|pass):{_ANY}+", re.IGNORECASE)
_PROPERTIES_LINE: Final = re.compile(f"({_KEY}){_WS}*={_WS}*({_ANY}*)")
_YAML_LINE: Final = re.compile(f"({_KEY}):{_WS}+({_ANY}*)")
_COMPACT_LINE: Final = re.compile(f"({_KEY}):({_ANY}+)")


def _strict_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return False, None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plain_value(raw: str) -> str:
    text = js_trim(raw)
    if len(text) >= 1 and ((text[0] == text[-1] == '"') or (text[0] == text[-1] == "'")):
        return text[1:-1]
    return text


def _looks_structured(text: str) -> bool:
    if text.startswith("{") and _strict_json(text)[0]:
        return True
    lines = [line for line in _LINE_BREAK.split(text) if js_trim(line) and not js_trim(line).startswith("#")]
    for line in lines:
        trimmed = js_trim(line)
        if _PROPERTIES_FORM.fullmatch(trimmed) or _YAML_FORM.fullmatch(trimmed):
            return True
        if len(lines) > 1 and _COMPACT_FORM.fullmatch(trimmed):
            return True
    return False


def _credential_fields(text: str) -> dict[str, str]:
    """The recognised keys of a structured value, spelled as written (SRV ``parseKeyValue``)."""
    if text.startswith("{"):
        ok, obj = _strict_json(text)
        if ok and isinstance(obj, dict):
            found = {k: _plain_value(v) for k, v in obj.items() if isinstance(v, str) and k.lower() in _CREDENTIAL_KEYS}
            if found:
                return found
    fields: dict[str, str] = {}
    for line in _LINE_BREAK.split(text):
        trimmed = js_trim(line)
        if not trimmed or trimmed.startswith("#"):
            continue
        for pattern in (_PROPERTIES_LINE, _YAML_LINE, _COMPACT_LINE):
            match = pattern.fullmatch(trimmed)
            if match and match[1].lower() in _CREDENTIAL_KEYS:
                fields[match[1]] = _plain_value(match[2])
                break
    return fields


def _basic_header(value: str) -> str | None:
    """``Basic <base64>`` as the platform builds it, or None when the value holds no credentials."""
    text = js_trim(value)
    if not text:
        return None
    if not _looks_structured(text):
        return "Basic " + base64.b64encode(text.encode()).decode("ascii")  # the raw user:pass form
    fields = _credential_fields(text)
    # ``data.username ?? data.user ?? ''``: the lower-case spellings only.
    user = fields["username"] if "username" in fields else fields.get("user", "")
    password = fields["password"] if "password" in fields else fields.get("pass", "")
    if not user and not password:
        return None
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# jose's importPKCS8 and SignJWT, as the platform's jwt branch calls them.
_JOSE_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_EC_CURVES: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_PEM: Final = re.compile(
    r"-----BEGIN (?P<label>PRIVATE KEY|RSA PRIVATE KEY)-----[A-Za-z0-9+/=\s]+-----END (?P=label)-----"
)


def _private_key(text: str, algorithm: str) -> Any:
    """The key jose's importPKCS8 would import for ``algorithm``, after the platform turns a
    PKCS#1 ``RSA PRIVATE KEY`` into PKCS#8 (nothing else is converted: ``EC PRIVATE KEY`` fails)."""
    if not _PEM.fullmatch(text):
        raise ResolutionError('"pkcs8" must be PKCS#8 formatted string')
    if algorithm not in _JOSE_ALGORITHMS:
        raise ResolutionError('Invalid or unsupported "alg" (Algorithm) value')
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise MissingDependencyError("minting jwt secrets needs PyJWT: pip install 'cbk-vault[jwt]'") from None
    try:
        key = load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ResolutionError("Invalid private key data") from None
    if algorithm[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ResolutionError("Invalid key for this operation, its asymmetricKeyType must be rsa")
        if key.key_size < 2048:
            raise ResolutionError(f"{algorithm} requires key modulusLength to be 2048 bits or larger")
    elif algorithm[:2] == "ES":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _EC_CURVES[algorithm]:
            raise ResolutionError("Invalid key curve for the algorithm")
    elif not isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise ResolutionError("Invalid key for this operation, its asymmetricKeyType must be ed25519 or ed448")
    return key


def _lifetime(seconds: int | float) -> int:
    """jose's ``setExpirationTime(`${seconds}s`)``: JavaScript must print the number as plain
    digits (not ``1e+21``). A negative lifetime is refused: jose 4 refuses it, jose 5 signs an
    expired token, and which one the platform runs is not known (the stricter answer)."""
    if seconds < 0 or seconds >= 1e21 or 0 < seconds < 1e-6:
        raise ResolutionError("Invalid time period format")
    return math.floor(seconds + 0.5)  # Math.round


def _signed_jwt(config: Mapping[str, Any], key_text: str, base_type: str) -> UsableValue:
    """SRV ``secret.value.ts``'s jwt branch: RS256 unless ``config.algorithm`` is a string, 600 s
    unless ``config.expiresInSeconds`` is a number, ``config.claims`` only when it is an object,
    header ``{"alg"}``, ``iat``/``exp`` set last; ``expiresAt`` is the mint time in ms plus the lifetime."""
    raw_algorithm = config.get("algorithm")
    algorithm = raw_algorithm if isinstance(raw_algorithm, str) else JWT_DEFAULT_ALGORITHM
    raw_seconds = config.get("expiresInSeconds")
    number = isinstance(raw_seconds, (int, float)) and not isinstance(raw_seconds, bool)
    seconds: int | float = raw_seconds if number else JWT_DEFAULT_EXPIRY  # type: ignore[assignment]
    claims = config.get("claims")
    key = _private_key(key_text, algorithm)
    lifetime = _lifetime(seconds)
    try:
        import jwt
    except ImportError:
        raise MissingDependencyError("minting jwt secrets needs PyJWT: pip install 'cbk-vault[jwt]'") from None
    now_ms = time.time_ns() // 1_000_000
    issued = now_ms // 1000
    payload = {**(claims if isinstance(claims, dict) else {}), "iat": issued, "exp": issued + lifetime}
    try:
        token = jwt.encode(payload, key, algorithm=algorithm, headers={"typ": None})
    except (jwt.exceptions.PyJWTError, ValueError, TypeError):
        raise ResolutionError("The claims could not be signed") from None
    expires = now_ms + seconds * 1000
    if isinstance(expires, float) and expires.is_integer():
        expires = int(expires)
    return UsableValue(f"{_schema(config)} {token}", base_type, expires)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_state(key: bytes, claims: Mapping[str, Any], *, lifetime: int = 900) -> str:
    """An HS256 token over ``claims`` plus ``iat``/``exp``: the shape of the platform's authorize
    URL ``state`` (SRV ``secret.manager.ts`` signs one for 15 minutes)."""
    issued = int(time.time())
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = json.dumps({**claims, "iat": issued, "exp": issued + lifetime}, separators=(",", ":"))
    signing_input = f"{header}.{_b64url(body.encode())}"
    return f"{signing_input}.{_b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


# --- egress: what the proxy route checks before it forwards (SRV ``secret.proxy.ts``) --------------


def _uri_pattern() -> re.Pattern[str]:
    # Joi's string().uri({scheme: ['http', 'https']}): RFC 3986 as @hapi/address spells it
    # (case-sensitive scheme, a non-empty reg-name, no "http:/" or "http:///", no path-empty).
    hexdig = r"\dA-Fa-f"
    unreserved = r"\w\-.~"
    sub_delims = r"!$&'()*+,;="
    pct = "%" + hexdig
    pchar = unreserved + pct + sub_delims + ":@"
    octet = r"(?:0{0,2}\d|0?[1-9]\d|1\d\d|2[0-4]\d|25[0-5])"
    ipv4 = rf"(?:{octet}\.){{3}}{octet}"
    h16 = f"[{hexdig}]{{1,4}}"
    ls32 = f"(?:{h16}:{h16}|{ipv4})"
    ipv6 = "|".join(
        (
            f"(?:{h16}:){{6}}{ls32}",
            f"::(?:{h16}:){{5}}{ls32}",
            f"(?:{h16})?::(?:{h16}:){{4}}{ls32}",
            f"(?:(?:{h16}:){{0,1}}{h16})?::(?:{h16}:){{3}}{ls32}",
            f"(?:(?:{h16}:){{0,2}}{h16})?::(?:{h16}:){{2}}{ls32}",
            f"(?:(?:{h16}:){{0,3}}{h16})?::{h16}:{ls32}",
            f"(?:(?:{h16}:){{0,4}}{h16})?::{ls32}",
            f"(?:(?:{h16}:){{0,5}}{h16})?::{h16}",
            f"(?:(?:{h16}:){{0,6}}{h16})?::",
        )
    )
    ipvfuture = f"v[{hexdig}]+\\.[{unreserved}{sub_delims}:]+"
    userinfo = f"[{unreserved}{pct}{sub_delims}:]*"
    host = f"(?:\\[(?:{ipv6}|{ipvfuture})\\]|{ipv4}|[{unreserved}{pct}{sub_delims}]{{1,255}})"
    authority = f"(?:{userinfo}@)?{host}(?::\\d*)?"
    segment = f"[{pchar}]*"
    path_abempty = f"(?:/{segment})*"
    path_absolute = f"/(?:[{pchar}]+{path_abempty})?"
    path_rootless = f"[{pchar}]+{path_abempty}"
    no_authority = f"(?:///{segment}{path_abempty})"
    hier = f"(?://{authority}{path_abempty}|{path_absolute}|{path_rootless}|{no_authority})"
    query = f"[{pchar}/?]*(?=#|\\Z)"
    fragment = f"[{pchar}/?]*"
    return re.compile(f"(?!https?:/\\Z)(?!https?:///)(?:https|http):{hier}(?:\\?{query})?(?:#{fragment})?", re.ASCII)


_HTTP_URI: Final = _uri_pattern()


def is_http_uri(url: str) -> bool:
    """Whether the platform's proxy schema (Joi ``uri({scheme: ['http', 'https']})``) takes ``url``."""
    return _HTTP_URI.fullmatch(url) is not None


# Characters a WHATWG URL parser refuses in a domain (after percent-decoding).
_FORBIDDEN_HOST: Final = frozenset("\x00\t\n\r #/:<>?@[\\]^|%\x7f") | frozenset(map(chr, range(0x20)))


def destination_refused(url: str) -> bool:
    """SRV ``isAllowedEgressUrl`` over ``new URL(url)``: True where the platform certainly refuses.

    ``url`` passed :func:`is_http_uri`. The host is read as the WHATWG URL parser reads it
    (percent-decoded, lower-cased, numeric hosts as IPv4 in any of their spellings, IPv6
    compressed); a URL that parser rejects is refused too. Where this reading is not certain (a
    host that decodes to non-ASCII or holds punycode), the destination counts as allowed: the
    stand-in then answers its offline ``501``, never a refusal the cloud might not give.
    """
    rest = url.partition(":")[2].lstrip("/")  # a special scheme ignores any number of slashes
    authority = re.split("[/?#]", rest, maxsplit=1)[0]
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        inner, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return True
        serialised = _ipv6_host(inner)
        if serialised is None:
            return False  # not certain how the platform reads it
        host, port = serialised, port[1:]
    else:
        raw, _, port = hostport.partition(":")
        try:
            decoded = urllib.parse.unquote_to_bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return False  # IDNA processing: not certain
        if not decoded or any(c in _FORBIDDEN_HOST for c in decoded):
            return True
        host = decoded.lower()
        if any(label.startswith("xn--") for label in host.split(".")):
            return False
        if _ends_in_number(host):
            address = _ipv4(host)
            if address is None:
                return True
            host = ".".join(str((address >> shift) & 255) for shift in (24, 16, 8, 0))
    if port and (not (port.isascii() and port.isdigit()) or int(port) > 65535):
        return True
    return _host_refused(host)


def _host_refused(host: str) -> bool:
    # The platform's checks on ``url.hostname``, in its order.
    if ":" in host:
        if "." in host or host.startswith("::ffff:"):
            return True
        return host in ("::1", "::") or host.startswith(("fe80:", "fc", "fd"))
    if re.fullmatch("0x[0-9a-f]+", host, re.IGNORECASE):
        return True
    if re.fullmatch("[0-9.]+", host) and not _canonical_ipv4(host):
        return True
    return (
        host in ("localhost", "0.0.0.0")  # noqa: S104 - a name to refuse, not an address to bind
        or host.endswith((".localhost", ".internal", ".local"))
        or host.startswith(("127.", "10.", "192.168.", "169.254."))
        or re.match(r"172\.(1[6-9]|2\d|3[01])\.", host) is not None
    )


def _canonical_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        re.fullmatch(r"\d{1,3}", p, re.ASCII) is not None and p == str(int(p)) and int(p) <= 255 for p in parts
    )


def _ipv4_number(text: str) -> int | None:
    # WHATWG "IPv4 number parser": 0x… hexadecimal, a leading 0 octal, else decimal.
    if not text:
        return None
    digits, base = text, 10
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
    elif len(text) > 1 and text[0] == "0":
        digits, base = text[1:], 8
    if not digits:
        return 0
    allowed = {10: "0123456789", 8: "01234567", 16: "0123456789abcdefABCDEF"}[base]
    if any(c not in allowed for c in digits):
        return None
    return int(digits, base)


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or _ipv4_number(last) is not None)


def _ipv4(host: str) -> int | None:
    # WHATWG "IPv4 parser": up to four numbers, the last one filling the remaining bytes.
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    values = [n for n in numbers if n is not None]
    if len(values) != len(numbers):
        return None
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    address = values[-1]
    for i, n in enumerate(values[:-1]):
        address += n * 256 ** (3 - i)
    return address


def _ipv6_host(inner: str) -> str | None:
    """The WHATWG serialisation of an IPv6 literal (lower case, the first longest zero run as ``::``)."""
    if "%" in inner:
        return None
    try:
        packed = ipaddress.IPv6Address(inner).packed
    except ValueError:
        return None
    pieces = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    best, best_len, i = -1, 1, 0
    while i < 8:
        if pieces[i]:
            i += 1
            continue
        j = i
        while j < 8 and not pieces[j]:
            j += 1
        if j - i > best_len:
            best, best_len = i, j - i
        i = j
    if best < 0:
        return ":".join(f"{p:x}" for p in pieces)
    head = ":".join(f"{p:x}" for p in pieces[:best])
    tail = ":".join(f"{p:x}" for p in pieces[best + best_len :])
    return f"{head}::{tail}"


# Headers.set: a name is an HTTP token; a value loses surrounding HTTP whitespace and may not
# hold NUL, CR or LF.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PLACEHOLDER: Final = re.compile(r"\$\{[^}]+\}|\{\{[^}]+\}\}")
_SECRET_VARIABLE: Final = re.compile(r"\$\{SECRET_(\w+)\}|\{\{SECRET_(\w+)\}\}", re.ASCII)


def outbound_headers(given: Mapping[str, Any]) -> dict[str, str]:
    """The request headers the proxy would send, by lower-case name, before secrets are swapped in.

    String values only (others are dropped, as the platform drops them); ``Authorization:
    ${SECRET_DEFAULT}`` is added when the caller sent no ``Authorization`` and referenced no
    secret. A name or value ``Headers.set`` refuses raises :class:`ResolutionError` (the
    platform's 500); neither is echoed.
    """
    out: dict[str, str] = {}
    for name, value in given.items():
        if not isinstance(value, str):
            continue
        if not _TOKEN.fullmatch(name):
            raise ResolutionError("Headers.set: invalid header name")
        value = value.strip(" \t\r\n")
        if any(c in value for c in "\x00\r\n"):
            raise ResolutionError("Headers.set: invalid header value")
        out[name.lower()] = value
    if "authorization" not in out and not any(_PLACEHOLDER.search(v) for v in out.values()):
        out["authorization"] = "${SECRET_DEFAULT}"
    return out


def placeholder_names(headers: Mapping[str, str]) -> list[str]:
    """The secrets ``${SECRET_NAME}``/``{{SECRET_NAME}}`` name, in the order the platform swaps
    them (SRV ``swapSecrets``: headers by name, each header's placeholders last to first)."""
    names: list[str] = []
    for name in sorted(headers):
        names += [m[1] or m[2] for m in reversed(list(_SECRET_VARIABLE.finditer(headers[name])))]
    return names


def secret_name(name: str) -> str:
    """SRV ``secret.name.ts`` ``normalizeSecretName``: how a placeholder finds a secret by name."""
    text = re.sub(r"[^A-Za-z0-9_]+", "_", js_trim(name))
    return re.sub(r"[_-]+", "_", text).strip("_").lower()
