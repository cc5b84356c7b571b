"""The official async Python SDK's secret client, served from a vault in process.

An agent written against ``chatbotkit.ChatBotKit(...).secret`` can take an
:class:`AsyncVault`'s ``.secret`` instead and run offline, with the same results::

    from vault.aio import AsyncVault

    secrets = AsyncVault(v).secret
    created = await secrets.create({"name": "Weather", "type": "bearer", "value": "tok"})
    item = await secrets.fetch(created.id)          # no value, clientSecret masked
    page = await secrets.list({"take": 10})          # .items, .cursor
    async for line in secrets.list().stream():       # line.type is SecretListStreamItemType.ITEM
        ...

**It mirrors chatbotkit 0.6.0, quirks included**, because a test that passes offline must
pass online:

* The response classes have the SDK's names, attributes and field types
  (``created_at`` is a float, ``to_dict()`` leaves out None fields, no ``==`` between two
  responses), and every response has *its own* enum classes, plain :class:`enum.Enum`
  like the SDK's: ``item.type == "oauth"`` is False, ``item.type.value == "oauth"`` is
  True, and a fetched item's ``type`` does not equal a listed item's.
* Requests go through the SDK's conversions: enums and ``to_dict()`` objects become JSON,
  a list request is flattened into the SDK's query string (``meta.KEY=...``, booleans as
  ``true``/``false``) and read back the way the stand-in reads it; something the SDK could
  not send as JSON raises what it raises (``TypeError``, ``ValueError``) when awaited.
* A page with no items is an ``AssertionError``: SDK 0.6.0's ``SecretListResponse``
  parser requires a ``cursor``, and the cloud sends none on an empty page. Stop paging on
  a short page, or use ``.stream()``.
* An error line while streaming is a ``ValueError`` (the SDK cannot parse it either).
* Errors are raised as the SDK raises them: :class:`APIError` with ``message``, ``code``,
  ``status_code``, ``url``, ``data``, and :class:`AuthorizationRequiredError` for the
  ``authorization_required`` answer. **When the ``chatbotkit`` package is installed, the
  raised errors are also instances of ``chatbotkit.APIError`` /
  ``chatbotkit.AuthorizationRequiredError``**, so an agent's ``except`` clauses written
  against the SDK catch them. They are ``vault.VaultError``\\ s too, but never also a
  ``KeyError`` or ``ValueError`` (as ``vault.NotFoundError`` and ``InvalidRequestError``
  are): an ``except KeyError`` must not catch offline what it would not catch online. The
  SDK is imported only when the first error is raised, and only if it is installed.

Every answer comes from :class:`vault._api.SecretApi`, the same code the HTTP stand-in
answers with, so aio and the official SDK on the stand-in agree (``tests/test_sdk_parity.py``
runs the same agent code on both). The blocking vault calls run in a thread executor.
Locally stricter, on purpose: an unknown ``list`` parameter is an ``InvalidRequestError``
(the cloud ignores it): a typo fails offline instead of silently listing everything.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from concurrent.futures import Executor
from functools import cache, partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar
from urllib.parse import quote, unquote, urlencode

from . import errors
from ._api import ListQuery, SecretApi
from ._vault import Vault
from .errors import InvalidRequestError, MissingDependencyError, VaultError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "APIError",
    "AsyncSecretClient",
    "AsyncVault",
    "AuthorizationRequiredError",
    "CLOUD_BASE_URL",
    "Call",
    "FluffyKind",
    "IndigoType",
    "ListCall",
    "SecretCreateResponse",
    "SecretDeleteResponse",
    "SecretFetchResponse",
    "SecretFetchResponseKind",
    "SecretFetchResponseType",
    "SecretFetchResponseVisibility",
    "SecretIdResponse",
    "SecretItem",
    "SecretKind",
    "SecretListResponse",
    "SecretListResponseItem",
    "SecretListStreamItem",
    "SecretListStreamItemData",
    "SecretListStreamItemType",
    "SecretMintResponse",
    "SecretType",
    "SecretUpdateResponse",
    "SecretVisibility",
    "StickyType",
    "StickyVisibility",
    "TentacledKind",
    "TentacledVisibility",
]

T = TypeVar("T")

#: Where the SDK sends requests by default; errors carry the URL it would have called there.
CLOUD_BASE_URL: Final = "https://api.chatbotkit.com"

# --- enums: plain Enum, one set per response class, as in chatbotkit.types ------------------------


class SecretKind(enum.Enum):
    """The kind of the secret"""

    PERSONAL = "personal"
    SHARED = "shared"


class SecretType(enum.Enum):
    """The type of the secret"""

    BASIC = "basic"
    BEARER = "bearer"
    JWT = "jwt"
    OAUTH = "oauth"
    PLAIN = "plain"
    REFERENCE = "reference"
    TEMPLATE = "template"


class SecretVisibility(enum.Enum):
    """The visibility of the secret"""

    PRIVATE = "private"
    PROTECTED = "protected"
    PUBLIC = "public"


class SecretFetchResponseKind(enum.Enum):
    """``fetch``'s kind enum"""

    PERSONAL = "personal"
    SHARED = "shared"


class SecretFetchResponseType(enum.Enum):
    """``fetch``'s type enum"""

    BASIC = "basic"
    BEARER = "bearer"
    JWT = "jwt"
    OAUTH = "oauth"
    PLAIN = "plain"
    REFERENCE = "reference"
    TEMPLATE = "template"


class SecretFetchResponseVisibility(enum.Enum):
    """``fetch``'s visibility enum"""

    PRIVATE = "private"
    PROTECTED = "protected"
    PUBLIC = "public"


# The SDK's generated names for the enums of a listed item (SecretListResponseItem)...
class FluffyKind(enum.Enum):
    """A listed item's kind enum (the SDK's generated name)"""

    PERSONAL = "personal"
    SHARED = "shared"


class StickyType(enum.Enum):
    """A listed item's type enum (the SDK's generated name)"""

    BASIC = "basic"
    BEARER = "bearer"
    JWT = "jwt"
    OAUTH = "oauth"
    PLAIN = "plain"
    REFERENCE = "reference"
    TEMPLATE = "template"


class TentacledVisibility(enum.Enum):
    """A listed item's visibility enum (the SDK's generated name)"""

    PRIVATE = "private"
    PROTECTED = "protected"
    PUBLIC = "public"


# ... and of a streamed item (SecretListStreamItemData).
class TentacledKind(enum.Enum):
    """A streamed item's kind enum (the SDK's generated name)"""

    PERSONAL = "personal"
    SHARED = "shared"


class IndigoType(enum.Enum):
    """A streamed item's type enum (the SDK's generated name)"""

    BASIC = "basic"
    BEARER = "bearer"
    JWT = "jwt"
    OAUTH = "oauth"
    PLAIN = "plain"
    REFERENCE = "reference"
    TEMPLATE = "template"


class StickyVisibility(enum.Enum):
    """A streamed item's visibility enum (the SDK's generated name)"""

    PRIVATE = "private"
    PROTECTED = "protected"
    PUBLIC = "public"


class SecretListStreamItemType(enum.Enum):
    """The type of event"""

    ITEM = "item"


# --- responses ----------------------------------------------------------------------------------


def _enum(cls: type[enum.Enum], value: Any) -> Any:
    return None if value is None else cls(value)


class SecretItem:
    """A secret as the SDK returns it: every field but ``value``; times are epoch ms as floats.

    The common base of :class:`SecretFetchResponse`, :class:`SecretListResponseItem` and
    :class:`SecretListStreamItemData` (the SDK has three unrelated classes with these fields).
    """

    _kind_enum: ClassVar[type[enum.Enum]] = SecretFetchResponseKind
    _type_enum: ClassVar[type[enum.Enum]] = SecretFetchResponseType
    _visibility_enum: ClassVar[type[enum.Enum]] = SecretFetchResponseVisibility

    def __init__(
        self,
        alias: str | None,
        blueprint_id: str | None,
        config: dict[str, Any] | None,
        created_at: float,
        description: str | None,
        id: str,
        kind: Any,
        meta: dict[str, Any] | None,
        name: str | None,
        type: Any,
        updated_at: float,
        visibility: Any,
    ) -> None:
        self.alias = alias
        self.blueprint_id = blueprint_id
        self.config = config
        self.created_at = created_at
        self.description = description
        self.id = id
        self.kind = kind
        self.meta = meta
        self.name = name
        self.type = type
        self.updated_at = updated_at
        self.visibility = visibility

    @classmethod
    def from_dict(cls: type[_ItemT], obj: Mapping[str, Any]) -> _ItemT:
        return cls(
            obj.get("alias"),
            obj.get("blueprintId"),
            obj.get("config"),
            float(obj["createdAt"]),
            obj.get("description"),
            obj["id"],
            _enum(cls._kind_enum, obj.get("kind")),
            obj.get("meta"),
            obj.get("name"),
            _enum(cls._type_enum, obj.get("type")),
            float(obj["updatedAt"]),
            _enum(cls._visibility_enum, obj.get("visibility")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire (camelCase) shape, without the fields that are None (as the SDK's ``to_dict``)."""
        out: dict[str, Any] = {}
        for key, value in (("alias", self.alias), ("blueprintId", self.blueprint_id), ("config", self.config)):
            if value is not None:
                out[key] = value
        out["createdAt"] = self.created_at
        if self.description is not None:
            out["description"] = self.description
        out["id"] = self.id
        for key, value in (("kind", self.kind), ("meta", self.meta), ("name", self.name), ("type", self.type)):
            if value is not None:
                out[key] = value.value if isinstance(value, enum.Enum) else value
        out["updatedAt"] = self.updated_at
        if self.visibility is not None:
            out["visibility"] = self.visibility.value
        return out


_ItemT = TypeVar("_ItemT", bound=SecretItem)


class SecretFetchResponse(SecretItem):
    """``fetch``'s answer; ``kind``/``type``/``visibility`` are ``SecretFetchResponse*`` enums."""


class SecretListResponseItem(SecretItem):
    """One item of a ``list`` page; its enums are ``FluffyKind``, ``StickyType``, ``TentacledVisibility``."""

    _kind_enum = FluffyKind
    _type_enum = StickyType
    _visibility_enum = TentacledVisibility


class SecretListStreamItemData(SecretItem):
    """The ``data`` of a streamed line; its enums are ``TentacledKind``, ``IndigoType``, ``StickyVisibility``."""

    _kind_enum = TentacledKind
    _type_enum = IndigoType
    _visibility_enum = StickyVisibility


class SecretIdResponse:
    """What create, update and delete answer: ``{"id": ...}`` (the base of the SDK's three classes)."""

    def __init__(self, id: str) -> None:
        self.id = id

    @classmethod
    def from_dict(cls: type[_IdT], obj: Mapping[str, Any]) -> _IdT:
        return cls(obj["id"])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id}


_IdT = TypeVar("_IdT", bound=SecretIdResponse)


class SecretCreateResponse(SecretIdResponse):
    """``create``'s answer: the new secret's id."""


class SecretUpdateResponse(SecretIdResponse):
    """``update``'s answer: the real id, even when the secret was addressed by alias."""


class SecretDeleteResponse(SecretIdResponse):
    """``delete``'s answer."""


class SecretListResponse:
    """One page: ``cursor`` (the last item's id) and ``items``."""

    def __init__(self, cursor: str, items: list[SecretListResponseItem]) -> None:
        self.cursor = cursor
        self.items = items

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SecretListResponse:
        cursor = obj.get("cursor")
        # SDK 0.6.0 asserts a string cursor; the cloud sends none on an empty page. Same failure here.
        assert isinstance(cursor, str), (
            "chatbotkit 0.6.0 cannot parse a page without a cursor, which is how the cloud answers "
            "an empty page: stop paging on a short page, or use .stream()"
        )
        return cls(cursor, [SecretListResponseItem.from_dict(item) for item in obj["items"]])

    def to_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "items": [item.to_dict() for item in self.items]}


class SecretListStreamItem:
    """One JSONL line of a streamed list: ``type`` is ``SecretListStreamItemType.ITEM``, ``data`` the secret."""

    def __init__(self, data: SecretListStreamItemData, type: SecretListStreamItemType) -> None:
        self.data = data
        self.type = type

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SecretListStreamItem:
        kind = SecretListStreamItemType(obj["type"])  # an "error" line is a ValueError, as in the SDK
        return cls(SecretListStreamItemData.from_dict(obj["data"]), kind)

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data.to_dict(), "type": self.type.value}


class SecretMintResponse:
    """A minted token and its expiry (epoch ms as a float, or None)."""

    def __init__(self, expires_at: float | None, token: str) -> None:
        self.expires_at = expires_at
        self.token = token

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SecretMintResponse:
        expires = obj.get("expiresAt")
        return cls(None if expires is None else float(expires), obj["token"])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.expires_at is None else {"expiresAt": self.expires_at}
        out["token"] = self.token
        return out

    def __repr__(self) -> str:
        return f"SecretMintResponse(expires_at={self.expires_at!r}, token=<hidden>)"


# --- errors: the SDK's, and the SDK's own classes too when it is installed -----------------------


class APIError(VaultError):
    """``chatbotkit.APIError``, mirrored: ``message``, ``code``, ``status_code``, ``url``, ``data``.

    ``code`` is the body's ``code``, else ``ERROR_<status>`` (the SDK's fallback: a mint
    refusal has no ``code``); ``data`` is the error body; ``url`` the request URL the SDK
    would have called on the cloud. ``status`` (the vault's name) equals ``status_code``.
    """

    code = "API_ERROR"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status_code: int | None = None,
        url: str | None = None,
        data: Any = None,
    ) -> None:
        super().__init__(message, code=code or (f"ERROR_{status_code}" if status_code else None))
        self.status_code = status_code
        self.status = status_code or 500
        self.url = url
        self.data = data


class AuthorizationRequiredError(APIError):
    """``chatbotkit.AuthorizationRequiredError``: the secret is not authenticated; ``url`` is where to do it."""

    code = "AUTHORIZATION_REQUIRED"

    def __init__(
        self, message: str, *, status_code: int | None = None, url: str | None = None, data: Any = None
    ) -> None:
        super().__init__(message, "AUTHORIZATION_REQUIRED", status_code, url, data)


@cache
def _sdk_error_classes() -> tuple[type[Exception], type[Exception]] | None:
    """``(chatbotkit.APIError, chatbotkit.AuthorizationRequiredError)`` when the SDK is installed."""
    try:
        sdk = importlib.import_module("chatbotkit")
        found = (sdk.APIError, sdk.AuthorizationRequiredError)
    except Exception:  # not installed, or broken: the vault's own classes still work
        return None
    if not all(isinstance(cls, type) and issubclass(cls, Exception) for cls in found):
        return None
    return found


def _without_builtins(cls: type[VaultError]) -> type[VaultError]:
    """``cls``, or its nearest base that is not also a builtin error.

    ``NotFoundError`` is also a ``KeyError`` and ``InvalidRequestError`` a ``ValueError``; the
    SDK's errors are neither, so an agent's ``except KeyError`` must not catch offline what it
    would not catch online. ``ConflictError``, ``MintRefusedError``, ``VaultClosedError`` add
    nothing of the kind and are kept.
    """
    while any(
        base not in (Exception, BaseException, object) and not issubclass(base, VaultError) for base in cls.__mro__
    ):
        cls = next(b for b in cls.__bases__ if issubclass(b, VaultError))
    return cls


_COMBINED: dict[tuple[type[VaultError], bool, bool], type[APIError]] = {}


def _error_class(raised: type[VaultError], auth: bool) -> type[APIError]:
    """The vault's class (builtin bases left out), the mirror class and, if installed, the SDK's."""
    sdk = _sdk_error_classes()
    key = (raised, auth, sdk is not None)
    cls = _COMBINED.get(key)
    if cls is None:
        mirror: type[APIError] = AuthorizationRequiredError if auth else APIError
        extra = () if sdk is None else (sdk[1] if auth else sdk[0],)
        vault_cls = _without_builtins(raised)
        bases: tuple[type, ...] = (mirror, *extra) if issubclass(mirror, vault_cls) else (vault_cls, mirror, *extra)
        cls = type(mirror.__name__, bases, {"__module__": __name__, "__str__": VaultError.__str__})
        _COMBINED[key] = cls
    return cls


def _api_error(exc: VaultError, url: str) -> APIError:
    """What the SDK raises for the stand-in's answer to ``exc`` (the same body the HTTP route sends)."""
    body = exc.to_dict()
    status = exc.status
    auth = body.get("error") == "authorization_required"
    cls = _error_class(type(exc), auth)
    message = body.get("message") or f"HTTP Error: {status}"
    err = cls.__new__(cls, message)
    BaseException.__init__(err, message)
    vars(err).update(vars(exc))  # the vault error's own attributes (MintRefusedError.error, ...)
    err.message = message
    err.code = "AUTHORIZATION_REQUIRED" if auth else (body.get("code") or f"ERROR_{status}")
    err.status = err.status_code = status
    err.url = body.get("url") if auth else url
    err.data = body
    return err


_STREAM_ERRORS: dict[type[VaultError], type[VaultError]] = {}


def _stream_error(exc: VaultError) -> VaultError:
    """An error line while streaming: a ``ValueError`` like the SDK's, and the vault's class
    (builtin bases left out, as for :class:`APIError`)."""
    raised = _without_builtins(type(exc))
    cls = _STREAM_ERRORS.get(raised)
    if cls is None:
        namespace = {"__module__": raised.__module__, "__str__": VaultError.__str__}
        cls = type(raised.__name__, (raised, ValueError), namespace)
        _STREAM_ERRORS[raised] = cls
    err = cls.__new__(cls, exc.message)
    BaseException.__init__(err, exc.message)
    vars(err).update(vars(exc))
    return err


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


# --- requests, as the SDK turns them into JSON and query strings --------------------------------


def _to_payload(value: Any) -> Any:
    """The SDK's conversion: an enum's value, an object's ``to_dict()`` (as it is), mappings and lists inside."""
    if isinstance(value, enum.Enum):
        return value.value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, Mapping):
        return {key: _to_payload(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_payload(item) for item in value]
    return value


def _json_body(record: Any) -> Any:
    """The body the server reads: httpx's JSON encoding (``TypeError``/``ValueError`` as it raises them)."""
    return json.loads(json.dumps(_to_payload(record), ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _query_value(value: Any) -> str:
    value = _to_payload(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: The list parameters the SDK knows, plus the cloud's blueprintId filter.
_LIST_KEYS: Final = frozenset({"cursor", "order", "take", "meta", "blueprintId"})


def _query_items(request: Any) -> list[tuple[str, str]]:
    """The SDK's query string for ``list(request)``: one level of ``KEY.SUB``, None left out."""
    if request is None:
        return []
    query = _to_payload(request)
    if not isinstance(query, Mapping):
        raise TypeError("query must be a mapping or generated params object")
    unknown = sorted(str(k) for k in query if k not in _LIST_KEYS)
    if unknown:  # locally stricter: the cloud ignores unknown parameters (a typo would list everything)
        raise InvalidRequestError("; ".join(f'"{k[:64]}" is not allowed' for k in unknown))
    items: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            items.extend((f"{key}.{sub}", _query_value(v)) for sub, v in value.items() if v is not None)
        else:
            items.append((str(key), _query_value(value)))
    return items


# httpx leaves these as they are in a path (and %XX escapes); everything else is percent-encoded.
_PATH_SAFE: Final = "!$&'()*+,;=:@[]~|^\\%/"


def _cloud_url(secret_id: str | None, action: str, query: list[tuple[str, str]] | None = None) -> str:
    path = action if secret_id is None else f"{quote(secret_id, safe=_PATH_SAFE)}/{action}"
    url = f"{CLOUD_BASE_URL}/v1/secret/{path}"
    return f"{url}?{urlencode(query, quote_via=quote)}" if query else url


def _route_id(secret_id: str) -> str:
    """The id the server's route sees. The SDK puts ``secret_id`` in the path as it is: a ``/``,
    ``?`` or ``#`` in it (or nothing) reaches no route (404), and ``%XX`` is decoded by the server."""
    if not isinstance(secret_id, str) or not secret_id or any(c in secret_id for c in "/?#"):
        raise errors.NotFoundError("Not found")
    return unquote(secret_id)


# --- calls --------------------------------------------------------------------------------------


class Call(Generic[T]):
    """An awaitable result, like the SDK's ``Response``: ``await call``, ``await call.json()``,
    ``await call.cache(key)``.

    The work starts on first await and runs once; awaiting again gives the same result.
    """

    def __init__(
        self,
        run: Callable[[], Awaitable[T]],
        cache_key: str = "",
        cache_map: dict[str, asyncio.Future[Any]] | None = None,
    ) -> None:
        self._run = run
        self._task: asyncio.Future[T] | None = None
        self._cache_key = cache_key
        self._cache_map: dict[str, asyncio.Future[Any]] = {} if cache_map is None else cache_map

    async def json(self) -> T:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return await self._task

    def __await__(self) -> Generator[Any, None, T]:
        return self.json().__await__()

    async def cache(self, key: str = "default") -> T:
        """The result of the first call with the same request and ``key`` on this client (the SDK's ``cache``)."""
        cache_key = json.dumps({"key": key, "call": self._cache_key}, sort_keys=True)
        if cache_key not in self._cache_map:
            self._cache_map[cache_key] = asyncio.ensure_future(self.json())
        result: T = await self._cache_map[cache_key]
        return result


class ListCall(Call[SecretListResponse]):
    """``list``'s result: awaitable for one page, or ``.stream()`` for every item (JSONL semantics)."""

    def __init__(
        self,
        run: Callable[[], Awaitable[SecretListResponse]],
        lines: Callable[[], Iterator[dict[str, Any]]],
        in_thread: Callable[..., Awaitable[Any]],
        cache_key: str = "",
        cache_map: dict[str, asyncio.Future[Any]] | None = None,
    ) -> None:
        super().__init__(run, cache_key, cache_map)
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
                # Mid-stream failures arrive as an error line, which the SDK's parser refuses with a
                # ValueError. Raise one that is also the VaultError subclass its code names.
                data = line["data"]
                raise _stream_error(_error_for(data["code"], data["message"]))
            yield SecretListStreamItem.from_dict(line)


class AsyncSecretClient:
    """``AsyncVault.secret``: the SDK's list, fetch, create, update, delete, mint and proxy."""

    def __init__(self, api: SecretApi, executor: Executor | None) -> None:
        self._api = api
        self._executor = executor
        self._cache: dict[str, asyncio.Future[Any]] = {}

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    async def _answer(self, url: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self._in_thread(fn, *args)
        except VaultError as exc:
            raise _api_error(exc, url) from None

    def _call(
        self,
        secret_id: str | None,
        action: str,
        request: Callable[[], tuple[Any, ...]],
        fn: Callable[..., Any],
        parse: Callable[[Any], T],
        record: Any = None,
    ) -> Call[T]:
        url = _cloud_url(secret_id, action)

        async def run() -> T:
            try:
                args = request()
            except VaultError as exc:
                raise _api_error(exc, url) from None
            return parse(await self._answer(url, fn, *args))

        key = json.dumps(["POST" if record is not None else "GET", url, repr(record)])
        return Call(run, key, self._cache)

    def list(self, request: Mapping[str, Any] | object | None = None) -> ListCall:
        """One page (``await``) or every item (``.stream()``). ``request``: cursor, order, take, meta."""

        def query() -> tuple[ListQuery, str]:
            pairs = _query_items(request)  # TypeError, or the local typo check, as they are
            url = _cloud_url(None, "list", pairs)
            try:
                return ListQuery.from_pairs(pairs), url
            except VaultError as exc:  # the query string refused: the stand-in answers before any line
                raise _api_error(exc, url) from None

        async def run() -> SecretListResponse:
            parsed, url = query()
            return SecretListResponse.from_dict(await self._answer(url, self._api.list, parsed))

        def lines() -> Iterator[dict[str, Any]]:
            return self._api.stream(query()[0])

        return ListCall(run, lines, self._in_thread, json.dumps(["GET", "list", repr(request)]), self._cache)

    def fetch(self, secret_id: str) -> Call[SecretFetchResponse]:
        """The secret by id, ``@alias`` or ``(name)``, without its value (as the SDK gives it)."""
        return self._call(
            secret_id, "fetch", lambda: (_route_id(secret_id),), self._api.fetch, SecretFetchResponse.from_dict
        )

    def create(self, request: Mapping[str, Any] | object) -> Call[SecretCreateResponse]:
        return self._call(
            None, "create", lambda: (_json_body(request),), self._api.create, SecretCreateResponse.from_dict, request
        )

    def update(self, secret_id: str, request: Mapping[str, Any] | object) -> Call[SecretUpdateResponse]:
        return self._call(
            secret_id,
            "update",
            lambda: (_route_id(secret_id), _json_body(request)),
            self._api.update,
            SecretUpdateResponse.from_dict,
            request,
        )

    def delete(self, secret_id: str, request: Mapping[str, Any] | None = None) -> Call[SecretDeleteResponse]:
        body = request or {}
        return self._call(
            secret_id,
            "delete",
            lambda: (_route_id(secret_id), _json_body(body)),
            self._api.delete,
            SecretDeleteResponse.from_dict,
            body,
        )

    def mint(self, secret_id: str) -> Call[SecretMintResponse]:
        """A token for a jwt (signed locally) or oauth secret; refusals raise :class:`APIError`
        (``data["error"] == "not_mintable"``) or :class:`AuthorizationRequiredError` (with ``url``)."""
        return self._call(
            secret_id, "mint", lambda: (_route_id(secret_id), {}), self._api.mint, SecretMintResponse.from_dict, {}
        )

    async def proxy(self, secret_id: str, request: Mapping[str, Any] | object) -> httpx.Response:
        """The SDK's ``proxy``: the answer as an ``httpx.Response`` (needs httpx). Offline there is
        no upstream, so the answer is the stand-in's refusal; ``authorization_required`` is raised
        as :class:`AuthorizationRequiredError`, as the SDK does."""
        try:
            http = importlib.import_module("httpx")
        except ImportError:
            raise MissingDependencyError("vault.aio proxy returns an httpx.Response: pip install httpx") from None
        url = _cloud_url(secret_id, "proxy")
        try:
            answer = await self._in_thread(self._api.proxy, _route_id(secret_id), _json_body(request))
        except VaultError as exc:
            status, body = exc.status, exc.to_dict()
            if body.get("error") == "authorization_required":
                raise _api_error(exc, url) from None
        else:
            status, body = 200, answer
        response: httpx.Response = http.Response(status, json=body, request=http.Request("POST", url))
        return response


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
