"""ChatBotKitRemote: the cloud's secret API over httpx, the way the official SDKs call it.

The only module that imports httpx (an optional extra: ``cbk-vault[sync]``). Every
foreign error is translated here, once, into the ``RemoteError`` branch of the
VaultError tree::

    VaultError
    └── RemoteError                     the cloud's code, e.g. CONFLICT, BAD_REQUEST
        ├── RemoteAuthError             NOT_AUTHENTICATED  401, or no token at all
        ├── RemoteForbiddenError        NOT_AUTHORIZED     403
        ├── RemoteNotFoundError (KeyError) NOT_FOUND       404
        ├── RemoteUnavailableError      UNAVAILABLE        retries and time budget used up, network down
        └── RemoteProtocolError         BAD_RESPONSE       a response that breaks the API's shape

Safety rules kept here: TLS verification is always on for https and there is no
switch to turn it off; plain http is accepted only for a loopback host (tests and a
local stand-in); redirects are never followed (the token would go with them); the
token never appears in a repr, a URL or an error message.
"""

from __future__ import annotations

import email.utils
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeGuard

import httpx

from .._net import is_loopback as _is_loopback
from ..errors import (
    InvalidRequestError,
    RemoteAuthError,
    RemoteError,
    RemoteForbiddenError,
    RemoteNotFoundError,
    RemoteProtocolError,
    RemoteUnavailableError,
)

if TYPE_CHECKING:
    from .._vault import Vault

__all__ = [
    "DEFAULT_BASE_URL",
    "MARKER_KEY",
    "MAX_REMOTE_ID",
    "TOKEN_ALIAS",
    "TOKEN_ENV",
    "ChatBotKitRemote",
    "remote_id_ok",
]

DEFAULT_BASE_URL: Final = "https://api.chatbotkit.com"
TOKEN_ENV: Final = "CHATBOTKIT_API_TOKEN"  # noqa: S105 - a variable name, not a token
#: A vault secret with this alias holds the API token when neither an argument nor the env var does.
TOKEN_ALIAS: Final = "chatbotkit-api-token"  # noqa: S105 - an alias, not a token
#: The meta key a pushed secret carries in the cloud: "<vault ref>:<local id>".
MARKER_KEY: Final = "cbkVaultRef"

#: The longest cloud id taken (the cloud's are 25-character cuids): it goes into URL paths, links and the index.
MAX_REMOTE_ID: Final = 128

_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_MAX_ITEMS: Final = 1_000_000  # the vault's own record cap; a listing longer than this is a runaway server
_MAX_MESSAGE: Final = 200


def _resolve_token(token: str | None, vault: Vault | None, token_secret: str) -> tuple[str, str | None]:
    """The token, and the id of the vault record it was read from (None: argument or env)."""
    source: str | None = None
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None and vault is not None:
        from ..errors import NotFoundError

        try:
            record = vault.secret.fetch(token_secret)
        except NotFoundError:
            token = None
        else:
            token, source = record.value, record.id
    if not token:
        raise RemoteAuthError(
            f"no ChatBotKit API token: pass token=, set {TOKEN_ENV}, or store it in the vault as @{TOKEN_ALIAS}",
            status=0,
        )
    token = token.strip()
    # A newline or space would let the token split or forge a header line.
    if not token or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise InvalidRequestError("the API token must be one word of printable characters")
    return token, source


class ChatBotKitRemote:
    """The cloud's secret resource: list (all pages), fetch, create, update, delete.

    ``token``: the API token; when None, ``$CHATBOTKIT_API_TOKEN``, then the value of the
    vault secret ``token_secret`` (``@chatbotkit-api-token``) if ``vault`` is given.
    ``transport``: an httpx transport to use instead of the network (tests).
    ``max_retries``/``max_backoff``/``max_total``: retries on 429 and 5xx, the longest single
    wait (a longer Retry-After gives up instead of waiting), and the whole call's time budget.
    """

    def __init__(
        self,
        token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        vault: Vault | None = None,
        token_secret: str = "@" + TOKEN_ALIAS,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_backoff: float = 30.0,
        max_total: float = 120.0,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            raise InvalidRequestError("base_url is not a valid URL") from None
        if url.scheme not in ("https", "http") or not url.host:
            raise InvalidRequestError("base_url must be an https:// URL")
        if url.scheme == "http" and not _is_loopback(url.host):
            # A token sent in clear text over the network is a token given away.
            raise InvalidRequestError("base_url must use https (plain http is allowed only for a loopback host)")
        if url.userinfo or url.query or url.fragment:
            raise InvalidRequestError("base_url must not carry credentials, a query or a fragment")
        self._token, source = _resolve_token(token, vault, token_secret)
        #: The vault record the token was read from, if any: sync never pushes it.
        self.token_record_id: str | None = source
        # The SDKs build /api/v1/... and drop "/api" only for the hosted API's host.
        prefix = "/v1" if url.host == "api.chatbotkit.com" else "/api/v1"
        self._root = url.copy_with(path=url.path.rstrip("/") + prefix)
        self.base_url = str(url)
        self._max_retries = max(0, max_retries)
        self._max_backoff = max(0.0, max_backoff)
        self._max_total = max(0.0, max_total)
        self._timeout = max(0.001, timeout)
        self._page_size = max(1, min(100, page_size))
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.Client(
            # verify=True is httpx's default; spelt out because it must never change.
            # trust_env=False: the CA bundle is certifi's, not whatever SSL_CERT_FILE points at.
            transport=transport if transport is not None else httpx.HTTPTransport(verify=True, trust_env=False),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # no proxy or CA bundle swapped in by environment variables
            headers={"accept": "application/json", "user-agent": "cbk-vault-sync"},
        )
        #: Requests sent (including retries), for the CLI's summary and tests.
        self.requests = 0

    def __repr__(self) -> str:
        return f"<ChatBotKitRemote {self.base_url!r}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("ChatBotKitRemote holds an API token and cannot be pickled")

    def is_token(self, value: str | None) -> bool:
        """Is ``value`` the API token in use? (Sync keeps such a record local, whatever its alias.)"""
        if not value:
            return False
        return hmac.compare_digest(value.strip().encode("utf-8"), self._token.encode("utf-8"))

    def close(self) -> None:
        """Close the HTTP client (only one this remote created itself)."""
        self._client.close()

    def __enter__(self) -> ChatBotKitRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the resource ---------------------------------------------------------------------

    def list_all(self, *, meta: Mapping[str, str] | None = None, deadline: float | None = None) -> list[dict[str, Any]]:
        """Every secret (no values), oldest first, following the cursor until an empty page.

        ``deadline`` (on the ``clock``): when given, every page request must finish by then;
        otherwise each page has its own ``max_total`` budget.
        """
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            params: dict[str, str] = {"order": "asc", "take": str(self._page_size)}
            if cursor is not None:
                params["cursor"] = cursor
            for key, want in (meta or {}).items():
                params[f"meta.{key}"] = want
            body = self._call("GET", "/secret/list", params=params, deadline=deadline)
            page = body.get("items") if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise RemoteProtocolError("the list response has no items array")
            if not page:
                return items
            for item in page:
                item_id = item.get("id") if isinstance(item, dict) else None
                if not remote_id_ok(item_id):
                    raise RemoteProtocolError("a listed secret has no id, or one that is not a plain path segment")
                if item_id in seen:
                    raise RemoteProtocolError("the listing repeated a secret (the cursor did not advance)")
                seen.add(item_id)
                items.append(item)
            if len(items) > _MAX_ITEMS:
                raise RemoteProtocolError(f"the listing passed {_MAX_ITEMS} secrets")
            nxt = body.get("cursor")
            cursor = nxt if isinstance(nxt, str) and nxt else page[-1]["id"]

    def fetch(self, secret_id: str) -> dict[str, Any]:
        """One secret's item by id (no value; ``config.clientSecret`` masked)."""
        body = self._call("GET", f"/secret/{_segment(secret_id)}/fetch")
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise RemoteProtocolError("the fetch response is not a secret")
        return body

    def create(self, body: Mapping[str, Any], *, marker: str | None = None) -> str:
        """Create a secret; returns its id.

        A 5xx or a dropped connection may come after the cloud stored the secret, so before
        retrying, a create that carries ``marker`` looks it up by ``meta.cbkVaultRef`` and
        returns the one that exists: a retry never makes a duplicate.
        """

        def recover(deadline: float) -> Any:
            """Find the secret an interrupted create left behind, by its marker (None: it was not created)."""
            if marker is None:
                return None
            # The lookup spends the create's own budget: the whole call stays bounded.
            found = self.list_all(meta={MARKER_KEY: marker}, deadline=deadline)
            return {"id": found[0]["id"]} if found else None

        return _id_of(self._call("POST", "/secret/create", json=dict(body), recover=recover))

    def update(self, secret_id: str, body: Mapping[str, Any]) -> str:
        """Update a secret with the request body; returns the cloud's id for it."""
        return _id_of(self._call("POST", f"/secret/{_segment(secret_id)}/update", json=dict(body)))

    def delete(self, secret_id: str) -> None:
        """Delete a secret in the cloud."""
        self._call("POST", f"/secret/{_segment(secret_id)}/delete", json={})

    # --- transport ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: dict[str, Any] | None = None,
        recover: Callable[[float], Any] | None = None,
        deadline: float | None = None,
    ) -> Any:
        """One request series: retries included, it ends by ``deadline`` (default: now + max_total).

        Each attempt's httpx timeout is cut to the time left, and no attempt starts after the
        deadline, so a slow server cannot stretch the series past its budget.
        """
        url = self._root.copy_with(path=self._root.path + path)
        headers = {"authorization": f"Bearer {self._token}"}
        if json is not None:
            headers["content-type"] = "application/json"
        if deadline is None:
            deadline = self._clock() + self._max_total
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            failure: str
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RemoteUnavailableError(
                    f"ChatBotKit did not answer within the {self._max_total:g} s budget ({attempt - 1} attempts)",
                    status=0,
                )
            try:
                self.requests += 1
                response = self._client.request(
                    method, url, params=params, json=json, headers=headers, timeout=min(self._timeout, remaining)
                )
            except httpx.DecodingError:
                # A body that its own Content-Encoding cannot decode: the response is broken, and
                # asking again would get the same one.
                raise RemoteProtocolError("ChatBotKit sent a body its Content-Encoding cannot decode") from None
            except httpx.TransportError as exc:
                # The exception text names the host, never the headers; keep only its class.
                failure = f"network error ({type(exc).__name__})"
            if response is not None:
                status = response.status_code
                if status == 200:
                    return _json_body(response)
                if status not in _RETRY_STATUS:
                    self._raise_for(response)
                failure = f"HTTP {status}"
            if recover is not None and (response is None or response.status_code != 429):
                # 429 is refused before any work; anything else may have been applied.
                found = recover(deadline)
                if found is not None:
                    return found
            delay = self._delay(attempt, response)
            if attempt > self._max_retries or delay is None or self._clock() + delay >= deadline:
                if response is not None and response.status_code in _RETRY_STATUS:
                    err = self._error_for(response)
                    raise RemoteUnavailableError(
                        f"ChatBotKit kept failing after {attempt} attempts: {err.message}",
                        code=err.code,
                        status=response.status_code,
                    )
                raise RemoteUnavailableError(f"ChatBotKit unreachable after {attempt} attempts: {failure}", status=0)
            self._sleep(delay)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """How long to wait before the next attempt; None when the server asks for too long."""
        if response is not None and "retry-after" in response.headers:
            wait = _retry_after(response.headers["retry-after"])
            if wait is not None:
                return wait if wait <= self._max_backoff else None
        # Like the Node SDK: 250 ms, doubling.
        return float(min(self._max_backoff, 0.25 * 2 ** (attempt - 1)))

    def _error_for(self, response: httpx.Response) -> RemoteError:
        status = response.status_code
        message, code = f"HTTP error {status}", f"ERROR_{status}"
        try:
            body = _decode(response)
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("message"), str) and body["message"]:
                message = body["message"]
            if isinstance(body.get("code"), str) and body["code"]:
                code = body["code"]
        message = self._clean(message)
        if len(code) > 64 or not code.replace("_", "").isalnum():
            code = f"ERROR_{status}"
        text = f"ChatBotKit {status} {code}: {message}"
        cls: type[RemoteError] = RemoteError
        if status == 401:
            cls = RemoteAuthError
            text += f" (check the API token: argument, {TOKEN_ENV}, or @{TOKEN_ALIAS} in the vault)"
        elif status == 403:
            cls = RemoteForbiddenError
        elif status == 404:
            cls = RemoteNotFoundError
        return cls(text, code=code, status=status)

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        raise self._error_for(response)

    def _clean(self, message: str) -> str:
        # A server that echoes the Authorization header must not get the token into our errors.
        message = message.replace(self._token, "<token>")
        message = "".join(ch if ch.isprintable() else " " for ch in message)
        return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _retry_after(raw: str) -> float | None:
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def remote_id_ok(value: object) -> TypeGuard[str]:
    """A cloud id sync can use: 1..128 printable ASCII characters that cannot change a URL path.

    Ids travel in request paths and are kept in the vault (links, the link index), so anything
    that could change the path (``/ ? # % \\``, ``..``, spaces, controls) is refused, not escaped.
    The one rule for ids we send and ids the cloud sends.
    """
    return (
        type(value) is str
        and 0 < len(value) <= MAX_REMOTE_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and not any(c in value for c in "/?#%\\")
        and ".." not in value
    )


def _segment(secret_id: str) -> str:
    if not remote_id_ok(secret_id):
        raise InvalidRequestError("a remote secret id must be a plain path segment")
    return secret_id


def _no_constant(name: str) -> NoReturn:
    # Python's json accepts NaN/Infinity, JSON does not: a body holding one is not the API's.
    raise ValueError(f"{name} is not JSON")


def _decode(response: httpx.Response) -> Any:
    """Strict JSON: no NaN/Infinity; nesting deep enough to exhaust the stack is a ValueError too."""
    try:
        return json.loads(response.content, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _json_body(response: httpx.Response) -> Any:
    try:
        return _decode(response)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RemoteProtocolError("ChatBotKit answered 200 with a body that is not JSON") from None


def _id_of(body: Any) -> str:
    if not isinstance(body, dict) or not remote_id_ok(body.get("id")):
        raise RemoteProtocolError("the response has no secret id, or one that is not a plain path segment")
    result: str = body["id"]
    return result
