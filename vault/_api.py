"""The cloud's secret routes as plain calls: JSON-shaped requests in, JSON-shaped answers out.

:class:`SecretApi` is what the HTTP stand-in (``_asgi``) and ``vault.aio`` both answer with,
so they cannot drift apart: values never returned, ``config.clientSecret`` masked, 409 for a
personal secret with a value, the cloud's paging, ``{message, code}`` errors. The field and
list rules themselves are ``_rules``'. No sockets and no HTTP framing here.

Every choice where the cloud's behaviour is inferred or has no local meaning is listed in
``docs/TESTING.md``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final, NoReturn
from urllib.parse import quote

from . import _credentials, _rules
from ._records import Page, Secret
from ._vault import Vault, raw_records
from .errors import ConflictError, InvalidRequestError, MintRefusedError, NotFoundError, VaultError

__all__ = ["JSON_NULL", "GenericError", "ListQuery", "SecretApi"]


class _JsonNull:
    __slots__ = ()

    def __repr__(self) -> str:
        return "JSON_NULL"


#: The body to hand a route for a request body that is the JSON literal ``null``. The cloud
#: answers it ``400 Bad request`` on create and update, while an empty body (``None`` here)
#: counts as ``{}`` (docs/FIDELITY.md A7, A8). JSON's ``null`` and "no body" both parse to
#: ``None``, so the HTTP layer has to say which it got.
JSON_NULL: Final = _JsonNull()

_SYSTEM_ERROR: Final = "System error occurred"




def _stream_limit(value: object) -> int | None:
    """When JSONL stops: once the running count reaches ``parseInt(take, 10)``.

    Missing, 0 or not a number: never (None). A negative take stops after the first page,
    which holds one item (docs/FIDELITY.md H5).
    """
    return _rules.parse_int(value, 10) or None


def _joi_unknown(keys: list[str]) -> str:
    # Joi's wording for a key the schema does not know.
    return "; ".join(f'"{k[:64]}" is not allowed' for k in keys)


def _object_body(body: object) -> dict[str, Any]:
    """A create or update body. None (no body) is ``{}``; a falsy JSON value is ``400 Bad request``
    (A8); anything else that is not an object is Joi's ``"value" must be of type object`` (A9)."""
    if body is None:
        return {}
    if body is JSON_NULL or body is False or body == "" or (type(body) in (int, float) and body == 0):
        raise InvalidRequestError("Bad request")
    if not isinstance(body, dict):
        raise InvalidRequestError('"value" must be of type object')
    return body


def _empty_body(body: object) -> None:
    """delete, verify, authenticate, revoke and mint have no body schema: the cloud ignores whatever
    JSON they are sent, and so does the stand-in (docs/FIDELITY.md A10)."""
    del body


def _check_body_field(wire: str, value: object) -> None:
    # One field of a create/update body, as the cloud's schema checks it (see SecretApi._checked).
    if wire in _rules.CLOUD_TEXT_BYTES:
        if value is None:
            return  # the schema allows it; the database refuses it later (C9)
        if type(value) is str:
            _rules.check_cloud_text(wire, value)
    if wire == "blueprintId":
        _rules.blueprint_id(value)  # its type here; any id at all is refused after every other check
        return
    checked = _rules.check_field(_rules.REQUEST_FIELDS[wire], value)
    if wire == "config":
        _rules.check_config_shape(checked)
    elif wire == "meta":
        _rules.check_meta_keys(checked)


def _database_checks(fields: Mapping[str, Any]) -> None:
    """What the cloud's database refuses once every other check passed: a null ``name`` or
    ``description`` (NOT NULL columns, C9) and a value too long for its column (C12, inferred)."""
    if any(key in fields and fields[key] is None for key in _rules.CLOUD_TEXT_BYTES):
        raise GenericError(_SYSTEM_ERROR)
    value = fields.get("value")
    if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > _rules.CLOUD_VALUE_BYTES:
        raise GenericError(_SYSTEM_ERROR)


def _identifier(raw: object) -> str:
    """A route's ``{secretId}`` as the cloud's lookup reads it (docs/FIDELITY.md A18, F2, F4).

    Trimmed, and so are the alias after ``@`` and the name inside ``( )``; a blank one is a
    ``400``. The forms a top-level account cannot use fail inside the cloud's lookup with a
    server error: ``@`` or ``()`` with nothing in them, a parent's ``@@alias``, a sibling's
    ``@user@alias`` (the messages are the lookup's own).
    """
    ident = _rules.js_trim(raw) if isinstance(raw, str) else ""
    if not ident:
        raise InvalidRequestError("Bad request")
    if ident.startswith("@@"):
        raise GenericError(
            "Parent ID is required for @@ identifier" if _rules.js_trim(ident[2:]) else "Alias is required"
        )
    if ident.startswith("@"):
        user, at, resource = ident[1:].partition("@")
        if at:
            if not _rules.js_trim(user):
                raise GenericError("User alias is required")
            if not _rules.js_trim(resource):
                raise GenericError("Resource alias is required")
            raise GenericError("Parent ID is required for @user@resource identifier")
        if not _rules.js_trim(user):
            raise GenericError("Alias is required")
        return "@" + _rules.js_trim(user)
    if ident.startswith("(") and ident.endswith(")"):
        name = _rules.js_trim(ident[1:-1])
        if not name:
            raise GenericError("Name is required")
        return f"({name})"
    return ident


@contextmanager
def _not_found() -> Iterator[None]:
    # The cloud's lookup answers the default message, never the identifier (E10).
    try:
        yield
    except NotFoundError:
        raise NotFoundError("Not found") from None


@contextmanager
def _write_errors() -> Iterator[None]:
    # A duplicate alias is the database's unique violation on the cloud (E4).
    with _not_found():
        try:
            yield
        except ConflictError:
            raise ConflictError("Unique constraint violation") from None


def _item(secret: Secret) -> dict[str, Any]:
    """The cloud's item: every ``#`` key hidden from ``meta`` and ``config``, at any depth (C18)."""
    item = secret.to_dict()
    item["meta"] = _rules.hide_unsafe_keys(item["meta"])
    item["config"] = _rules.hide_unsafe_keys(item["config"])
    return item


def _check_filters(query: ListQuery) -> None:
    # A meta filter key that is no MySQL JSON path makes the cloud's query fail (G15, inferred).
    for key in query.meta:
        try:
            _rules.meta_path(key)
        except InvalidRequestError:
            raise GenericError(_SYSTEM_ERROR) from None


def _blank_is_none(text: str | None) -> str | None:
    return None if text is None else _rules.js_trim(text) or None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """``list``'s parameters as the cloud reads them from the query string."""

    cursor: str | None = None
    order: str = "desc"
    take: object = None
    meta: dict[str, str] = field(default_factory=dict)
    blueprint_id: str | None = None
    #: ``meta.k`` and ``meta[k]`` both given, with different values: no row can match both.
    contradictory: bool = False

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> ListQuery:
        """The query string as the cloud reads it.

        The first occurrence of a key counts (G9); ``order``, ``cursor`` and ``blueprintId``
        are trimmed and a blank one is none (G3, G8, G16); ``meta.KEY`` and ``meta[KEY]`` filter,
        and a filter with an empty value is ignored (G12). Unknown keys are ignored (G10).
        """
        first: dict[str, str] = {}
        for key, value in pairs:
            first.setdefault(key, value)
        meta: dict[str, str] = {}
        contradictory = False
        for key, value in first.items():
            if key.startswith("meta."):
                path = key[5:]
            elif key.startswith("meta[") and key.endswith("]"):
                path = key[5:-1]
            else:
                continue
            if value:
                contradictory |= meta.setdefault(path, value) != value
        return cls(
            cursor=_blank_is_none(first.get("cursor")),
            order=first.get("order", "desc"),
            take=first.get("take"),
            meta=meta,
            blueprint_id=_blank_is_none(first.get("blueprintId")),
            contradictory=contradictory,
        )

    @classmethod
    def from_mapping(cls, request: Mapping[str, Any] | None) -> ListQuery:
        """The SDK's ``list(request)`` dict (``cursor``, ``order``, ``take``, ``meta``, ``blueprintId``),
        read as the query string the SDK would send: None left out, ``meta`` as ``meta.KEY``."""
        request = dict(request or {})
        unknown = sorted(set(request) - {"cursor", "order", "take", "meta", "blueprintId"})
        if unknown:
            raise InvalidRequestError(_joi_unknown(unknown))
        meta = request.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise InvalidRequestError('"meta" must be of type object')
        keys = ("cursor", "order", "take", "blueprintId")
        pairs = [(k, _rules.query_text(request[k])) for k in keys if request.get(k) is not None]
        pairs += [(f"meta.{k}", _rules.query_text(v)) for k, v in meta.items() if v is not None]
        return cls.from_pairs(pairs)


class SecretApi:
    """The cloud's secret resource over a :class:`~vault.Vault`: JSON-shaped in, JSON-shaped out.

    Every method raises :class:`~vault.VaultError` subclasses whose ``status`` and
    ``to_dict()`` are the cloud's HTTP answer. ``frontend_url`` is where the
    authenticate URLs of ``verify``/``authenticate`` point (the stand-in's own address).
    """

    def __init__(self, vault: Vault, *, frontend_url: str = "http://127.0.0.1") -> None:
        self.vault = vault
        self.frontend_url = frontend_url.rstrip("/")
        self._for_use = _ForUse(vault)
        self._state_key = secrets.token_bytes(32)  # signs the authorize URLs' state; never kept

    # --- reads ---------------------------------------------------------------------------

    def list(self, query: ListQuery) -> dict[str, Any]:
        """One page: ``{"items": [...], "cursor": <last id>}``; an empty page has no cursor."""
        _check_filters(query)
        page = self._page(query, _rules.take_count(query.take), query.cursor)
        body: dict[str, Any] = {"items": [_item(s) for s in page.items]}
        if page.cursor is not None:
            body["cursor"] = page.cursor
        return body

    def stream(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        """The JSONL list: ``{"type":"item","data":...}`` per secret, paging internally.

        Stops on an empty page, or once the running count reaches ``take`` (a whole page at a
        time, so like the cloud it can overshoot by part of a page; a negative take stops after
        its one-item first page). A failure while streaming becomes a ``{"type":"error",...}``
        line; a query the cloud cannot run at all fails here, before the first line.
        """
        _check_filters(query)
        return self._lines(query)

    def _lines(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        size = _rules.take_count(query.take)
        limit = _stream_limit(query.take)
        cursor = query.cursor
        sent = 0
        while True:
            try:
                page = self._page(query, size, cursor)
            except VaultError as exc:
                yield {"type": "error", "data": exc.to_dict()}
                return
            if not page.items:
                return
            for item in page.items:
                yield {"type": "item", "data": _item(item)}
            sent += len(page.items)
            if limit is not None and sent >= limit:
                return
            cursor = page.cursor

    def _page(self, query: ListQuery, size: int, cursor: str | None) -> Page:
        if query.contradictory or (cursor is not None and not self._is_row(cursor)):
            # The cloud's cursor is a row id: an unknown one, an alias, or the id of a row deleted
            # since all give an empty page (G6, G7). The local vault API keeps paging past a
            # deleted one, on purpose.
            return Page(items=[], cursor=None)
        meta: dict[str, Any] | None = dict(query.meta) or None
        if query.blueprint_id is None:
            return self.vault.secret.list(order=query.order, take=size, cursor=cursor, meta=meta)
        # The server-side blueprintId filter is not in the core list: filter page by page.
        items: list[Secret] = []
        while len(items) < size:
            page = self.vault.secret.list(order=query.order, take=100, cursor=cursor, meta=meta)
            if not page.items:
                break
            for item in page.items:
                if item.blueprint_id == query.blueprint_id:
                    items.append(item)
                    if len(items) == size:
                        break
            cursor = page.cursor
        return Page(items=items, cursor=items[-1].id if items else None)

    def _is_row(self, cursor: str) -> bool:
        try:
            return raw_records(self.vault).lookup(cursor).id == cursor
        except (NotFoundError, InvalidRequestError):
            return False

    def fetch(self, secret_id: str) -> dict[str, Any]:
        """The item without its value; ``config.clientSecret`` masked, ``#`` keys hidden."""
        return _item(self._get(secret_id))

    def _get(self, secret_id: str) -> Secret:
        # Metadata only: the stand-in never returns a value, so it never decrypts one here.
        identifier = _identifier(secret_id)
        with _not_found():
            return raw_records(self.vault).lookup(identifier)

    def _get_for_use(self, secret_id: str) -> Secret:
        # verify, revoke and mint act on the value itself (it never leaves the server), and only
        # on a value the platform would see: written as the secret's current type, never a
        # personal secret's (``_ForUse``).
        found = self._lookup(secret_id)
        try:
            return self._for_use.fetch(found.id)
        except NotFoundError:
            raise NotFoundError("Not found") from None

    # --- writes --------------------------------------------------------------------------

    def _checked(self, body: object) -> dict[str, Any]:
        """The body as the cloud's schema reads it: a 400 for the first problem only (C4), in the
        schema's key order, unknown keys once every known one passed, and last the blueprint
        lookup, which offline finds nothing (C5, E5)."""
        obj = _object_body(body)
        for wire in _rules.SCHEMA_ORDER:
            if wire in obj:
                _check_body_field(wire, obj[wire])
        for key in obj:
            if key not in _rules.REQUEST_FIELDS:
                raise InvalidRequestError(_joi_unknown([key]))
        if _rules.blueprint_id(obj.get("blueprintId")) is not None:
            raise InvalidRequestError("Blueprint not found (blueprintId)")
        return dict(obj)

    def create(self, body: object) -> dict[str, str]:
        """``{"id": ...}``. A personal secret with a non-empty value is a 409, as on the cloud."""
        fields = self._checked(body)
        if fields.get("kind") == "personal":
            if fields.get("value"):
                raise ConflictError("Personal secrets cannot have a value")
            fields["value"] = None
        if fields.get("value") == "":
            fields["value"] = None
        _database_checks(fields)
        with _write_errors():
            return {"id": self.vault.secret.create(fields).id}

    def update(self, secret_id: str, body: object) -> dict[str, str]:
        """``{"id": <real id>}``. Left-out fields stay, except ``alias``: as on the cloud, an
        update that leaves it out clears it (E1; the local vault API keeps it, on purpose)."""
        fields = self._checked(body)
        if fields.get("kind") == "personal" and fields.get("value"):
            raise ConflictError("Personal secrets cannot have a value")  # before the lookup (E8)
        stored = self._get(secret_id)
        fields.setdefault("alias", None)
        if "value" in fields and stored.kind == "personal":
            fields["value"] = None  # the cloud writes a value only onto a stored shared secret
        if fields.get("kind") == "personal" and stored.kind != "personal":
            fields["value"] = None  # becoming personal: keep "personal secrets hold no value" true
        if fields.get("value") == "":
            fields["value"] = None
        _database_checks(fields)
        with _write_errors():
            return {"id": self.vault.secret.update(stored.id, fields).id}

    def delete(self, secret_id: str, body: object = None) -> dict[str, str]:
        _empty_body(body)
        stored = self._get(secret_id)
        with _not_found():
            return {"id": self.vault.secret.delete(stored.id).id}

    # --- use-time routes ----------------------------------------------------------------------
    #
    # verify, authenticate, revoke, mint and proxy as SRV ``pages/api/v1/secret/[secretId]/*.js``
    # answer them, deciding on the value the way ``secret.value.ts`` resolves it
    # (``_credentials.use_value``). No answer holds a stored value.

    def authenticate_url(self, secret_id: str) -> str:
        """SRV ``secret.manager.ts`` ``getAuthURL``: ``<frontend>/secrets/<id>/manager/authenticate``
        with ``state`` first, then ``cbk=1&auth=1&unfurl=0``, then ``#target=_popup&unfurl=0``.

        The platform's ``state`` is a token it signs for 15 minutes; here it is an HS256 token
        signed with a key made for this object and never kept, so nothing can redeem it."""
        state = _credentials.signed_state(self._state_key, {"secretId": secret_id, "direct": {"id": secret_id}})
        path = f"/secrets/{quote(secret_id, safe='')}/manager/authenticate"
        return f"{self.frontend_url}{path}?state={state}&cbk=1&auth=1&unfurl=0#target=_popup&unfurl=0"

    def _auth_url_for(self, secret: Secret) -> str | None:
        # SRV ``secret.authorize.ts``: a url only where a secret manager exists (a shared secret).
        return self.authenticate_url(secret.id) if secret.kind == "shared" else None

    def _lookup(self, secret_id: str) -> Secret:
        """The route's secret by its path identifier (as fetch finds it); the default ``404 Not found``."""
        try:
            return self._get(secret_id)
        except NotFoundError:
            raise NotFoundError("Not found") from None

    def _usable(self, secret: Secret) -> _credentials.UsableValue | None:
        """``use_value`` where the platform's own code throws (mint, revoke, proxy): its plain
        ``Error`` is a ``500 GENERIC_ERROR`` with the message."""
        try:
            return _credentials.use_value(self._for_use, secret)
        except _credentials.ResolutionError as exc:
            raise GenericError(str(exc)) from None

    def verify(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """``{"id", "status"}``, plus ``action`` when unauthenticated.

        "Authenticated" means the platform would find a usable value (after reference
        resolution, per type). A resolution failure (missing reference target, unknown template,
        a jwt that does not sign) is ``409`` with its message; a personal secret has no value
        here and no authorize URL: ``409 Cannot verify secret for this secret configuration``.
        """
        _empty_body(body)
        secret = self._get_for_use(secret_id)
        try:
            usable = _credentials.use_value(self._for_use, secret)
        except _credentials.ContextRequiredError:
            usable = None
        except _credentials.ResolutionError as exc:
            raise ConflictError(str(exc)) from None
        if usable is not None:
            return {"id": secret.id, "status": "authenticated"}
        if secret.kind != "shared":
            raise ConflictError("Cannot verify secret for this secret configuration")
        return {
            "id": secret.id,
            "status": "unauthenticated",
            "action": {"type": "authenticate", "url": self.authenticate_url(secret.id)},
        }

    def authenticate(self, secret_id: str, body: object = None) -> dict[str, str]:
        """``{"id", "url"}`` for a shared secret of any type; 409 for a personal one."""
        _empty_body(body)
        secret = self._lookup(secret_id)
        if secret.kind != "shared":
            raise ConflictError("Cannot authenticate secret for this secret configuration")
        return {"id": secret.id, "url": self.authenticate_url(secret.id)}

    def revoke(self, secret_id: str, body: object = None) -> dict[str, str]:
        """Clear a shared secret's own value; the row and its config stay.

        ``409 Conflict`` for a personal secret; ``404 Not found`` when the *resolved* value is
        none (so a reference whose target holds a value revokes, clearing only its own).
        """
        _empty_body(body)
        secret = self._get_for_use(secret_id)
        if secret.kind != "shared":
            raise ConflictError("Conflict")
        if self._usable(secret) is None:
            raise NotFoundError("Not found")
        return {"id": self.vault.secret.update(secret.id, value=None).id}

    def mint(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """``{"token", "expiresAt"}`` for jwt (signed locally) and oauth (the stored access token).

        As SRV ``secret.mint.ts``: the value is resolved first (none: ``authorization_required``,
        with the authorize URL for a shared secret), then only ``oauth`` and ``jwt`` base types
        mint (others: ``not_mintable``). Refusals raise :class:`~vault.MintRefusedError`, whose
        ``to_dict()`` is the mint route's ``{error, message, url?}``; a resolution failure is
        :class:`GenericError`. The request body is ignored, as on the cloud.
        """
        secret = self._get_for_use(secret_id)
        try:
            usable = self._usable(secret)
        except _credentials.ContextRequiredError as exc:
            raise MintRefusedError("authorization_required", str(exc), url=self._auth_url_for(secret)) from None
        if usable is None:
            raise MintRefusedError("authorization_required", _NO_VALUE, url=self._auth_url_for(secret))
        if usable.base_type not in _MINTABLE:
            raise MintRefusedError(
                "not_mintable",
                f"Secrets of type '{usable.base_type}' cannot be minted for a token; use the egress proxy instead.",
            )
        return {"token": usable.token, "expiresAt": usable.expires_at}

    def proxy(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """Everything SRV ``proxy.js`` and ``secret.proxy.ts`` decide before forwarding, then
        ``501``: offline there is no upstream.

        In order: the body schema (400, Joi's wording); the lookup (404); the destination
        (``400 {"error":"invalid_destination"}`` for loopback, private, link-local, metadata
        and ``.localhost/.internal/.local`` hosts, read as a WHATWG URL parser reads them);
        the request headers (a name ``fetch`` cannot send: 500); the secret placeholders
        (``${SECRET_DEFAULT}`` is injected as ``Authorization`` unless the caller sent one or
        referenced a secret): a secret without a usable value is ``409 authorization_required``.
        """
        request = _proxy_request(body)
        secret = self._lookup(secret_id)
        if _credentials.destination_refused(request["url"]):
            raise _DestinationRefusedError("Destination host is not allowed")
        try:
            headers = _credentials.outbound_headers(request.get("headers") or {})
        except _credentials.ResolutionError as exc:
            raise GenericError(str(exc)) from None
        for name in _credentials.placeholder_names(headers):
            self._swap(secret, name)
        raise _NotOffline("proxy forwards requests to the internet; the offline stand-in does not")

    def _swap(self, route_secret: Secret, name: str) -> None:
        """SRV ``swapSecrets`` for one placeholder: the secret it names must have a usable value."""
        target = self._secret_named(route_secret, name)
        if target is None:
            return  # no such secret: the placeholder is left as it is
        try:
            usable = self._usable(target)
        except _credentials.ContextRequiredError as exc:
            raise MintRefusedError("authorization_required", str(exc), url=self._auth_url_for(route_secret)) from None
        if usable is None:
            raise MintRefusedError("authorization_required", _LINKED_NO_VALUE, url=self._auth_url_for(route_secret))

    def _secret_named(self, route_secret: Secret, name: str) -> Secret | None:
        # SRV ``getUnsafeSecretInstance``: DEFAULT is the route's secret; any other name is the
        # first of the caller's secrets whose name normalises to the same text.
        try:
            if name == "DEFAULT":
                return self._for_use.fetch(route_secret.id)
            wanted = _credentials.secret_name(name)
            for item, _, _ in raw_records(self.vault).all():
                if _credentials.secret_name(item.name) == wanted:
                    return self._for_use.fetch(item.id)
        except NotFoundError:
            return None
        return None

    # --- contact-scoped routes (``/v1/contact/{contactId}/secret/...``) --------------------------

    def contact_list(self, contact_id: str, query: ListQuery) -> dict[str, Any]:
        """``GET /v1/contact/{contactId}/secret/list``: offline there are no contacts, so ``404 Not
        found`` (in every ``Accept`` format: the platform's lookup fails before the stream starts)."""
        _no_contact(contact_id)

    def contact_use(self, contact_id: str, secret_id: str, action: str, body: object = None) -> dict[str, Any]:
        """``POST /v1/contact/{contactId}/secret/{secretId}/{verify,authenticate,revoke,mint,proxy}``.

        The contact is looked up first (``404 Not found`` offline, a ``500`` for identifiers the
        platform's lookup throws on), except that proxy validates its body before anything.
        """
        if action == "proxy":
            _proxy_request(body)
        _no_contact(contact_id)

    # --- the platform catalogue (``/v1/platform/secret/...``) ------------------------------------

    def catalogue_list(self, query: ListQuery) -> dict[str, Any]:
        """``GET /v1/platform/secret/list``: the whole catalogue in one page, ``take`` ignored, any
        cursor an empty page. No catalogue ships offline, so: ``{"items": []}``."""
        return {"items": []}

    def catalogue_stream(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        """The JSONL form of :meth:`catalogue_list`: no lines (the platform sends an empty body)."""
        return iter(())

    def catalogue_search(self, body: object = None) -> dict[str, Any]:
        """``POST /v1/platform/secret/search {"search", "take"}``: the body is validated as the
        platform's schema does (``search`` a non-empty string, ``take`` an integer 1..100, default
        10), and the answer is ``{"items": []}`` (an empty catalogue matches nothing)."""
        obj = _object_body(body)
        if "search" in obj:
            search = obj["search"]
            if not isinstance(search, str):
                raise InvalidRequestError('"search" must be a string')
            if not search:
                raise InvalidRequestError('"search" is not allowed to be empty')
        if "take" in obj:
            _check_take(obj["take"])
        _refuse_unknown(obj, ("search", "take"))
        return {"items": []}


class _ForUse:
    """The vault as the use-time routes see it: a value only when written as the secret's current
    type (``vault._raw.RawRecords.fetch_for_use``), and never on a personal secret (the platform
    keeps those per contact). Reference targets come from here too."""

    def __init__(self, vault: Vault) -> None:
        self.secret = self
        self._raw = raw_records(vault)

    def fetch(self, secret_id: str) -> Secret:
        found = self._raw.fetch_for_use(secret_id)
        if found.kind == "personal" and found.value is not None:
            return replace(found, value=None)
        return found


class GenericError(VaultError):
    """The platform's answer to a failure in its own code: ``500 {"message", "code":"GENERIC_ERROR"}``.

    SRV ``packages/errors`` ``errorToErrorResponse`` keeps a plain ``Error``'s message and
    ``lib/response.js`` ``genericError`` answers it with status 500. Raised where the platform
    throws: mint, revoke and proxy when a value cannot be resolved (a missing reference target,
    an unknown template, a jwt that does not sign), an identifier its lookup cannot read, a
    request header ``fetch`` cannot send. The message never holds a value.
    """

    code = "GENERIC_ERROR"
    status = 500


class _NotOffline(VaultError):
    code = "NOT_IMPLEMENTED"
    status = 501


class _DestinationRefusedError(VaultError):
    """The proxy's refusal of a destination: ``400 {"error":"invalid_destination","message"}``."""

    code = "INVALID_DESTINATION"
    status = 400

    def to_dict(self) -> dict[str, str]:
        return {"error": "invalid_destination", "message": self.message}


_NO_VALUE: Final = "The secret has no value; authenticate it first."
_LINKED_NO_VALUE: Final = (
    "A linked secret exists but has no value configured. Please authenticate or set up the secret value."
)
_MINTABLE: Final = frozenset({"oauth", "jwt"})


def _no_contact(contact_id: str) -> NoReturn:
    try:
        _credentials.cloud_identifier(contact_id)
    except _credentials.ResolutionError as exc:
        raise GenericError(str(exc)) from None
    raise NotFoundError("Not found")


def _refuse_unknown(obj: Mapping[str, Any], known: tuple[str, ...]) -> None:
    # Joi checks unknown keys after every known one passed, and stops at the first.
    unknown = [k for k in obj if k not in known]
    if unknown:
        raise InvalidRequestError(_joi_unknown(unknown[:1]))


# --- the catalogue search body (SRV ``platform/secret/search.js`` ``bodySchema``) -----------------

# Joi's number() reads a string that looks like a number, blanks around it allowed.
_JOI_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _check_take(value: object) -> None:
    number: float
    if isinstance(value, bool) or value is None:
        raise InvalidRequestError('"take" must be a number')
    if isinstance(value, str):
        text = _credentials.js_trim(value)
        if not _JOI_NUMBER.fullmatch(text):
            raise InvalidRequestError('"take" must be a number')
        number = float(text)
    elif isinstance(value, (int, float)):
        number = value
    else:
        raise InvalidRequestError('"take" must be a number')
    if not abs(number) <= 2**53 - 1:  # also NaN and the infinities
        raise InvalidRequestError('"take" must be a safe number')
    if number != int(number):
        raise InvalidRequestError('"take" must be an integer')
    if number < 1:
        raise InvalidRequestError('"take" must be greater than or equal to 1')
    if number > 100:
        raise InvalidRequestError('"take" must be less than or equal to 100')


# --- the proxy body (SRV ``proxy.js`` ``bodySchema``) -----------------------------------------

_PROXY_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_PROXY_KEYS: Final = ("method", "url", "headers", "body")


def _proxy_request(body: object) -> dict[str, Any]:
    """The proxy body, checked in the schema's key order; Joi's first message wins."""
    obj = _object_body(body)
    if "method" in obj and not (isinstance(obj["method"], str) and obj["method"] in _PROXY_METHODS):
        raise InvalidRequestError(f'"method" must be one of [{", ".join(_PROXY_METHODS)}]')
    if "url" not in obj:
        raise InvalidRequestError('"url" is required')
    url = obj["url"]
    if not isinstance(url, str):
        raise InvalidRequestError('"url" must be a string')
    if not url:
        raise InvalidRequestError('"url" is not allowed to be empty')
    if url in ("http:/", "https:/"):
        raise InvalidRequestError('"url" must be a valid uri')
    if not _credentials.is_http_uri(url):
        raise InvalidRequestError('"url" must be a valid uri with a scheme matching the http|https pattern')
    if "headers" in obj and not isinstance(obj["headers"], dict):
        raise InvalidRequestError('"headers" must be of type object')
    if "body" in obj and obj["body"] is not None and not isinstance(obj["body"], str):
        raise InvalidRequestError('"body" must be a string')
    _refuse_unknown(obj, _PROXY_KEYS)
    return obj
