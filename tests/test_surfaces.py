"""The surfaces agree: the same random requests through every surface give the same answers.

The surfaces: the vault API (``v.secret``); the stand-in's routes in process
(``vault._api.SecretApi``, with the list query read as the HTTP server reads a query
string); ``vault.aio.AsyncVault(v).secret``; and the HTTP stand-in (``StandInServer`` on
loopback, driven with httpx). The requests: create, update (by id, ``@alias``, ``(name)``,
unknown ids), delete, fetch, list (one page) and list as a stream (JSONL, aio's
``.stream()``), with hostile values throughout. For what they store, also the sync pull path
(``_parse_item``, then the raw seam) and the JSON import parser (then the raw seam), against
what create stores.

Each surface gets its own fresh vault. All of them share one injected clock and one
seeded random source, and both depend on the step number only (see :class:`StepSource`): so a
step that succeeds everywhere makes the same id at the same millisecond on every surface,
and a deliberate difference at one step (a create one surface refuses) does not shift the
ids of every later step.

Compared at every step: success or error and the error's ``code``; the ids returned; list
pages (ids, cursor, and the cloud item dicts: ``Secret.to_dict()`` on the vault side, the
JSON on the others); and the whole state of every vault (every item, masked, plus its
stored value against the value rules). The cloud-shaped surfaces (stand-in in process,
aio, HTTP) must agree exactly with each other. Where the local vault API differs from them
on purpose, one small named function says how, citing where it is documented (``Err``,
``cloud_page``, ``cloud_refuses_personal_value``, ``cloud_value_on_create``,
``cloud_value_on_update``, ``cloud_clears_omitted_alias``, ``cloud_schema_refuses``,
``cloud_database_refuses``, ``cloud_lookup_fails``, ``cloud_forgets_deleted_cursors``,
``cloud_hides_hash_keys``; for sync and import ``sync_reads_null_as_default``,
``sync_strips_its_marker``, ``import_refuses_masked_client_secret``, and
``records_keep_underscore_meta``, which is not documented yet); nothing else is loosened.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import operator
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import vault
from tests.conftest import CLOUD_ITEM_KEYS
from vault import _format, _rules
from vault._api import ListQuery, SecretApi
from vault._vault import raw_records
from vault.aio import AsyncVault
from vault.cli._formats import EXPORT_FORMAT, parse_json
from vault.cli._terminal import UsageError
from vault.errors import RemoteProtocolError, VaultError
from vault.sync._client import MARKER_KEY
from vault.sync._run import _Fingerprints, _parse_item
from vault.testing import FAST_KDF, StandInServer

PASSPHRASE: Final = "surfaces"
EPOCH_MS: Final = 1_750_000_000_000
STATUS: Final = {"BAD_REQUEST": 400, "NOT_FOUND": 404, "CONFLICT": 409, "GENERIC_ERROR": 500}


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    value: Any


@dataclass(frozen=True)
class Err:
    """An error, by its ``code`` only.

    Deliberate difference: message wording is not compared. docs/TESTING.md ("validation
    messages"): the stand-in uses Joi's wording for unknown keys and the core's own wording
    for bad values; "codes and statuses match; exact message text is not an API guarantee".
    """

    code: str


Outcome = Ok | Err


def attempt(call: Callable[[], Any]) -> Outcome:
    try:
        return Ok(call())
    except VaultError as exc:
        return Err(exc.code)


def page_of(items: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    return {"ids": [item["id"] for item in items], "items": items, "cursor": cursor}


def cloud_page(body: Mapping[str, Any]) -> dict[str, Any]:
    """A cloud list body as a page; the vault API's ``Page.cursor`` is None where the body has no key.

    Deliberate difference of shape only: the cloud sends no ``cursor`` key on an empty page
    (API notes §5; docs/TESTING.md "an empty page has no cursor key"), the vault API's
    ``Page`` has ``cursor=None`` (README, Python API: "None when empty"). The body's shape is
    checked here, so the normalisation hides nothing.
    """
    assert ("cursor" in body) == bool(body["items"]), body
    return page_of(list(body["items"]), body.get("cursor"))


def stream_items(lines: Iterable[Mapping[str, Any]]) -> Outcome:
    """JSONL lines as the items they carry; a failure arrives as an error line (API notes §5)."""
    items = []
    for line in lines:
        if line["type"] == "error":
            return Err(line["data"]["code"])
        assert line["type"] == "item", line
        items.append(line["data"])
    return Ok(items)


# --- the injected clock and random source ---------------------------------------------------


class Steps:
    """The step counter every surface's vault reads its time and randomness from."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.n = 0


class StepSource:
    """One vault's clock and random source: functions of the step number only.

    The time is a counter (one second per step). The random bytes restart from a seed
    made of (seed, step) at each step, so ``vault.init(..., _rng=...)`` gets the same bytes
    on every surface for the same calls in the same step. A single stream for the whole
    run would drift as soon as one surface seals a value another does not store (the
    stand-in turns ``value: ""`` into null, so it draws no nonce for it), and every later
    id would differ.
    """

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self._at = -1
        self._rng = random.Random()

    def clock(self) -> int:
        return EPOCH_MS + 1000 * self._steps.n

    def randbytes(self, n: int) -> bytes:
        if self._at != self._steps.n:
            self._at = self._steps.n
            self._rng = random.Random(f"{self._steps.seed}/{self._at}")
        return self._rng.randbytes(n)


def _temp_root() -> str | None:
    # Every commit is an fdatasync: in RAM it costs nothing, which keeps the examples fast.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


@contextlib.contextmanager
def fresh_vaults(names: tuple[str, ...], seed: int) -> Iterator[tuple[Steps, dict[str, vault.Vault]]]:
    directory = tempfile.mkdtemp(prefix="cbk-surfaces-", dir=_temp_root())
    steps = Steps(seed)
    vaults: dict[str, vault.Vault] = {}
    try:
        for name in names:
            source = StepSource(steps)
            vaults[name] = vault.init(
                Path(directory) / f"{name}.cbkv", PASSPHRASE, kdf=FAST_KDF, clock=source.clock, _rng=source.randbytes
            )
        yield steps, vaults
    finally:
        for v in vaults.values():
            v.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- requests -------------------------------------------------------------------------------

ALIASES: Final = ("pay", "pay-2", "x_y")
NAMES: Final = ("alpha", "beta", "")
META_KEYS: Final = ("env", "k", "n", "a.b", "a")
UNKNOWN_ID: Final = "zzzzzzzzzzzzzzzzzzzzzzzz"


def nest(depth: int) -> dict[str, Any]:
    obj: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        obj = {"a": obj}
    return obj


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 5, -1, 5.0, 2**60]),
    st.sampled_from(["prod", "dev", "5", "true", "false", ""]),
)
meta_objects = st.dictionaries(
    st.sampled_from((*META_KEYS, "_x", "", "$x", "é", "#h")),
    st.one_of(json_leaves, st.dictionaries(st.sampled_from(("b", "x", "#b")), json_leaves, max_size=2)),
    max_size=3,
)
#: Metas the list filters below are written to meet: booleans vs "true", numbers vs their
#: text, a dotted key vs a nested object.
COMMON_METAS: Final = [
    {"env": "prod", "k": True},
    {"env": "dev", "k": "true"},
    {"k": 5, "a": {"b": "5"}},
    {"a.b": 5, "k": "5", "n": {"x": 1}},
]
# Valid on some route at least: `_` and empty keys (refused at the top level, dropped inside
# `$update`), `#` keys (stored, never shown by the cloud), `$update` alone, `$update` with
# sibling keys, `$update` that is not an object.
metas = st.one_of(
    st.none(),
    st.sampled_from(COMMON_METAS),
    st.builds(lambda d: {"$update": d}, st.sampled_from(COMMON_METAS)),
    meta_objects,
    st.builds(lambda d: {"$update": d}, meta_objects),
    st.builds(lambda d, e: {"$update": d, **e}, meta_objects, meta_objects),
    st.just({"$update": 5}),
)
#: A URL-valued config key's values, and whether a URL parser accepts each.
URLS: Final = {"https://t.example/x": True, "notaurl": False}
configs = st.one_of(
    st.none(),
    st.builds(
        operator.or_,
        st.dictionaries(
            st.sampled_from(("clientId", "clientSecret", "password", "schema", "#k")),
            st.one_of(st.sampled_from([_rules.MASK, "s3cret", "", None, 0]), st.text(max_size=3)),
            max_size=3,
        ),
        st.fixed_dictionaries({}, optional={"tokenUrl": st.sampled_from([*URLS, 5])}),
    ),
)
VALID_FIELDS: Final[dict[str, st.SearchStrategy[Any]]] = {
    "name": st.one_of(st.sampled_from(NAMES), st.text(max_size=6), st.just("n" * _format.MAX_NAME)),
    "description": st.text(max_size=6),
    "kind": st.sampled_from(_format.KINDS),
    "type": st.sampled_from(_format.TYPES),
    "visibility": st.sampled_from(_format.VISIBILITIES),
    "value": st.one_of(st.none(), st.sampled_from(["", "tok"]), st.text(max_size=5)),
    "alias": st.one_of(st.sampled_from(ALIASES), st.sampled_from(["", None, "a" * _format.MAX_ALIAS])),
    "meta": metas,
    "config": configs,
    "blueprintId": st.one_of(st.none(), st.sampled_from(["bp-1", "", "b" * _format.MAX_ID])),
}
#: One bad field each: wrong types, bad enums, over-long text, non-JSON, unknown keys.
POISON: Final[list[tuple[str, Any]]] = [
    *[("name", x) for x in (None, 5, True, "n" * (_format.MAX_NAME + 1), "\ud800", ["x"])],
    *[("description", x) for x in (None, 5, "\ud800", "d" * (_format.MAX_DESCRIPTION + 1))],
    *[("kind", x) for x in ("Shared", "", None, 1)],
    *[("type", x) for x in ("secret", "PLAIN", None, 2)],
    *[("visibility", x) for x in ("hidden", None, 0)],
    *[("value", x) for x in (5, True, ["x"], {"a": 1}, "\ud800", "v" * (_format.MAX_VALUE + 1))],
    *[("alias", x) for x in ("A", "a b", "@pay", "a" * (_format.MAX_ALIAS + 1), 5, True)],
    *[("meta", x) for x in ("env=prod", [1], 5, {"k": float("nan")}, nest(_format.MAX_DEPTH + 1))],
    *[("config", x) for x in ("x", [1], 5, {"clientSecret": float("inf")}, nest(_format.MAX_DEPTH + 1))],
    *[("blueprintId", x) for x in (5, True, "b" * (_format.MAX_ID + 1))],
    *[(k, "x") for k in ("colour", "blueprint_id", "Name", "value ")],
]


#: Combinations where the rules meet (a personal secret with a value, with `_` meta keys, a
#: masked clientSecret, an alias), laid over the random fields often enough to be met.
THEMES: Final[list[dict[str, Any]]] = [
    {"kind": "personal", "value": "tok"},
    {"kind": "personal", "value": ""},
    {"kind": "personal"},
    {"kind": "shared", "value": ""},
    {"meta": {"_x": 1, "env": "prod"}},
    {"meta": {"$update": {"_x": 1, "k": True}}},
    {"config": {"clientSecret": _rules.MASK, "clientId": "c"}},
    {"alias": "pay"},
]


def bodies(
    fields: Mapping[str, st.SearchStrategy[Any]] = VALID_FIELDS, poisons: list[tuple[str, Any]] = POISON
) -> st.SearchStrategy[dict[str, Any]]:
    """A request body: random valid-looking fields, sometimes a theme, sometimes one poisoned field."""
    poison = st.one_of(st.none(), st.none(), st.sampled_from(poisons)) if poisons else st.none()
    themes = st.one_of(st.just({}), st.sampled_from(THEMES), st.sampled_from(THEMES))

    def build(body: dict[str, Any], theme: dict[str, Any], bad: tuple[str, Any] | None) -> dict[str, Any]:
        body = {**body, **{k: v for k, v in theme.items() if k in fields}}
        if bad is not None:
            body = {**body, bad[0]: bad[1]}
        return body

    return st.builds(build, st.fixed_dictionaries({}, optional=dict(fields)), themes, poison)


# Targets and cursors are drawn as descriptions and made concrete when the step runs: the
# ids they name exist only then.
ids = st.tuples(st.just("id"), st.integers(0, 30))
targets = st.one_of(
    ids,
    ids,
    ids,
    st.tuples(st.just("alias"), st.sampled_from((*ALIASES, "nope"))),
    st.tuples(st.just("name"), st.sampled_from((*NAMES, "nope"))),
    st.tuples(st.just("raw"), st.sampled_from([UNKNOWN_ID, "@", "()", "(", "@@pay", "@u@pay", "x y", "a/b", "%41"])),
)
cursors = st.one_of(
    st.none(),
    st.just(""),
    st.tuples(st.just("page"), st.integers(0, 30)),
    st.tuples(st.just("id"), st.integers(0, 30)),
    st.sampled_from([UNKNOWN_ID, "nope"]),
)
takes = st.one_of(
    st.none(),
    st.integers(-3, 4),
    st.sampled_from([5, 5.0, "5x", " 2", "x", "", 100, 101, 10**12, -0.5, 2.9, "1e3", True, float("nan")]),
)
meta_filters = st.one_of(
    st.none(),
    st.sampled_from(
        [
            {"env": "prod"},
            {"env": "prod", "k": "true"},
            {"k": True},
            {"k": "true"},
            {"k": 5},
            {"k": "5"},
            {"a.b": "5"},
            {"a.b": 5},
            {"n.x": 1},
            {"n": "x"},
            {"env": None},
            {"env": ""},
        ]
    ),
    st.dictionaries(
        st.sampled_from(("env", "k", "n", "a.b", "a", "n.x", "nope")),
        st.one_of(
            st.none(),
            st.booleans(),
            st.sampled_from(["true", "false", "prod", "dev", "5", "5.0", "", "0"]),
            st.sampled_from([5, 5.0, 0, -1]),
        ),
        max_size=2,
    ),
)
list_queries = st.fixed_dictionaries(
    {},
    optional={
        "take": takes,
        "order": st.sampled_from(["asc", "desc", "ASC", "garbage", "", None]),
        "cursor": cursors,
        "meta": meta_filters,
    },
)


@dataclass(frozen=True)
class Create:
    body: dict[str, Any]
    keywords: bool = False  # the vault API: create(**snake_case) rather than create(request)


@dataclass(frozen=True)
class Update:
    target: Any
    body: dict[str, Any]
    keywords: bool = False


@dataclass(frozen=True)
class Delete:
    target: Any


@dataclass(frozen=True)
class Fetch:
    target: Any


@dataclass(frozen=True)
class List:
    query: dict[str, Any]
    as_request: bool  # the vault API: list(request) rather than list(**keywords)


@dataclass(frozen=True)
class Stream:
    """``list`` as JSONL (``accept: application/jsonl``, aio's ``.stream()``): every item, paged internally."""

    query: dict[str, Any]


Op = Create | Update | Delete | Fetch | List | Stream

#: Small updates that meet the rules where they matter: a value sent to a personal secret, a
#: kind change, the `$update` merge, `_` and non-word meta keys, the masked clientSecret, aliases.
UPDATE_PARTS: Final[list[dict[str, Any]]] = [
    {"value": "tok2"},
    {"value": ""},
    {"value": None},
    {"kind": "shared"},
    {"kind": "personal"},
    {"meta": {"$update": {"k": False, "_y": 1}}},
    {"meta": {"env": "dev", "_y": 2, "": 1, "$x": 3}},
    {"meta": None},
    {"config": {"clientSecret": _rules.MASK, "clientId": "d"}},
    {"config": {"clientSecret": _rules.MASK}},
    {"alias": "pay"},
    {"alias": ""},
    {"alias": None},
    {"name": "beta"},
]
update_bodies = st.one_of(
    bodies(),
    st.builds(
        lambda parts: {k: v for part in parts for k, v in part.items()},
        st.lists(st.sampled_from(UPDATE_PARTS), min_size=1, max_size=3),
    ),
)
creates = st.builds(Create, bodies(), st.booleans())
updates = st.builds(Update, targets, update_bodies, st.booleans())
ops = st.one_of(
    creates,
    creates,
    updates,
    updates,
    updates,
    st.builds(Delete, targets),
    st.builds(Fetch, targets),
    st.builds(List, list_queries, st.booleans()),
    st.builds(List, list_queries, st.booleans()),
    st.builds(Stream, list_queries),
)
# A few creates first, so that most later steps have secrets to act on.
first_creates = st.lists(st.builds(Create, bodies(poisons=[]), st.booleans()), min_size=2, max_size=5)
sequences = st.builds(operator.add, first_creates, st.lists(ops, min_size=10, max_size=40))


# --- the surfaces ---------------------------------------------------------------------------


class Surface(Protocol):
    """One way in. Every call returns an :data:`Outcome`; pages as :func:`page_of` makes them."""

    def create(self, body: dict[str, Any], keywords: bool) -> Outcome: ...
    def update(self, target: str, body: dict[str, Any], keywords: bool) -> Outcome: ...
    def delete(self, target: str) -> Outcome: ...
    def fetch(self, target: str) -> Outcome: ...
    def list(self, query: dict[str, Any], as_request: bool) -> Outcome: ...
    def stream(self, query: dict[str, Any]) -> Outcome: ...


#: The official Python SDK's snake_case names of the request fields that are not one word.
SNAKE: Final = {"blueprintId": "blueprint_id"}
WIRE_FIELDS: Final = frozenset(
    {"name", "description", "kind", "type", "value", "alias", "meta", "config", "visibility", "blueprintId"}
)


def snake_case(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A body as the vault API's keywords; keys that are no field stay in the request mapping,
    where they are unknown (so ``blueprint_id`` sent in a body stays the unknown key it is)."""
    unknown = {k: v for k, v in body.items() if k not in WIRE_FIELDS}
    return unknown or None, {SNAKE.get(k, k): v for k, v in body.items() if k in WIRE_FIELDS}


class VaultSurface:
    """``v.secret``: the local vault API."""

    def __init__(self, v: vault.Vault) -> None:
        self.v = v

    def create(self, body: dict[str, Any], keywords: bool) -> Outcome:
        if keywords:
            request, fields = snake_case(body)
            return attempt(lambda: self.v.secret.create(request, **fields).id)
        return attempt(lambda: self.v.secret.create(body).id)

    def update(self, target: str, body: dict[str, Any], keywords: bool) -> Outcome:
        if keywords:
            request, fields = snake_case(body)
            return attempt(lambda: self.v.secret.update(target, request, **fields).id)
        return attempt(lambda: self.v.secret.update(target, body).id)

    def delete(self, target: str) -> Outcome:
        return attempt(lambda: self.v.secret.delete(target).id)

    def fetch(self, target: str) -> Outcome:
        return attempt(lambda: self.v.secret.fetch(target).to_dict())

    def list(self, query: dict[str, Any], as_request: bool) -> Outcome:
        def run() -> dict[str, Any]:
            page = self.v.secret.list(query) if as_request else self.v.secret.list(**query)
            return page_of([s.to_dict() for s in page.items], page.cursor)

        return attempt(run)

    def stream(self, query: dict[str, Any]) -> Outcome:
        """What a JSONL list sends, from the vault API's pages.

        docs/TESTING.md "JSONL streaming pages internally and stops on an empty page or once
        ``take`` items went out; like the cloud it sends whole pages" (API notes §5: the
        count is checked once a page went out, so it can overshoot by part of a page; a
        negative ``take`` stops after its first page, of one item: docs/FIDELITY.md H5).
        """

        def run() -> list[dict[str, Any]]:
            limit = js_parse_int(query.get("take"))
            items: list[dict[str, Any]] = []
            cursor = query.get("cursor")
            while True:
                page = self.v.secret.list({**query, "cursor": cursor})
                if not page.items:
                    return items
                items += [s.to_dict() for s in page.items]
                if limit and len(items) >= limit:
                    return items
                cursor = page.cursor

        return attempt(run)


def sdk_text(value: object) -> str:
    """How the official Python SDK writes a query value: booleans as ``true``/``false``, else ``str()``."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def sdk_query(query: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The query string the official Python SDK sends for ``list(query)``: None is left out
    (at the top level and inside ``meta``), and ``meta`` is flattened one level as ``meta.KEY``."""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs += [(f"{key}.{k}", sdk_text(v)) for k, v in value.items() if v is not None]
        else:
            pairs.append((key, sdk_text(value)))
    return pairs


def js_parse_int(value: object) -> int | None:
    """JavaScript's ``parseInt`` of the query text the SDK sends, as the cloud reads ``take``."""
    found = None if value is None else re.match(r"\s*([+-]?[0-9]+)", sdk_text(value))
    return int(found.group(1)) if found else None


class ApiSurface:
    """``SecretApi`` in process: JSON-shaped bodies; the list query read as the server reads a query string."""

    def __init__(self, v: vault.Vault) -> None:
        self.api = SecretApi(v)

    def create(self, body: dict[str, Any], keywords: bool) -> Outcome:
        return attempt(lambda: self.api.create(body)["id"])

    def update(self, target: str, body: dict[str, Any], keywords: bool) -> Outcome:
        return attempt(lambda: self.api.update(target, body)["id"])

    def delete(self, target: str) -> Outcome:
        return attempt(lambda: self.api.delete(target, {})["id"])

    def fetch(self, target: str) -> Outcome:
        return attempt(lambda: self.api.fetch(target))

    def list(self, query: dict[str, Any], as_request: bool) -> Outcome:
        return attempt(lambda: cloud_page(self.api.list(ListQuery.from_pairs(sdk_query(query)))))

    def stream(self, query: dict[str, Any]) -> Outcome:
        return stream_items(self.api.stream(ListQuery.from_pairs(sdk_query(query))))


def wire_item(item: Any) -> dict[str, Any]:
    """An aio item in the wire shape: the SDK's ``to_dict()`` leaves None fields out."""
    out = item.to_dict()
    return {key: out.get(key) for key in CLOUD_ITEM_KEYS}


class AioSurface:
    """``AsyncVault(v).secret``: the official async SDK's shapes; the list request as a mapping."""

    def __init__(self, v: vault.Vault, loop: asyncio.AbstractEventLoop) -> None:
        self.secret = AsyncVault(v).secret
        self.loop = loop

    def _run(self, make: Callable[[], Any]) -> Outcome:
        async def go() -> Any:
            return await make()

        try:
            return attempt(lambda: self.loop.run_until_complete(go()))
        except ValueError:
            # Like the SDK, aio encodes the body as httpx does, which refuses NaN and the infinities
            # before anything is sent: refused, as the other surfaces refuse them with a 400.
            return Err("BAD_REQUEST")

    def create(self, body: dict[str, Any], keywords: bool) -> Outcome:
        out = self._run(lambda: self.secret.create(body))
        return Ok(out.value.id) if isinstance(out, Ok) else out

    # Like the SDK, aio puts the id into the path as given: a "/" in it would reach no route (404),
    # so an id is sent percent-encoded, as HttpSurface sends it.
    def update(self, target: str, body: dict[str, Any], keywords: bool) -> Outcome:
        out = self._run(lambda: self.secret.update(quote(target, safe=""), body))
        return Ok(out.value.id) if isinstance(out, Ok) else out

    def delete(self, target: str) -> Outcome:
        out = self._run(lambda: self.secret.delete(quote(target, safe="")))
        return Ok(out.value.id) if isinstance(out, Ok) else out

    def fetch(self, target: str) -> Outcome:
        out = self._run(lambda: self.secret.fetch(quote(target, safe="")))
        return Ok(wire_item(out.value)) if isinstance(out, Ok) else out

    def list(self, query: dict[str, Any], as_request: bool) -> Outcome:
        try:
            page = self._run(lambda: self.secret.list(query))
        except AssertionError:  # like SDK 0.6.0, aio cannot parse the cloud's empty page (no cursor)
            return Ok(cloud_page({"items": []}))
        if isinstance(page, Err):
            return page
        return Ok(cloud_page({"items": [wire_item(i) for i in page.value.items], "cursor": page.value.cursor}))

    def stream(self, query: dict[str, Any]) -> Outcome:
        async def collect() -> list[dict[str, Any]]:
            lines = self.secret.list(query).stream()
            items = []
            async for line in lines:
                assert line.type.value == "item"
                items.append(wire_item(line.data))
            return items

        return attempt(lambda: self.loop.run_until_complete(collect()))


class HttpSurface:
    """The stand-in over loopback: the cloud's paths, JSON bodies, the SDK's query strings."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def _send(self, method: str, path: str, body: Any = None, params: Any = None) -> Outcome:
        content = None if body is None else json.dumps(body).encode()  # NaN goes out as the word NaN
        headers = {} if body is None else {"content-type": "application/json"}
        response = self.client.request(method, path, content=content, headers=headers, params=params)
        if (response.status_code, response.text) in ((400, "Invalid JSON"), (413, "Body exceeded 1mb limit")):
            # Next's body parser, before any route code, in plain text (docs/FIDELITY.md A6, A11):
            # NaN and Infinity are not JSON, and a body over 1 MiB is not read. Refused either way.
            return Err("BAD_REQUEST")
        data = response.json()
        if response.status_code == 200:
            return Ok(data)
        assert STATUS.get(data["code"]) == response.status_code, (response.status_code, data)
        return Err(data["code"])

    @staticmethod
    def _path(target: str, action: str) -> str:
        return f"/api/v1/secret/{quote(target, safe='')}/{action}"

    def create(self, body: dict[str, Any], keywords: bool) -> Outcome:
        out = self._send("POST", "/api/v1/secret/create", body)
        return Ok(out.value["id"]) if isinstance(out, Ok) else out

    def update(self, target: str, body: dict[str, Any], keywords: bool) -> Outcome:
        out = self._send("POST", self._path(target, "update"), body)
        return Ok(out.value["id"]) if isinstance(out, Ok) else out

    def delete(self, target: str) -> Outcome:
        out = self._send("POST", self._path(target, "delete"), {})
        return Ok(out.value["id"]) if isinstance(out, Ok) else out

    def fetch(self, target: str) -> Outcome:
        return self._send("GET", self._path(target, "fetch"))

    def list(self, query: dict[str, Any], as_request: bool) -> Outcome:
        out = self._send("GET", "/api/v1/secret/list", params=sdk_query(query))
        return Ok(cloud_page(out.value)) if isinstance(out, Ok) else out

    def stream(self, query: dict[str, Any]) -> Outcome:
        headers = {"accept": "application/jsonl"}
        response = self.client.get("/api/v1/secret/list", params=sdk_query(query), headers=headers)
        assert response.status_code == 200
        # JSONL lines end with "\n" only (JSON escapes every raw newline). Not str.splitlines(), which
        # also splits on U+2028, U+2029 and U+0085; see test_jsonl_lines_survive_the_sdks_line_reader.
        return stream_items(json.loads(line) for line in response.text.split("\n") if line)


# --- the documented differences between the vault API and the cloud-shaped surfaces ----------


def cloud_refuses_personal_value(op: Create | Update) -> bool:
    """A personal secret with a non-empty value: the vault API stores it, the stand-in answers 409.

    README "Where the local vault differs from the cloud (on purpose)": "A personal secret
    may hold your own value locally. The cloud rejects a value on a personal secret (409);
    sync and the stand-in apply that rule." docs/TESTING.md "Personal secrets cannot have a
    value": 409 on create, and on update when the body says ``kind: personal`` with a
    non-empty value; ``""`` counts as no value.
    """
    value = op.body.get("value")
    return op.body.get("kind") == "personal" and type(value) is str and value != ""


def cloud_value_on_create(body: Mapping[str, Any]) -> str | None:
    """What the stand-in stores as the value of a create it accepts: never one for a personal
    secret, and ``""`` is no value (docs/TESTING.md "Personal secrets cannot have a value":
    "``""`` counts as no value"). The vault API stores the value it is given."""
    value = body.get("value")
    return None if body.get("kind") == "personal" or not value else value


def cloud_value_on_update(stored_kind: str, stored: str | None, body: Mapping[str, Any]) -> str | None:
    """What the stand-in stores as the value after an update it accepts.

    docs/TESTING.md "Personal secrets cannot have a value": "A value sent to a *stored*
    personal secret is dropped (the cloud forces it to null)", ``""`` counts as no value;
    and its choices table, "update to ``kind: personal``: clears the stored value". The
    vault API stores the value it is given, whatever the kind.
    """
    value = stored
    if "value" in body:
        value = None if stored_kind == "personal" or not body["value"] else body["value"]
    if body.get("kind") == "personal" and stored_kind != "personal":
        value = None
    return value


def cloud_clears_omitted_alias(op: Update) -> dict[str, Any]:
    """The body the vault API is given for an update: with ``"alias": None`` when it leaves alias out.

    README "Where the local vault differs": the local ``update`` keeps an alias the call
    leaves out; the stand-in and ``vault.aio`` clear it, as the cloud's schema default does
    (docs/FIDELITY.md E1). Sending the vault API the null the cloud fills in keeps every vault
    in the same state; tests/test_fidelity_rules.py checks the local API keeps the alias.
    """
    return op.body if "alias" in op.body else {**op.body, "alias": None}


def cloud_takes_null_text(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body the vault API is given: without a null ``name`` or ``description``.

    The cloud's schema lets both through and its database refuses them after every other
    check (``cloud_database_refuses``); the vault API refuses them as a bad request at once
    (README "Where the local vault differs"; docs/FIDELITY.md C9), which
    ``expected_cloud`` checks. Leaving them out shows what the rest of the request meets.
    """
    return {k: v for k, v in body.items() if not (k in ("name", "description") and v is None)}


def _url(value: object) -> bool:
    return URLS.get(value, False) if isinstance(value, str) else False


def cloud_schema_refuses(body: Mapping[str, Any]) -> bool:
    """What the cloud's body schema refuses (400) and the vault API accepts, on create and update.

    README "Where the local vault differs" and docs/FIDELITY.md: any non-blank ``blueprintId``
    (no blueprints offline, E5); a name over 191 or a description over 65,535 UTF-8 bytes
    (the hosted columns, C10, C11: the local API must hold whatever a sync pulls); a config
    that neither the oauth nor the basic shape accepts (C14).
    """
    blueprint = body.get("blueprintId")
    if isinstance(blueprint, str) and blueprint.strip(" \t\n\r\v\f"):
        return True
    for key, limit in (("name", 191), ("description", 65_535)):
        text = body.get(key)
        if isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) > limit:
            return True
    config = body.get("config")
    if isinstance(config, dict):
        oauth_ok = all(isinstance(config[k], str) for k in ("clientId", "clientSecret") if k in config)
        oauth_ok = oauth_ok and ("tokenUrl" not in config or _url(config["tokenUrl"]))
        basic_ok = all(isinstance(config[k], str) for k in ("password",) if k in config)
        return not (oauth_ok or basic_ok)
    return False


def cloud_database_refuses(body: Mapping[str, Any]) -> bool:
    """A null ``name`` or ``description``: the cloud's NOT NULL columns refuse it once every other
    check passed, ``500 GENERIC_ERROR`` (docs/FIDELITY.md C9); see ``cloud_takes_null_text``."""
    return any(k in body and body[k] is None for k in ("name", "description"))


def cloud_lookup_fails(target: str) -> bool:
    """An identifier the cloud's lookup fails on for a top-level account, ``500 GENERIC_ERROR``:
    ``@`` or ``()`` with nothing in them, a parent's ``@@alias``, a sibling's ``@user@alias``.

    docs/FIDELITY.md F4; the vault API answers 404 (or, for ``()``, finds a secret named ``""``),
    as README "Where the local vault differs" says.
    """
    ident = target.strip()
    if ident.startswith("@"):
        return ident.startswith("@@") or "@" in ident[1:] or not ident[1:].strip()
    return ident.startswith("(") and ident.endswith(")") and not ident[1:-1].strip()


def cloud_forgets_deleted_cursors(world: World, query: Mapping[str, Any]) -> bool:
    """A list cursor naming a secret deleted since: the cloud answers an empty page.

    README "Where the local vault differs": the local ``list`` keeps paging from where the
    deleted secret was (docs/FIDELITY.md G7).
    """
    cursor = query.get("cursor")
    return cursor in world.deleted


def _without_hash_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_hash_keys(v) for k, v in obj.items() if not k.startswith("#")}
    if isinstance(obj, list):
        return [_without_hash_keys(v) for v in obj]
    return obj


def cloud_hides_hash_keys(item: Mapping[str, Any]) -> dict[str, Any]:
    """The cloud's answers leave out every ``meta`` and ``config`` key beginning with ``#``, at any
    depth; ``Secret.to_dict()`` (the owner's own view) keeps them (docs/FIDELITY.md C18)."""
    return {**item, "meta": _without_hash_keys(item["meta"]), "config": _without_hash_keys(item["config"])}


# --- one run --------------------------------------------------------------------------------


class _Undo(Exception):
    pass


@dataclass
class World:
    steps: Steps
    vaults: dict[str, vault.Vault]
    surfaces: dict[str, Surface]
    created: list[str] = field(default_factory=list)  # every id the run created, in order
    cursors: list[str] = field(default_factory=list)  # every cursor a page gave
    deleted: set[str] = field(default_factory=set)  # every id deleted since it was created
    vault_values: dict[str, str | None] = field(default_factory=dict)
    cloud_values: dict[str, str | None] = field(default_factory=dict)

    def target(self, spec: tuple[str, Any]) -> str:
        kind, arg = spec
        if kind == "id":
            return self.created[arg % len(self.created)] if self.created else UNKNOWN_ID
        if kind == "alias":
            return f"@{arg}"
        if kind == "name":
            return f"({arg})"
        return str(arg)

    def cursor(self, spec: Any) -> str | None:
        if isinstance(spec, tuple):
            kind, n = spec
            pool = self.cursors if kind == "page" else self.created
            return pool[n % len(pool)] if pool else UNKNOWN_ID
        return spec


def state(v: vault.Vault) -> dict[str, tuple[dict[str, Any], str | None]]:
    """Every record: its cloud item (masked) and its stored value."""
    raw = raw_records(v)
    return {s.id: (s.to_dict(), raw.fetch(s.id)[0].value) for s, _, _ in raw.all()}


def run_on_vault(world: World, op: Op, call: Callable[[Surface], Outcome]) -> tuple[Outcome, Outcome]:
    """The vault API's answer, and what the cloud-shaped surfaces must answer (``expected_cloud``).

    Where the cloud refuses a change the vault API makes on purpose, the change is checked,
    then rolled back, so every vault goes on from the same state.
    """
    surface = world.surfaces["vault"]
    if not isinstance(op, (Create, Update, Delete)):
        out = call(surface)
        return out, expected_cloud(world, op, out)
    v = world.vaults["vault"]
    out = want = Err("unset")
    with contextlib.suppress(_Undo), v.batch():
        out = call(surface)
        want = expected_cloud(world, op, out)
        if isinstance(out, Ok) and isinstance(want, Err):
            if isinstance(op, (Create, Update)) and want == Err("CONFLICT"):
                stored = v.secret.fetch(out.value)
                assert (stored.kind, stored.value) == ("personal", op.body["value"])  # README: kept locally
            raise _Undo
    return out, want


def expected_cloud(world: World, op: Op, on_vault: Outcome) -> Outcome:
    """The cloud's answer, from the vault API's and the documented differences, in the order the
    cloud meets them (docs/FIDELITY.md "The cloud's request pipeline"): the body schema, the
    personal-value rule, the lookup, the database; then what its answers leave out."""
    if isinstance(op, (Create, Update)):
        if on_vault == Err("BAD_REQUEST") or cloud_schema_refuses(op.body):
            return Err("BAD_REQUEST")
        if cloud_refuses_personal_value(op):
            return Err("CONFLICT")
        if isinstance(op, Update) and cloud_lookup_fails(world.target(op.target)):
            return Err("GENERIC_ERROR")
        if cloud_database_refuses(op.body) and (isinstance(on_vault, Ok) or on_vault == Err("CONFLICT")):
            return Err("GENERIC_ERROR")  # before the database's own unique-alias check
        return on_vault
    if isinstance(op, (Fetch, Delete)) and cloud_lookup_fails(world.target(op.target)):
        return Err("GENERIC_ERROR")
    if not isinstance(on_vault, Ok):
        return on_vault
    if isinstance(op, Fetch):
        return Ok(cloud_hides_hash_keys(on_vault.value))
    if isinstance(op, (List, Stream)):
        query = {**op.query, "cursor": world.cursor(op.query.get("cursor"))}
        forgotten = cloud_forgets_deleted_cursors(world, query)
        if isinstance(op, Stream):
            return Ok([] if forgotten else [cloud_hides_hash_keys(i) for i in on_vault.value])
        if forgotten:
            return Ok(page_of([], None))
        return Ok(page_of([cloud_hides_hash_keys(i) for i in on_vault.value["items"]], on_vault.value["cursor"]))
    return on_vault


def answer(world: World, op: Op) -> Outcome:
    """Run one request on every surface: the cloud-shaped ones must answer what the vault API's answer predicts."""
    call: Callable[[Surface], Outcome]
    on_vault_call: Callable[[Surface], Outcome] | None = None  # the vault API's call, where it differs
    if isinstance(op, Create):
        keywords = op.keywords
        call = lambda s: s.create(copy.deepcopy(op.body), keywords)  # noqa: E731
        vault_body = cloud_takes_null_text(op.body)
        on_vault_call = lambda s: s.create(copy.deepcopy(vault_body), keywords)  # noqa: E731
        shown: Any = op.body
    elif isinstance(op, Update):
        target = world.target(op.target)
        keywords = op.keywords
        call = lambda s: s.update(target, copy.deepcopy(op.body), keywords)  # noqa: E731
        vault_body = cloud_takes_null_text(cloud_clears_omitted_alias(op))
        on_vault_call = lambda s: s.update(target, copy.deepcopy(vault_body), keywords)  # noqa: E731
        shown = (target, op.body)
    elif isinstance(op, (Delete, Fetch)):
        target = world.target(op.target)
        method = "delete" if isinstance(op, Delete) else "fetch"
        call = lambda s: getattr(s, method)(target)  # noqa: E731
        shown = target
    else:
        query = dict(op.query)
        if "cursor" in query:
            query["cursor"] = world.cursor(query["cursor"])
        if isinstance(op, List):
            as_request = op.as_request
            call = lambda s: s.list(copy.deepcopy(query), as_request)  # noqa: E731
        else:
            call = lambda s: s.stream(copy.deepcopy(query))  # noqa: E731
        shown = query

    if isinstance(op, (Create, Update)) and cloud_database_refuses(op.body):
        # README: the vault API refuses a null name or description as a bad request.
        assert call(world.surfaces["vault"]) == Err("BAD_REQUEST")
    on_vault, want = run_on_vault(world, op, on_vault_call or call)
    # Seen with --hypothesis-show-statistics: how often each kind of step succeeds, fails, or meets a difference.
    answer = "ok" if isinstance(on_vault, Ok) else on_vault.code
    event(f"{type(op).__name__} {answer}{' (cloud refuses)' * (want != on_vault)}")
    for name, surface in world.surfaces.items():
        if name != "vault":
            got = call(surface)
            assert got == want, f"step {world.steps.n} {type(op).__name__} {shown!r}: {name} gave {got}, want {want}"
    return want


def step(world: World, op: Op) -> None:
    """One step of a run: the answers, then the value models, then every vault's whole state."""
    world.steps.n += 1
    before = state(world.vaults["vault"])
    want = answer(world, op)
    if isinstance(want, Ok):
        if isinstance(op, Create):
            world.created.append(want.value)
            world.vault_values[want.value] = op.body.get("value")
            world.cloud_values[want.value] = cloud_value_on_create(op.body)
        elif isinstance(op, Update):
            rid = want.value
            if "value" in op.body:
                world.vault_values[rid] = op.body["value"]
            world.cloud_values[rid] = cloud_value_on_update(before[rid][0]["kind"], world.cloud_values[rid], op.body)
        elif isinstance(op, Delete):
            del world.vault_values[want.value], world.cloud_values[want.value]
            world.deleted.add(want.value)
        elif isinstance(op, Fetch):
            assert world.vaults["vault"].secret.fetch(want.value["id"]).value == world.vault_values[want.value["id"]]
        elif isinstance(op, List) and want.value["cursor"] is not None:
            world.cursors.append(want.value["cursor"])
    check_states(world)


def check_states(world: World) -> None:
    """Every vault holds the same items; values follow each side's value rules."""
    states = {name: state(v) for name, v in world.vaults.items()}
    items = {name: {rid: item for rid, (item, _) in st_.items()} for name, st_ in states.items()}
    for name in states:
        assert items[name] == items["vault"], f"step {world.steps.n}: {name}'s items differ from the vault API's"
    assert {rid: value for rid, (_, value) in states["vault"].items()} == world.vault_values
    for name in states:
        if name != "vault":
            assert {rid: value for rid, (_, value) in states[name].items()} == world.cloud_values, name


def run_sequence(world: World, sequence: list[Op]) -> None:
    for op in sequence:
        step(world, op)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@dataclass
class Http:
    server: StandInServer
    client: httpx.Client

    def serve(self, v: vault.Vault) -> None:
        # One server for the module (stopping one waits out its 0.5 s poll): each example points
        # it at that example's fresh vault, between requests.
        self.server.app.vault = v
        self.server.app.api = SecretApi(v, frontend_url=self.server.base_url)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    with vault.init(tmp_path_factory.mktemp("http") / "placeholder.cbkv", PASSPHRASE, kdf=FAST_KDF) as v:
        server = StandInServer(v, token="sk-surfaces")
        with server, httpx.Client(base_url=server.base_url, headers={"authorization": "Bearer sk-surfaces"}) as client:
            yield Http(server, client)


# --- the properties -------------------------------------------------------------------------

IN_PROCESS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OVER_HTTP = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@IN_PROCESS
@given(sequence=sequences, seed=st.integers(0, 2**32))
def test_in_process_surfaces_agree(loop: asyncio.AbstractEventLoop, sequence: list[Op], seed: int) -> None:
    with fresh_vaults(("vault", "api", "aio"), seed) as (steps, vaults):
        surfaces: dict[str, Surface] = {
            "vault": VaultSurface(vaults["vault"]),
            "api": ApiSurface(vaults["api"]),
            "aio": AioSurface(vaults["aio"], loop),
        }
        run_sequence(World(steps, vaults, surfaces), sequence)


@OVER_HTTP
@given(sequence=sequences, seed=st.integers(0, 2**32))
def test_http_stand_in_agrees(http: Http, sequence: list[Op], seed: int) -> None:
    with fresh_vaults(("vault", "http"), seed) as (steps, vaults):
        http.serve(vaults["http"])
        surfaces: dict[str, Surface] = {"vault": VaultSurface(vaults["vault"]), "http": HttpSurface(http.client)}
        run_sequence(World(steps, vaults, surfaces), sequence)


# --- sync pulls and import store what create stores -------------------------------------------

#: A cloud item's fields: no value (the cloud never returns one, API notes §4), sometimes
#: sync's own marker key in meta.
ITEM_FIELDS: Final = {
    **{k: v for k, v in VALID_FIELDS.items() if k != "value"},
    "meta": st.one_of(metas, st.builds(lambda d: {**d, MARKER_KEY: "cbkv-ref"}, meta_objects)),
}
#: Cloud items carry no value, and keys the sync does not read are not fields.
ITEM_POISON: Final = [(k, x) for k, x in POISON if k in ITEM_FIELDS]
record_ids = st.one_of(st.none(), st.from_regex(_format.ID_RE, fullmatch=True))
stamps = st.integers(0, 2**41)


def without_identity(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("id", "createdAt", "updatedAt")}


def stored(v: vault.Vault, rid: str) -> tuple[dict[str, Any], str | None]:
    """What a vault holds for one record (the cloud item without identity, and the value); then removes it."""
    raw = raw_records(v)
    secret, _ = raw.fetch(rid)
    raw.delete(rid, purge=True)  # for good: a later example may reuse the id
    return without_identity(secret.to_dict()), secret.value


def sync_reads_null_as_default(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A null name, description, kind, type or visibility in a cloud item is the cloud's default.

    The sync reads cloud items leniently here (``vault/sync/_run.py`` ``_parse_item``); API
    notes §1 "Null handling": unset fields come back as JSON null. create refuses a null name.
    """
    defaults = ("name", "description", "kind", "type", "visibility")
    return {k: v for k, v in fields.items() if not (k in defaults and v is None)}


def sync_strips_its_marker(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``meta.cbkVaultRef`` is sync's own marker (docs/SYNC.md: meta is compared "without the
    marker key"; SECURITY section: "plus one marker key, ``cbkVaultRef``"): a pull does not
    store it, and a meta that held only the marker becomes null."""
    meta = fields.get("meta")
    if not isinstance(meta, dict) or MARKER_KEY not in meta:
        return dict(fields)
    rest = {k: v for k, v in meta.items() if k != MARKER_KEY}
    return {**fields, "meta": rest or None}


def records_keep_underscore_meta(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sync pulls and import keep top-level meta keys that are empty or begin with ``_``; create refuses them.

    NOT documented as a difference (listed in the report for a decision). The vault API's
    create and update refuse such keys (README: "refused on create and update, as the cloud
    does"; docs/FIDELITY.md D1), but that rule is applied on the request path only
    (docs/ARCHITECTURE.md, the path of one create: "``_rules.check_meta_keys`` applies the
    meta key rule"), not on the raw seam sync pulls and import write through, and commit
    f351df8 keeps "stored _ keys" on update, treating them as data a record may hold.

    Returns the fields create is given (those keys taken out) and the keys the record keeps.
    """
    meta = fields.get("meta")
    if not isinstance(meta, dict):
        return dict(fields), {}
    kept = {k: v for k, v in meta.items() if not k or k.startswith("_")}
    return {**fields, "meta": {k: v for k, v in meta.items() if k not in kept}}, kept


def with_kept_meta(item: dict[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    return {**item, "meta": {**(item["meta"] or {}), **kept}} if kept else item


def import_refuses_masked_client_secret(fields: Mapping[str, Any]) -> bool:
    """A config whose clientSecret is the mask ``"********"``: import refuses it, create stores it.

    ``vault/cli/_formats.py`` ``_record_from_item``: "A masked config came from a
    non-revealing list; importing it would store the mask as the secret."
    """
    config = fields.get("config")
    return isinstance(config, dict) and config.get("clientSecret") == _rules.MASK


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[vault.Vault]:
    with vault.init(tmp_path_factory.mktemp("scratch") / "scratch.cbkv", PASSPHRASE, kdf=FAST_KDF) as v:
        yield v


def clear(v: vault.Vault) -> None:
    raw = raw_records(v)
    for secret, _, _ in raw.all():
        raw.delete(secret.id, purge=True)  # gone for good: a later example may reuse the id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=bodies(ITEM_FIELDS, ITEM_POISON), rid=record_ids, created=stamps, updated=stamps)
def test_sync_pull_accepts_and_stores_what_create_does(
    scratch: vault.Vault, fields: dict[str, Any], rid: str | None, created: int, updated: int
) -> None:
    cloud_id = rid or "secret_abc123"  # a cloud id the vault cannot take gets a fresh local id
    item = {"id": cloud_id, **fields, "createdAt": created, "updatedAt": updated}
    as_create, kept = records_keep_underscore_meta(sync_strips_its_marker(sync_reads_null_as_default(fields)))
    try:
        by_create = attempt(lambda: scratch.secret.create(as_create).id)
        want = stored(scratch, by_create.value) if isinstance(by_create, Ok) else None

        def pull() -> str:
            record, pulled = _parse_item(item, _Fingerprints(b"k" * 32))
            return raw_records(scratch).put(rid, pulled, created_at=record.created_at, updated_at=record.updated_at).id

        by_pull = attempt(pull)
        event(f"sync: create {type(by_create).__name__}, pull {type(by_pull).__name__}")
        assert isinstance(by_pull, Ok) == isinstance(by_create, Ok), (by_create, by_pull)
        if isinstance(by_pull, Err):
            assert by_pull.code == RemoteProtocolError.code  # refused as the malformed cloud item it is
            return
        assert want is not None
        secret = raw_records(scratch).lookup(by_pull.value)
        assert (secret.created_at, secret.updated_at) == (created, updated)
        assert (secret.id == rid) if rid is not None else _format.ID_RE.fullmatch(secret.id)
        assert stored(scratch, by_pull.value) == (with_kept_meta(want[0], kept), want[1])
    finally:
        clear(scratch)


def export_document(record: dict[str, Any], shape: str) -> bytes:
    if shape == "export":
        return json.dumps({"format": EXPORT_FORMAT, "version": 1, "exportedAt": 1, "items": [record]}).encode()
    if shape == "list-body":
        return json.dumps({"items": [record]}).encode()
    return json.dumps([record]).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=bodies(),
    rid=record_ids,
    created=st.one_of(st.none(), stamps),
    updated=st.one_of(st.none(), stamps),
    shape=st.sampled_from(["export", "list-body", "list"]),
)
def test_import_accepts_and_stores_what_create_does(
    scratch: vault.Vault,
    fields: dict[str, Any],
    rid: str | None,
    created: int | None,
    updated: int | None,
    shape: str,
) -> None:
    record = dict(fields)
    for key, extra in (("id", rid), ("createdAt", created), ("updatedAt", updated)):
        if extra is not None:
            record[key] = extra
    as_create, kept = records_keep_underscore_meta(fields)
    try:
        by_create = attempt(lambda: scratch.secret.create(as_create).id)
        want = stored(scratch, by_create.value) if isinstance(by_create, Ok) else None

        def import_one() -> str:
            (parsed,) = parse_json(export_document(record, shape))
            return (
                raw_records(scratch)
                .put(parsed.id, parsed.fields, created_at=parsed.created_at, updated_at=parsed.updated_at)
                .id
            )

        try:
            by_import: Outcome = attempt(import_one)
        except UsageError:
            by_import = Err("USAGE")
        event(f"import: create {type(by_create).__name__}, import {type(by_import).__name__}")
        if import_refuses_masked_client_secret(fields):
            assert isinstance(by_import, Err)
            return
        assert isinstance(by_import, Ok) == isinstance(by_create, Ok), (by_create, by_import)
        if isinstance(by_import, Err):
            return
        assert want is not None
        secret = raw_records(scratch).lookup(by_import.value)
        assert (secret.id == rid) if rid is not None else _format.ID_RE.fullmatch(secret.id)
        assert created is None or secret.created_at == created
        assert updated is None or secret.updated_at == updated
        assert stored(scratch, by_import.value) == (with_kept_meta(want[0], kept), want[1])
    finally:
        clear(scratch)


# --- list queries over more than a page -------------------------------------------------------

CROWD: Final = 130  # more than the cloud's largest page (100), so take's clamp and paging show


@pytest.fixture(scope="module")
def crowded(http: Http, loop: asyncio.AbstractEventLoop) -> Iterator[World]:
    """The same CROWD secrets through every surface (metas to filter on, some deleted since)."""
    with fresh_vaults(("vault", "api", "aio", "http"), seed=7) as (steps, vaults):
        http.serve(vaults["http"])
        surfaces: dict[str, Surface] = {
            "vault": VaultSurface(vaults["vault"]),
            "api": ApiSurface(vaults["api"]),
            "aio": AioSurface(vaults["aio"], loop),
            "http": HttpSurface(http.client),
        }
        world = World(steps, vaults, surfaces)
        for i in range(CROWD):
            steps.n += 1
            body = {"name": NAMES[i % 3], "meta": COMMON_METAS[i % 4] if i % 5 else None}
            made = {name: surface.create(body, False) for name, surface in surfaces.items()}
            assert len(set(made.values())) == 1 and isinstance(made["vault"], Ok), made
            world.created.append(made["vault"].value)
        for rid in world.created[::9]:
            steps.n += 1
            assert len({surface.delete(rid) for surface in surfaces.values()}) == 1
            world.deleted.add(rid)
        world.cursors = list(world.created)  # live and deleted ids alike
        yield world


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=list_queries, as_request=st.booleans(), streamed=st.booleans())
def test_list_queries_agree_on_a_crowded_vault(
    http: Http, crowded: World, query: dict[str, Any], as_request: bool, streamed: bool
) -> None:
    http.serve(crowded.vaults["http"])
    answer(crowded, Stream(query) if streamed else List(query, as_request))


# --- regressions: disagreements these properties found -------------------------------------


def test_meta_filter_none_value_is_no_filter(tmp_path: Path) -> None:
    """``v.secret.list(meta={"env": None})`` filtered on the text ``"None"``, so it matched nothing;
    ``vault.aio`` and the stand-in leave a None value out, as the SDKs' query strings do."""
    ticks = iter(range(EPOCH_MS, EPOCH_MS + 100))
    with vault.init(tmp_path / "v.cbkv", PASSPHRASE, kdf=FAST_KDF, clock=lambda: next(ticks)) as v:
        everything = {v.secret.create(meta={"env": "prod"}).id, v.secret.create().id}
        assert {s.id for s in v.secret.list(meta={"env": None})} == everything
        assert {s.id for s in v.secret.list({"meta": {"env": None}})} == everything
        assert [s.meta for s in v.secret.list(meta={"env": None, "k": None})] == [None, {"env": "prod"}]
        assert len(v.secret.list(meta={"env": "None"})) == 0  # the text "None" is still a value

        async def through_aio() -> set[str]:
            page = await AsyncVault(v).secret.list({"meta": {"env": None}})
            return {item.id for item in page.items}

        assert asyncio.run(through_aio()) == everything


def test_stand_in_create_refuses_underscore_meta_before_the_personal_value_conflict(tmp_path: Path) -> None:
    """The stand-in answered 409 ("Personal secrets cannot have a value") to a create whose meta
    has a key beginning with ``_``, where the vault API answers 400: the meta schema is part of
    the body's validation, which comes first (docs/TESTING.md, "validation order": body (400)
    before rules (409))."""
    body = {"kind": "personal", "value": "tok", "meta": {"_x": 1}}
    with vault.init(tmp_path / "v.cbkv", PASSPHRASE, kdf=FAST_KDF) as v:
        with pytest.raises(vault.InvalidRequestError):
            v.secret.create(dict(body))
        with pytest.raises(vault.InvalidRequestError):
            SecretApi(v).create(dict(body))
        assert len(v) == 0
        # Without the `_` key, the documented difference: kept locally, 409 from the stand-in.
        with pytest.raises(vault.ConflictError):
            SecretApi(v).create({**body, "meta": {"x": 1}})
        assert v.secret.fetch(v.secret.create({**body, "meta": {"x": 1}}).id).value == "tok"


def test_jsonl_lines_survive_the_sdks_line_reader(http: Http, tmp_path: Path) -> None:
    with vault.init(tmp_path / "v.cbkv", PASSPHRASE, kdf=FAST_KDF) as v:
        http.serve(v)
        v.secret.create(name="line\u2028separator", description="next\x85line", meta={"p": "\u2029"})
        headers = {"accept": "application/jsonl"}
        with http.client.stream("GET", "/api/v1/secret/list", headers=headers) as response:
            lines = list(response.iter_lines())  # what the SDK's aiter_lines() yields
        assert [json.loads(line)["data"]["name"] for line in lines if line] == ["line\u2028separator"]
