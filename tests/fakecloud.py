"""A fake ChatBotKit secret API: a real HTTP server on 127.0.0.1, in a thread, in memory.

Built from docs/../shared/chatbotkit-secret-api.md, not from our client:

* routes ``GET /api/v1/secret/list``, ``GET /api/v1/secret/{id}/fetch``,
  ``POST /api/v1/secret/create``, ``POST /api/v1/secret/{id}/update``,
  ``POST /api/v1/secret/{id}/delete`` (ids, ``@alias`` or ``(name)`` in the path);
* ``Authorization``: the second word must be the token, else 401 NOT_AUTHENTICATED;
* responses never hold ``value``; ``config.clientSecret`` is masked as ``********``
  (null when empty); unset fields come back as JSON null;
* list: sorted by (createdAt, id), ``order`` asc/desc (anything else desc), ``take``
  clamped to 1..100 (0/missing/garbage -> 100, negative -> 1), ``cursor`` = last item's
  id, no ``cursor`` key on an empty page, ``meta.KEY=VALUE`` filters;
* create/update: unknown keys -> 400; personal + non-empty value -> 409; alias unique
  (409 "Unique constraint violation"); a top-level meta key beginning with ``_`` (or the
  empty key) -> 400 on create and update alike; update replaces meta, drops keys that begin
  with an ASCII non-word character or ``_`` (JavaScript's ``/^[\\W_]/``: a non-ASCII first
  letter is dropped too), and when ``$update`` is present merges it and ignores its siblings;
  ``clientSecret: "********"`` on update keeps the stored one; **an update that leaves out
  ``alias`` clears it** (settled from the platform's ``schemas/alias.js``: Joi's
  ``.default(null)``; docs/FIDELITY.md E1);
* list meta filters: ``true``/``false`` match booleans, anything else matches stored strings
  only (a stored number 3 is not ``meta.n=3``); an empty filter value is ignored;
* delete ignores its body; an unknown identifier is 404 "Not found";
* errors are ``{"message", "code"}``.

Fault injection: ``fail_create(n, times=1, commit=True)`` answers 500 on the n-th create
(after storing it when ``commit``), ``throttle(times, retry_after="0")`` answers 429 to
the next requests, ``outage(times)`` answers 503. ``on_list(query)``, when set, runs (under
the lock) before each list page is answered: a test can delete rows between two pages, as
another client could. ``log`` records every request.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "********"
FIELDS = ("alias", "name", "description", "blueprintId", "kind", "type", "value", "config", "visibility", "meta")
KINDS = ("shared", "personal")
TYPES = ("plain", "basic", "bearer", "jwt", "oauth", "template", "reference")
VISIBILITIES = ("private", "protected", "public")
ALIAS = re.compile(r"^[a-z0-9_-]{0,128}$")
# The platform's update filter is JavaScript's /^[\W_]/, whose \w is ASCII: a key is kept only if it
# begins with an ASCII letter or digit.
KEPT_ON_UPDATE = re.compile(r"^[A-Za-z0-9]")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class FakeCloud:
    token: str = "sk-test-token"
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    creates: int = 0
    _clock: int = 1_700_000_000_000
    _faults: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    on_list: Callable[[dict[str, str]], None] | None = None

    # --- fault injection -------------------------------------------------------------------

    def fail_create(self, n: int, *, times: int = 1, commit: bool = True) -> None:
        """Answer 500 to the n-th create from now on (and the next ``times - 1`` creates)."""
        with self._lock:
            self._faults.append(("create", times, {"at": self.creates + n, "commit": commit}))

    def throttle(self, times: int = 1, retry_after: str | None = "0") -> None:
        with self._lock:
            self._faults.append(("throttle", times, {"retry_after": retry_after}))

    def outage(self, times: int = 1) -> None:
        with self._lock:
            self._faults.append(("outage", times, {}))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # --- direct access for tests (the real cloud has none of this) --------------------------

    def add(self, **fields: Any) -> str:
        """Store a secret as if someone created it in the cloud; returns its id."""
        with self._lock:
            return self._create(dict(fields))["id"]

    def edit(self, secret_id: str, **fields: Any) -> None:
        with self._lock:
            row = self.secrets[secret_id]
            row.update(fields)
            row["updatedAt"] = self._now()

    def remove(self, secret_id: str) -> None:
        with self._lock:
            del self.secrets[secret_id]

    def value_of(self, secret_id: str) -> Any:
        return self.secrets[secret_id]["value"]

    def writes(self) -> list[Request]:
        return [r for r in self.log if r.method == "POST"]

    # --- the API -------------------------------------------------------------------------

    def _now(self) -> int:
        self._clock += 7  # strictly increasing, so every change moves updatedAt
        return self._clock

    def _new_id(self) -> str:
        while True:
            rid = secrets.choice("abcdefghijklmnopqrstuvwxyz") + "".join(
                secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(23)
            )
            if rid not in self.secrets:
                return rid

    def _find(self, ident: str) -> dict[str, Any]:
        row: dict[str, Any] | None = None
        if ident.startswith("@"):
            row = next((r for r in self.secrets.values() if r["alias"] == ident[1:]), None)
        elif ident.startswith("(") and ident.endswith(")"):
            rows = sorted((r for r in self.secrets.values() if r["name"] == ident[1:-1]), key=_sort_key)
            row = rows[0] if rows else None
        else:
            row = self.secrets.get(ident)
        if row is None:
            raise HttpError(404, "NOT_FOUND", "Not found")
        return row

    def _check(self, body: Any, *, create: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HttpError(400, "BAD_REQUEST", "Bad request")
        errors = [f'"{k}" is not allowed' for k in body if k not in FIELDS]
        for key, allowed in (("kind", KINDS), ("type", TYPES), ("visibility", VISIBILITIES)):
            if key in body and body[key] not in allowed:
                errors.append(f'"{key}" must be one of [{", ".join(allowed)}]')
        for key in ("name", "description"):
            if key in body and not isinstance(body[key], str):
                errors.append(f'"{key}" must be a string')
        if "value" in body and body["value"] is not None and not isinstance(body["value"], str):
            errors.append('"value" must be a string')
        for key in ("config", "meta"):
            if body.get(key) is not None and not isinstance(body[key], dict):
                errors.append(f'"{key}" must be of type object')
        alias = body.get("alias")
        if alias is not None and (not isinstance(alias, str) or not ALIAS.match(alias)):
            errors.append('"alias" with value fails to match the required pattern')
        if isinstance(body.get("meta"), dict):  # the meta schema, on create and update alike
            errors += [f'"meta.{k}" is not allowed' for k in body["meta"] if k == "" or k.startswith("_")]
        if errors:
            raise HttpError(400, "BAD_REQUEST", "; ".join(errors))
        return body

    def _alias_free(self, alias: Any, own_id: str | None) -> None:
        if alias:
            for row in self.secrets.values():
                if row["alias"] == alias and row["id"] != own_id:
                    raise HttpError(409, "CONFLICT", "Unique constraint violation")

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check(body, create=True)
        kind = body.get("kind", "shared")
        if kind == "personal" and body.get("value"):
            raise HttpError(409, "CONFLICT", "Personal secrets cannot have a value")
        self._alias_free(body.get("alias"), None)
        now = self._now()
        row = {
            "id": self._new_id(),
            "alias": body.get("alias") or None,
            "name": body.get("name", ""),
            "description": body.get("description", ""),
            "blueprintId": body.get("blueprintId"),
            "kind": kind,
            "type": body.get("type", "plain"),
            "value": None if kind == "personal" else body.get("value"),
            "config": body.get("config"),
            "visibility": body.get("visibility", "private"),
            "meta": body.get("meta"),
            "createdAt": now,
            "updatedAt": now,
        }
        self.secrets[row["id"]] = row
        return row

    def _update(self, row: dict[str, Any], body: dict[str, Any]) -> None:
        self._check(body, create=False)
        if body.get("kind") == "personal" and body.get("value"):
            raise HttpError(409, "CONFLICT", "Personal secrets cannot have a value")
        stored_kind = row["kind"]  # the value rule reads the kind stored before this update
        alias = body.get("alias") or None  # left out: cleared, as the platform's Joi default does
        self._alias_free(alias, row["id"])
        row["alias"] = alias
        for key in ("name", "description", "blueprintId", "kind", "type", "visibility"):
            if key in body:
                row[key] = body[key]
        if "config" in body:
            config = body["config"]
            if isinstance(config, dict) and config.get("clientSecret") == MASK:
                config = dict(config)
                stored = (row["config"] or {}).get("clientSecret")
                if stored is not None:
                    config["clientSecret"] = stored
                else:
                    del config["clientSecret"]
            row["config"] = config
        if "meta" in body:
            row["meta"] = _updated_meta(row["meta"], body["meta"])
        # The notes: a value is written only onto a stored shared secret (forced null onto a stored
        # personal one). A shared secret turned personal without "value" keeps its old value.
        if "value" in body:
            row["value"] = body["value"] if stored_kind == "shared" else None
        if stored_kind == "personal":
            row["value"] = None
        row["updatedAt"] = self._now()

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        if self.on_list is not None:
            self.on_list(query)
        order = query.get("order", "desc")
        rows = sorted(self.secrets.values(), key=_sort_key, reverse=order != "asc")
        for key, want in query.items():
            if not want:
                continue  # an empty filter value is no filter
            if key.startswith("meta.") or (key.startswith("meta[") and key.endswith("]")):
                path = key[5:].split(".") if key.startswith("meta.") else key[5:-1].split(".")
                rows = [r for r in rows if _meta_match(r["meta"], path, want)]
        cursor = query.get("cursor")
        if cursor:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(cursor) + 1 :] if cursor in ids else []
        page = rows[: _take(query.get("take"))]
        out: dict[str, Any] = {"items": [_public(r) for r in page]}
        if page:
            out["cursor"] = page[-1]["id"]
        return out

    def handle(self, req: Request) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.log.append(req)
            try:
                return 200, {}, self._route(req)
            except HttpError as exc:
                return exc.status, exc.headers, {"message": exc.message, "code": exc.code}

    def _fault(self, kind: str) -> dict[str, Any] | None:
        for i, (k, times, info) in enumerate(self._faults):
            if k != kind:
                continue
            if kind == "create" and self.creates < info["at"]:
                continue
            if times <= 1:
                del self._faults[i]
            else:
                self._faults[i] = (k, times - 1, info)
            return info
        return None

    def _route(self, req: Request) -> Any:
        words = req.headers.get("authorization", "").split(" ")
        if len(words) < 2 or words[1] != self.token:
            raise HttpError(401, "NOT_AUTHENTICATED", "Not authenticated")
        throttle = self._fault("throttle")
        if throttle is not None:
            headers = {} if throttle["retry_after"] is None else {"Retry-After": throttle["retry_after"]}
            raise HttpError(429, "TOO_MANY_REQUESTS", "Too many requests", headers)
        if self._fault("outage") is not None:
            raise HttpError(503, "SERVICE_UNAVAILABLE", "Service unavailable")
        parts = req.path.split("/")
        if parts[:4] != ["", "api", "v1", "secret"]:
            raise HttpError(404, "NOT_FOUND", "Not found")
        rest = parts[4:]
        if req.method == "POST":
            if not req.headers.get("content-type", "").startswith("application/json"):
                raise HttpError(400, "BAD_REQUEST", "Expected a JSON body")
            if req.body is _NO_BODY:
                raise HttpError(400, "BAD_REQUEST", "Expected a JSON body")
        if rest == ["list"] and req.method == "GET":
            return self._list(req.query)
        if rest == ["create"] and req.method == "POST":
            self.creates += 1
            fault = self._fault("create")
            if fault is not None:
                if fault["commit"]:
                    self._create(req.body)
                raise HttpError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
            return {"id": self._create(req.body)["id"]}
        if len(rest) == 2 and rest[1] in ("fetch", "update", "delete"):
            expected = "GET" if rest[1] == "fetch" else "POST"
            if req.method != expected:
                raise HttpError(405, "METHOD_NOT_ALLOWED", "Method not allowed")
            row = self._find(unquote(rest[0]))
            if rest[1] == "fetch":
                return _public(row)
            if rest[1] == "update":
                self._update(row, req.body)
            else:
                del self.secrets[row["id"]]  # the body is not read
            return {"id": row["id"]}
        raise HttpError(404, "NOT_FOUND", "Not found")


_NO_BODY = object()


def _sort_key(row: dict[str, Any]) -> tuple[int, str]:
    return (row["createdAt"], row["id"])


def _take(raw: str | None) -> int:
    try:
        number = int(raw) if raw is not None else 0
    except ValueError:
        number = 0
    if number == 0:
        return 100
    return max(1, min(100, number))


def _meta_match(meta: Any, path: list[str], want: str) -> bool:
    current = meta
    for part in path:
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    if want in ("true", "false"):
        return current is (want == "true")
    return isinstance(current, str) and current == want  # JSON equality with the string: 3 is not "3"


def _kept(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if KEPT_ON_UPDATE.match(k)}


def _updated_meta(stored: Any, sent: Any) -> Any:
    """The platform's getMeta: ``$update`` (when present, whatever its siblings) merges, else replace."""
    if not isinstance(sent, dict):
        return sent
    if "$update" not in sent:
        return _kept(sent)
    update = sent["$update"]
    if isinstance(update, (list, str)):  # spread into an object: index keys
        update = {str(i): v for i, v in enumerate(update)}
    if not isinstance(update, dict):  # null or a number: nothing to merge
        return stored
    return {**(stored or {}), **_kept(update)}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "value"}
    config = row["config"]
    if isinstance(config, dict) and "clientSecret" in config:
        out["config"] = {**config, "clientSecret": MASK if config["clientSecret"] else None}
    return json.loads(json.dumps(out))  # a deep copy, as JSON would give


class _Handler(BaseHTTPRequestHandler):
    cloud: FakeCloud

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _serve(self) -> None:
        split = urlsplit(self.path)
        body: Any = _NO_BODY
        length = int(self.headers.get("content-length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = _NO_BODY
        req = Request(
            self.command,
            split.path,
            dict(parse_qsl(split.query, keep_blank_values=True)),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        status, headers, payload = self.cloud.handle(req)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve


@contextmanager
def running(cloud: FakeCloud | None = None) -> Iterator[FakeCloud]:
    """Serve ``cloud`` on 127.0.0.1 (a free port) for the block; ``cloud.url`` is its base URL."""
    cloud = cloud or FakeCloud()
    handler = type("Handler", (_Handler,), {"cloud": cloud})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    cloud.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield cloud
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
