"""The cloud's secret routes as plain calls: JSON-shaped requests in, JSON-shaped answers out.

:class:`SecretApi` is what the HTTP stand-in (``_http``) and ``vault.aio`` both answer with,
so they cannot drift apart: values never returned, ``config.clientSecret`` masked, 409 for a
personal secret with a value, the cloud's paging, ``{message, code}`` errors. The field and
list rules themselves are ``_rules``'. No sockets and no HTTP framing here.

Every choice where the cloud's behaviour is inferred or has no local meaning is listed in
``docs/TESTING.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from . import _credentials, _rules
from ._records import Page, Secret
from ._vault import Vault, raw_records
from .errors import ConflictError, InvalidRequestError, MintRefusedError, NotFoundError, VaultError

__all__ = ["ListQuery", "SecretApi"]

def _stream_limit(value: object) -> int | None:
    """JSONL stops once this many items went out; only a positive ``take`` sets a limit."""
    number = _rules.parse_int(value)
    return number if number is not None and number > 0 else None


def _joi_unknown(keys: list[str]) -> str:
    # Joi's wording for a key the schema does not know.
    return "; ".join(f'"{k[:64]}" is not allowed' for k in keys)


def _object_body(body: object) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequestError('"value" must be of type object')
    return body


def _empty_body(body: object) -> None:
    obj = _object_body(body)
    if obj:
        raise InvalidRequestError(_joi_unknown(sorted(obj)))


@dataclass(frozen=True, slots=True)
class ListQuery:
    """``list``'s parameters as the cloud reads them from the query string."""

    cursor: str | None = None
    order: str = "desc"
    take: object = None
    meta: dict[str, str] = field(default_factory=dict)
    blueprint_id: str | None = None

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> ListQuery:
        values: dict[str, str] = {}
        meta: dict[str, str] = {}
        for key, value in pairs:
            if key.startswith("meta.") and len(key) > 5:
                meta[key[5:]] = value
            elif key.startswith("meta[") and key.endswith("]") and len(key) > 6:
                meta[key[5:-1]] = value
            else:
                # Repeated plain keys: the last wins. Unknown keys are ignored (inferred).
                values[key] = value
        return cls(
            cursor=values.get("cursor") or None,
            order=values.get("order", "desc"),
            take=values.get("take"),
            meta=meta,
            blueprint_id=values.get("blueprintId") or None,
        )

    @classmethod
    def from_mapping(cls, request: Mapping[str, Any] | None) -> ListQuery:
        """The SDK's ``list(request)`` dict: ``cursor``, ``order``, ``take``, ``meta``."""
        request = dict(request or {})
        unknown = sorted(set(request) - {"cursor", "order", "take", "meta", "blueprintId"})
        if unknown:
            raise InvalidRequestError(_joi_unknown(unknown))
        meta = request.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise InvalidRequestError('"meta" must be of type object')
        return cls(
            cursor=request.get("cursor") or None,
            order=str(request.get("order") or "desc"),
            take=request.get("take"),
            meta={str(k): _rules.query_text(v) for k, v in meta.items() if v is not None},
            blueprint_id=request.get("blueprintId") or None,
        )


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

    # --- reads ---------------------------------------------------------------------------

    def list(self, query: ListQuery) -> dict[str, Any]:
        """One page: ``{"items": [...], "cursor": <last id>}``; an empty page has no cursor."""
        return self._page(query, _rules.take_count(query.take), query.cursor).to_dict()

    def stream(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        """The JSONL list: ``{"type":"item","data":...}`` per secret, paging internally.

        Stops on an empty page, or once ``take`` items went out when ``take`` was given
        (a whole page at a time, so like the cloud it can overshoot by part of a page).
        A failure while streaming becomes a ``{"type":"error",...}`` line.
        """
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
                yield {"type": "item", "data": item.to_dict()}
            sent += len(page.items)
            if limit is not None and sent >= limit:
                return
            cursor = page.cursor

    def _page(self, query: ListQuery, size: int, cursor: str | None) -> Page:
        meta: dict[str, Any] = dict(query.meta) or {}
        if query.blueprint_id is None:
            return self.vault.secret.list(order=query.order, take=size, cursor=cursor, meta=meta or None)
        # The server-side blueprintId filter is not in the core list: filter page by page.
        items: list[Secret] = []
        while len(items) < size:
            page = self.vault.secret.list(order=query.order, take=100, cursor=cursor, meta=meta or None)
            if not page.items:
                break
            for item in page.items:
                if item.blueprint_id == query.blueprint_id:
                    items.append(item)
                    if len(items) == size:
                        break
            cursor = page.cursor
        return Page(items=items, cursor=items[-1].id if items else None)

    def fetch(self, secret_id: str) -> dict[str, Any]:
        """The item without its value; ``config.clientSecret`` masked."""
        return self._get(secret_id).to_dict()

    def _get(self, secret_id: str) -> Secret:
        # Metadata only: the stand-in never returns a value, so it never decrypts one here.
        return raw_records(self.vault).lookup(secret_id)

    def _get_for_use(self, secret_id: str) -> Secret:
        # verify and mint act on the value itself (it never leaves the server), and only on a
        # value written as the secret's current type.
        return raw_records(self.vault).fetch_for_use(secret_id)

    # --- writes --------------------------------------------------------------------------

    def _checked(self, body: object) -> dict[str, Any]:
        obj = _object_body(body)
        problems: list[str] = []
        unknown = sorted(k for k in obj if k not in _rules.REQUEST_FIELDS)
        if unknown:
            problems.append(_joi_unknown(unknown))
        for key, value in obj.items():
            if key in _rules.REQUEST_FIELDS:
                try:
                    _rules.check_field(_rules.REQUEST_FIELDS[key], value)
                except InvalidRequestError as exc:
                    problems.append(exc.message)
        if problems:
            raise InvalidRequestError("; ".join(problems))
        return obj

    def create(self, body: object) -> dict[str, str]:
        """``{"id": ...}``. A personal secret with a non-empty value is a 409, as on the cloud."""
        fields = self._checked(body)
        # The meta schema is the body's validation (400), which comes before the route's 409.
        _rules.meta_keys_for_create(fields.get("meta"))
        if fields.get("kind") == "personal":
            if fields.get("value"):
                raise ConflictError("Personal secrets cannot have a value")
            fields["value"] = None
        if fields.get("value") == "":
            fields["value"] = None
        return {"id": self.vault.secret.create(fields).id}

    def update(self, secret_id: str, body: object) -> dict[str, str]:
        """``{"id": <real id>}``; left-out fields (alias included) stay as they are."""
        fields = self._checked(body)
        stored = self._get(secret_id)
        if fields.get("kind") == "personal" and fields.get("value"):
            raise ConflictError("Personal secrets cannot have a value")
        if "value" in fields and stored.kind == "personal":
            fields["value"] = None  # the cloud writes a value only onto a stored shared secret
        if fields.get("kind") == "personal" and stored.kind != "personal":
            fields["value"] = None  # becoming personal: keep "personal secrets hold no value" true
        if fields.get("value") == "":
            fields["value"] = None
        return {"id": self.vault.secret.update(stored.id, fields).id}

    def delete(self, secret_id: str, body: object = None) -> dict[str, str]:
        _empty_body(body)
        return {"id": self.vault.secret.delete(secret_id).id}

    # --- use-time routes -----------------------------------------------------------------------

    def authenticate_url(self, secret_id: str) -> str:
        # The cloud's shape (<frontend>/secrets/<id>/manager/authenticate?...), without the signed state.
        return f"{self.frontend_url}/secrets/{quote(secret_id, safe='')}/manager/authenticate?cbk=1&auth=1&unfurl=0"

    def verify(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """``{"id", "status"}``, plus ``action`` when unauthenticated. "Authenticated" means
        the secret (after reference resolution) holds a value."""
        _empty_body(body)
        secret = self._get_for_use(secret_id)
        if secret.kind == "personal":
            raise ConflictError("Personal secrets can only be verified in the context of a contact")
        effective = _credentials.resolve(self._for_use, secret)
        if effective.value:
            return {"id": secret.id, "status": "authenticated"}
        return {
            "id": secret.id,
            "status": "unauthenticated",
            "action": {"type": "authenticate", "url": self.authenticate_url(secret.id)},
        }

    def authenticate(self, secret_id: str, body: object = None) -> dict[str, str]:
        _empty_body(body)
        secret = self._get(secret_id)
        if secret.kind != "shared":
            raise ConflictError("Only shared secrets can be authenticated without a contact")
        return {"id": secret.id, "url": self.authenticate_url(secret.id)}

    def revoke(self, secret_id: str, body: object = None) -> dict[str, str]:
        """Clear a shared secret's value (409 for personal, 404 when there is none); the row stays."""
        _empty_body(body)
        secret = self.vault.secret.fetch(secret_id)
        if secret.kind != "shared":
            raise ConflictError("Only shared secrets can be revoked")
        if not secret.value:
            raise NotFoundError("Secret value not found")
        return {"id": self.vault.secret.update(secret.id, value=None).id}

    def mint(self, secret_id: str, body: object = None) -> dict[str, Any]:
        """``{"token", "expiresAt"}`` for jwt (signed locally) and oauth (the stored access token).

        Refusals raise :class:`~vault.MintRefusedError`, whose ``to_dict()`` is the
        mint route's ``{error, message, url?}`` shape. The request body is ignored, as on the cloud.
        """
        secret = self._get_for_use(secret_id)
        try:
            token, expires = _credentials.mint(secret, self._for_use)
        except MintRefusedError as exc:
            if exc.error == "authorization_required" and exc.url is None and secret.kind == "shared":
                exc.url = self.authenticate_url(secret.id)
            raise
        return {"token": token, "expiresAt": expires}

    def proxy(self, secret_id: str, body: object = None) -> dict[str, Any]:
        # Offline means no upstream: the cloud would forward the request to the internet.
        raise _NotOffline("proxy forwards requests to the internet; the offline stand-in does not")

    # --- contact-scoped routes and the platform catalogue (docs/FIDELITY.md J1-J4) -------------
    # MINIMAL VERSIONS added with the stand-in's routing (branch fid-http) so the routes can be
    # wired and tested. The use-time routes' work (branch fid-use) owns these five methods, with
    # the same signatures: its versions replace these (they also check the contact identifier
    # and the contact proxy's body, and the search body as Joi does).

    def contact_list(self, contact_id: str, query: ListQuery) -> dict[str, Any]:
        """``GET /v1/contact/{contactId}/secret/list``: no contacts offline, so ``404 Not found``."""
        raise NotFoundError("Not found")

    def contact_use(self, contact_id: str, secret_id: str, action: str, body: object = None) -> dict[str, Any]:
        """``POST /v1/contact/{contactId}/secret/{secretId}/{action}``: no contacts offline, so ``404``."""
        raise NotFoundError("Not found")

    def catalogue_list(self, query: ListQuery) -> dict[str, Any]:
        """``GET /v1/platform/secret/list``: the platform's template catalogue, empty offline."""
        return {"items": []}

    def catalogue_stream(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        """The streamed form of :meth:`catalogue_list`: no events."""
        return iter(())

    def catalogue_search(self, body: object = None) -> dict[str, Any]:
        """``POST /v1/platform/secret/search`` ``{search?, take?}``: validated, nothing found offline."""
        obj = _object_body(body)
        search = obj.get("search")
        if "search" in obj and not isinstance(search, str):
            raise InvalidRequestError('"search" must be a string')
        if search == "":
            raise InvalidRequestError('"search" is not allowed to be empty')
        if "take" in obj:
            take = obj["take"]
            if isinstance(take, bool) or not isinstance(take, (int, float)):
                raise InvalidRequestError('"take" must be a number')
            if take != int(take):
                raise InvalidRequestError('"take" must be an integer')
            if take < 1:
                raise InvalidRequestError('"take" must be greater than or equal to 1')
            if take > 100:
                raise InvalidRequestError('"take" must be less than or equal to 100')
        unknown = [k for k in obj if k not in ("search", "take")]
        if unknown:
            raise InvalidRequestError(_joi_unknown(unknown[:1]))
        return {"items": []}


class _ForUse:
    """The vault as the use-time routes see it: a reference's target, too, only with a value
    written as its current type (``vault._raw.RawRecords.fetch_for_use``)."""

    def __init__(self, vault: Vault) -> None:
        self.secret = self
        self._raw = raw_records(vault)

    def fetch(self, secret_id: str) -> Secret:
        return self._raw.fetch_for_use(secret_id)


class _NotOffline(VaultError):
    code = "NOT_IMPLEMENTED"
    status = 501
