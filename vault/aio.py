"""An async facade with the official async Python SDK's secret calls, served from a vault.

Agents written against ``chatbotkit.ChatBotKit(...).secret`` can take an
:class:`AsyncVault`'s ``.secret`` instead and run offline::

    from vault.aio import AsyncVault

    secrets = AsyncVault(v).secret
    created = await secrets.create({"name": "Weather", "type": "bearer", "value": "tok"})
    item = await secrets.fetch(created.id)          # no value, clientSecret masked
    page = await secrets.list({"take": 10})          # .items, .cursor
    async for line in secrets.list().stream():       # .type == "item", .data
        ...

Each call returns an awaitable like the SDK's ``Response`` (``await call`` or
``await call.json()``; list also has ``.stream()``). Results have the SDK's attribute
names (snake_case) and shapes; the cloud's rules apply exactly as in the HTTP stand-in,
because both run through the same :class:`vault._api.SecretApi`. The blocking vault
calls run in a thread executor. Errors are :class:`vault.VaultError` subclasses with the
cloud's ``code`` and ``status`` (the SDK would raise ``APIError`` with the same code).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Generic, TypeVar

from . import errors
from ._api import ListQuery, SecretApi
from ._vault import Vault
from .errors import InvalidRequestError

__all__ = [
    "AsyncSecretClient",
    "AsyncVault",
    "Call",
    "ListCall",
    "SecretCreateResponse",
    "SecretDeleteResponse",
    "SecretFetchResponse",
    "SecretIdResponse",
    "SecretItem",
    "SecretKind",
    "SecretListResponse",
    "SecretListResponseItem",
    "SecretListStreamItem",
    "SecretMintResponse",
    "SecretType",
    "SecretUpdateResponse",
    "SecretVisibility",
]

T = TypeVar("T")


class SecretKind(str, enum.Enum):
    """Like the SDK's kind enum (``.value``); also equal to the plain string."""

    SHARED = "shared"
    PERSONAL = "personal"


class SecretType(str, enum.Enum):
    PLAIN = "plain"
    BASIC = "basic"
    BEARER = "bearer"
    JWT = "jwt"
    OAUTH = "oauth"
    TEMPLATE = "template"
    REFERENCE = "reference"


class SecretVisibility(str, enum.Enum):
    PRIVATE = "private"
    PROTECTED = "protected"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class SecretItem:
    """A secret as ``fetch`` and ``list`` return it: every field but ``value``.

    ``config.clientSecret`` is masked (``"********"``); times are epoch milliseconds.
    """

    alias: str | None
    blueprint_id: str | None
    config: dict[str, Any] | None
    created_at: float
    description: str | None
    id: str
    kind: SecretKind | None
    meta: dict[str, Any] | None
    name: str | None
    type: SecretType | None
    updated_at: float
    visibility: SecretVisibility | None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SecretItem:
        return cls(
            alias=obj.get("alias"),
            blueprint_id=obj.get("blueprintId"),
            config=obj.get("config"),
            created_at=obj["createdAt"],
            description=obj.get("description"),
            id=obj["id"],
            kind=None if obj.get("kind") is None else SecretKind(obj["kind"]),
            meta=obj.get("meta"),
            name=obj.get("name"),
            type=None if obj.get("type") is None else SecretType(obj["type"]),
            updated_at=obj["updatedAt"],
            visibility=None if obj.get("visibility") is None else SecretVisibility(obj["visibility"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire (camelCase) shape."""
        return {
            "id": self.id,
            "alias": self.alias,
            "name": self.name,
            "description": self.description,
            "blueprintId": self.blueprint_id,
            "kind": None if self.kind is None else self.kind.value,
            "type": None if self.type is None else self.type.value,
            "config": self.config,
            "visibility": None if self.visibility is None else self.visibility.value,
            "meta": self.meta,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


#: The SDK's names for the item shape.
SecretFetchResponse = SecretItem
SecretListResponseItem = SecretItem


@dataclass(frozen=True, slots=True)
class SecretIdResponse:
    """What create, update and delete answer: ``{"id": ...}``."""

    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id}


SecretCreateResponse = SecretIdResponse
SecretUpdateResponse = SecretIdResponse
SecretDeleteResponse = SecretIdResponse


@dataclass(frozen=True, slots=True)
class SecretListResponse:
    """One page. ``cursor`` is the last item's id, or None on an empty page (the cloud then
    sends no cursor at all; the SDK's typed parser would fail there)."""

    cursor: str | None
    items: list[SecretItem]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"items": [item.to_dict() for item in self.items]}
        if self.cursor is not None:
            out["cursor"] = self.cursor
        return out


@dataclass(frozen=True, slots=True)
class SecretListStreamItem:
    """One JSONL line of a streamed list: ``type`` is ``"item"``, ``data`` the secret."""

    data: SecretItem
    type: str


@dataclass(frozen=True, slots=True)
class SecretMintResponse:
    """A minted token and its expiry (epoch ms, or None)."""

    expires_at: float | None
    token: str

    def __repr__(self) -> str:
        return f"SecretMintResponse(expires_at={self.expires_at!r}, token=<hidden>)"


def _payload(request: object) -> Any:
    """A request as JSON data: mappings, SDK request objects (``to_dict()``) and enums all work."""
    if request is None:
        return None
    if isinstance(request, enum.Enum):
        return _payload(request.value)
    if isinstance(request, Mapping):
        return {str(k): _payload(v) for k, v in request.items()}
    to_dict = getattr(request, "to_dict", None)
    if callable(to_dict) and not isinstance(request, (str, bytes)):
        return _payload(to_dict())
    if isinstance(request, (list, tuple)):
        return [_payload(v) for v in request]
    return request


class Call(Generic[T]):
    """An awaitable result, like the SDK's ``Response``: ``await call`` or ``await call.json()``.

    The work starts on first await and runs once; awaiting again gives the same result.
    """

    def __init__(self, run: Callable[[], Awaitable[T]]) -> None:
        self._run = run
        self._task: asyncio.Future[T] | None = None

    async def json(self) -> T:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return await self._task

    def __await__(self) -> Generator[Any, None, T]:
        return self.json().__await__()


class ListCall(Call[SecretListResponse]):
    """``list``'s result: awaitable for one page, or ``.stream()`` for every item (JSONL semantics)."""

    def __init__(
        self,
        run: Callable[[], Awaitable[SecretListResponse]],
        lines: Callable[[], Iterator[dict[str, Any]]],
        in_thread: Callable[..., Awaitable[Any]],
    ) -> None:
        super().__init__(run)
        self._lines = lines
        self._in_thread = in_thread

    async def stream(self) -> AsyncIterator[SecretListStreamItem]:
        lines = self._lines()
        done = object()
        while True:
            line = await self._in_thread(next, lines, done)
            if line is done:
                return
            if line["type"] == "error":
                # Mid-stream failures arrive as an error line; raise the VaultError subclass its
                # code names, so `except NotFoundError` works on a stream as on an await.
                data = line["data"]
                raise _error_for(data["code"], data["message"])
            yield SecretListStreamItem(data=SecretItem.from_dict(line["data"]), type=line["type"])


def _error_for(code: str, message: str) -> errors.VaultError:
    """The VaultError subclass whose code is ``code`` (its status comes with the class)."""
    cls = _ERRORS_BY_CODE.get(code)
    if cls is None:
        return errors.VaultError(message, code=code)
    return cls(message)


def _error_classes() -> dict[str, type[errors.VaultError]]:
    found: dict[str, type[errors.VaultError]] = {}
    pending: list[type[errors.VaultError]] = [errors.VaultError]
    while pending:
        cls = pending.pop()
        # The vault's own errors only: the stand-in never raises the sync client's RemoteError tree
        # (whose NOT_FOUND would shadow NotFoundError), and MintRefusedError has the mint route's
        # own shape and never reaches a list stream.
        if cls in (errors.RemoteError, errors.MintRefusedError) or cls.__module__ != errors.__name__:
            continue
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls):
            found.setdefault(cls.code, cls)
    return found


_ERRORS_BY_CODE: Final = _error_classes()


class AsyncSecretClient:
    """``AsyncVault.secret``: list, fetch, create, update, delete and mint, each awaitable."""

    def __init__(self, api: SecretApi, executor: Executor | None) -> None:
        self._api = api
        self._executor = executor

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    def _call(self, fn: Callable[..., Any], convert: Callable[[Any], T], *args: Any) -> Call[T]:
        async def run() -> T:
            return convert(await self._in_thread(fn, *args))

        return Call(run)

    def list(self, request: Mapping[str, Any] | object | None = None) -> ListCall:
        """One page (``await``) or every item (``.stream()``). ``request``: cursor, order, take, meta."""
        payload = _payload(request)
        if payload is not None and not isinstance(payload, dict):
            raise InvalidRequestError("list request must be a mapping")
        query = ListQuery.from_mapping(payload)

        async def run() -> SecretListResponse:
            page = await self._in_thread(self._api.list, query)
            return SecretListResponse(cursor=page.get("cursor"), items=[SecretItem.from_dict(i) for i in page["items"]])

        return ListCall(run, partial(self._api.stream, query), self._in_thread)

    def fetch(self, secret_id: str) -> Call[SecretItem]:
        """The secret by id, ``@alias`` or ``(name)``, without its value (as the SDK gives it)."""
        return self._call(self._api.fetch, SecretItem.from_dict, secret_id)

    def create(self, request: Mapping[str, Any] | object) -> Call[SecretIdResponse]:
        return self._call(self._api.create, _id_response, _payload(request))

    def update(self, secret_id: str, request: Mapping[str, Any] | object) -> Call[SecretIdResponse]:
        return self._call(self._api.update, _id_response, secret_id, _payload(request))

    def delete(self, secret_id: str, request: Mapping[str, Any] | object | None = None) -> Call[SecretIdResponse]:
        return self._call(self._api.delete, _id_response, secret_id, _payload(request) or {})

    def mint(self, secret_id: str) -> Call[SecretMintResponse]:
        """A token for a jwt (signed locally) or oauth secret; refusals raise ``MintRefusedError``."""
        return self._call(self._api.mint, _mint_response, secret_id, {})


def _id_response(obj: dict[str, Any]) -> SecretIdResponse:
    return SecretIdResponse(id=obj["id"])


def _mint_response(obj: dict[str, Any]) -> SecretMintResponse:
    return SecretMintResponse(expires_at=obj.get("expiresAt"), token=obj["token"])


class AsyncVault:
    """An async, SDK-shaped view of a vault: ``AsyncVault(v).secret.fetch(...)``.

    ``close_vault=True`` makes :meth:`aclose` (and ``async with``) close the vault too.
    ``executor`` runs the blocking vault calls (default: the event loop's).
    """

    def __init__(self, vault: Vault, *, executor: Executor | None = None, close_vault: bool = False) -> None:
        self.vault = vault
        self._close_vault = close_vault
        self.secret = AsyncSecretClient(SecretApi(vault), executor)

    async def aclose(self) -> None:
        if self._close_vault:
            self.vault.close()

    async def __aenter__(self) -> AsyncVault:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncVault {self.vault!r}>"
