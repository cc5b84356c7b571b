"""Credentials: what the cloud does with a secret's value when it is *used*: typed credentials, the
``Authorization`` header it would inject, reference resolution and local JWT/OAuth minting.

These are the offline equivalents of the platform's use-time logic (``secret.value``,
``creds.basic.parse``, ``secret.reference``, ``secret.mint``), written from the API notes
in ``docs/TESTING.md``. Nothing here talks to the network. Error messages name the
secret's id and the rule that failed, never any part of the value.

``Secret.credentials()`` and ``Secret.authorization_header()`` delegate here. This module sits
below ``_records``: it takes a Secret and a vault by their shape, never by import.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from .errors import ConflictError, InvalidRequestError, MintRefusedError, MissingDependencyError

if TYPE_CHECKING:
    from ._records import Secret


class _SecretFetcher(Protocol):
    def fetch(self, secret_id: str) -> Secret: ...


class SecretSource(Protocol):
    """Where a reference's target comes from: anything with ``.secret.fetch`` (a Vault)."""

    @property
    def secret(self) -> _SecretFetcher: ...

__all__ = [
    "BasicCredentials",
    "MintRefusedError",
    "MissingDependencyError",
    "SecretSource",
    "authorization_header",
    "credentials",
    "mint",
    "mint_jwt",
    "parse_basic",
    "resolve",
]

#: The cloud's jwt defaults (SRV ``secret.mint``): RS256, ten minutes.
JWT_DEFAULT_ALGORITHM: Final = "RS256"
JWT_DEFAULT_EXPIRY: Final = 600
#: A generous cap so a typo in ``expiresInSeconds`` cannot mint a token that never expires.
JWT_MAX_EXPIRY: Final = 366 * 24 * 3600

# Config keys a reference secret may override on its target. The cloud calls this "a narrow
# set" without listing it; we take the template rule's list (inferred, see docs/TESTING.md).
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


def resolve(vault: SecretSource | None, secret: Secret) -> Secret:
    """The secret the cloud would actually use: a ``reference`` becomes its target.

    The target is named by ``config.reference`` (or ``secretId``, or ``id``) as an id,
    ``@alias`` or ``(name)`` and fetched from ``vault`` (with its value). The result keeps
    the reference's id, name and alias but takes the target's type, kind, config and value;
    the reference's own value, if set, wins, and a few config keys may be overridden.
    Any other type is returned unchanged (so passing ``vault=None`` is fine for them).
    """
    if secret.type != "reference":
        return secret
    config = secret.config or {}
    target_id = next((config[k] for k in ("reference", "secretId", "id") if isinstance(config.get(k), str)), None)
    if not target_id:
        raise InvalidRequestError(f"reference secret {secret.id} has no config.reference")
    if vault is None:
        raise InvalidRequestError(f"reference secret {secret.id} needs the vault to resolve its target")
    target = vault.secret.fetch(target_id)
    if target.id == secret.id or target.type == "reference":
        # The cloud forbids template-to-template; we apply the same rule to references,
        # which also rules out cycles (inferred, see docs/TESTING.md).
        raise InvalidRequestError(f"reference secret {secret.id} points at another reference")
    merged = dict(target.config or {})
    merged.update({k: v for k, v in config.items() if k in _REFERENCE_OVERRIDES})
    own = secret.value if secret.value else None
    return replace(
        secret,
        type=target.type,
        kind=target.kind,
        config=merged or None,
        value=own if own is not None else target.value,
    )


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
