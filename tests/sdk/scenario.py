"""The official Python SDK (``chatbotkit``) against a running stand-in: every secret method it has.

    python tests/sdk/scenario.py BASE_URL TOKEN

Run by ``tests/sdk/run.py`` (which starts ``cbk-vault serve --ephemeral``) and by
``tests/test_sdk_scenarios.py``. Python's SDK has list, fetch, create, update, delete, mint
and proxy; ``node/scenario.mjs`` runs the same scenario through the Node SDK, whose methods
are list, fetch, create, update, delete, revoke, verify and authenticate.

Every check states the **cloud's** behaviour (docs/FIDELITY.md). A check whose fix has not
landed in the stand-in names its FIDELITY row (``item="E1"``); if that row is in
``pending.json`` a failure prints ``pending`` and does not fail the run, and an item all of
whose checks pass prints ``FIXED`` and fails it, until the mark is removed. One line per
check, then a summary; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import chatbotkit

HERE = Path(__file__).resolve().parent
PENDING: dict[str, str] = {k: v for k, v in json.loads((HERE / "pending.json").read_text()).items() if k[0] != "_"}


class Report:
    """Check lines, pending items, and the summary."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = 0
        self.failed = 0
        self.by_item: dict[str, list[bool]] = {}

    def check(self, what: str, passed: bool, detail: object = "", *, item: str | None = None) -> bool:
        if item is not None:
            self.by_item.setdefault(item, []).append(passed)
        if passed:
            self.ok += 1
            print(f"ok       {what}" + (f"  [{item}]" if item else ""))
        elif item in PENDING:
            print(f"pending  [{item}] {what}: {detail}")
        else:
            self.failed += 1
            print(f"FAIL     {what}" + (f"  [{item}]" if item else "") + f": {detail}")
        return passed

    @asynccontextmanager
    async def section(self, title: str) -> AsyncIterator[None]:
        print(f"-- {title}")
        try:
            yield
        except Exception:  # a step that crashed: the rest of the section cannot be checked
            self.failed += 1
            print(f"FAIL     section '{title}' stopped: " + traceback.format_exc().strip().replace("\n", "\n         "))

    def finish(self) -> int:
        pending = sorted(item for item, results in self.by_item.items() if item in PENDING and not all(results))
        for item, results in sorted(self.by_item.items()):
            if item in PENDING and all(results):
                self.failed += 1
                print(f"FIXED    [{item}] every check of it passes now: remove {item} from tests/sdk/pending.json")
        print(
            f"{self.name} scenario: {self.ok} checks ok, {len(pending)} pending items"
            f" ({', '.join(pending) or 'none'}), {self.failed} failed"
        )
        return 1 if self.failed else 0


async def raised(call: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """The exception ``call`` raised, or None."""
    try:
        await call()
    except Exception as exc:
        return exc
    return None


def api_error(exc: BaseException | None) -> tuple[Any, Any, Any]:
    """(status_code, code, message) of an SDK APIError; a success or another error shows as such."""
    if isinstance(exc, chatbotkit.APIError):
        return exc.status_code, exc.code, exc.message
    return ("no error", None, None) if exc is None else (type(exc).__name__, None, str(exc))


async def scenario(base_url: str, token: str, report: Report) -> None:
    run = secrets.token_hex(4)  # names and meta of this run, so a reused server cannot confuse it
    alias = f"weather-{run}"
    cbk = chatbotkit.ChatBotKit(base_url=base_url, token=token)
    s = cbk.secret
    check = report.check

    async with report.section("create and fetch"):
        created = await s.create(
            {"name": f"Weather {run}", "alias": alias, "type": "bearer", "value": "tok-1", "description": "d",
             "meta": {"env": "prod", "n": 3}}
        )
        check("create answers a string id", isinstance(created.id, str) and bool(created.id), created.id)
        item = await s.fetch(f"@{alias}")
        check("fetch by @alias finds it", item.id == created.id, item.id)
        check(
            "fetch gives the fields as created",
            (item.name, item.alias, item.description, item.meta)
            == (f"Weather {run}", alias, "d", {"env": "prod", "n": 3}),
            item.to_dict(),
        )
        check(
            "defaults: shared, private, no blueprint, no config",
            (item.kind.value, item.visibility.value, item.blueprint_id, item.config)
            == ("shared", "private", None, None),
            item.to_dict(),
        )
        check("type is bearer", item.type.value == "bearer", item.type)
        check("no value is ever returned", "value" not in item.to_dict() and not hasattr(item, "value"))
        check(
            "createdAt/updatedAt are epoch milliseconds",
            item.created_at > 1_600_000_000_000 and item.created_at == item.updated_at,
            (item.created_at, item.updated_at),
        )
        check("fetch by id", (await s.fetch(created.id)).id == created.id)
        check("fetch by (name)", (await s.fetch(f"(Weather {run})")).id == created.id)

    async with report.section("update and alias"):
        updated = await s.update(f"@{alias}", {"description": "d2"})
        check("update by @alias answers the real id", updated.id == created.id, updated.id)
        after = await s.fetch(created.id)
        check(
            "fields left out of an update are kept",
            (after.description, after.name, after.meta) == ("d2", f"Weather {run}", {"env": "prod", "n": 3}),
            after.to_dict(),
        )
        check("an update that leaves alias out clears it", after.alias is None, after.alias, item="E1")
        gone = api_error(await raised(lambda: s.fetch(f"@{alias}")))
        check("so @alias is 404 after that update", gone[:2] == (404, "NOT_FOUND"), gone, item="E1")
        await s.update(created.id, {"alias": alias, "name": f"Weather 2 {run}"})
        again = await s.fetch(f"@{alias}")
        check("an update that resends alias keeps it", (again.id, again.name) == (created.id, f"Weather 2 {run}"))
        await s.update(created.id, {"alias": ""})
        check('alias "" clears it', (await s.fetch(created.id)).alias is None)
        await s.update(created.id, {"alias": alias})

    async with report.section("masked clientSecret"):
        config = {
            "clientId": "cid",
            "clientSecret": "cs-secret",
            "authorizationUrl": "https://auth.example/authorize",
            "tokenUrl": "https://auth.example/token",
            "scope": "read",
        }
        oauth = await s.create({"name": f"OAuth {run}", "type": "oauth", "config": config})
        fetched = await s.fetch(oauth.id)
        check(
            "fetch masks config.clientSecret, and only it",
            fetched.config == {**config, "clientSecret": "********"},
            fetched.config,
        )
        page = await s.list({"take": 100})
        listed = next((i for i in page.items if i.id == oauth.id), None)
        check("list masks it too", listed is not None and listed.config["clientSecret"] == "********", listed)
        await s.update(oauth.id, {"config": {"clientId": "cid2", "clientSecret": "********"}})
        check(
            "the mask sent back keeps the stored clientSecret; config is replaced whole",
            (await s.fetch(oauth.id)).config == {"clientId": "cid2", "clientSecret": "********"},
            (await s.fetch(oauth.id)).config,
        )
        empty = await s.create({"config": {"clientSecret": ""}})
        check('an empty clientSecret comes back null', (await s.fetch(empty.id)).config == {"clientSecret": None})

    async with report.section("cursor paging with take"):
        ids = [(await s.create({"name": f"page {run} {n}", "meta": {"batch": run}})).id for n in range(5)]
        sizes: list[int] = []
        seen: list[str] = []
        cursor: str | None = None
        empty_page: BaseException | None = None
        for _ in range(10):
            request: dict[str, Any] = {"take": 2, "order": "asc", "meta": {"batch": run}}
            if cursor is not None:
                request["cursor"] = cursor
            empty_page = await raised(lambda request=request: s.list(request))
            if empty_page is not None:
                break
            page = await s.list(request)
            sizes.append(len(page.items))
            seen += [i.id for i in page.items]
            check(f"page {len(sizes)}: cursor is its last item's id", page.cursor == page.items[-1].id, page.cursor)
            cursor = page.cursor
        check("take=2 pages the 5 secrets as 2, 2, 1", sizes == [2, 2, 1], sizes)
        check("in creation order, each once (order=asc)", seen == ids, seen)
        check(
            "the page after the last is empty, without a cursor: SDK 0.6.0's parser raises AssertionError",
            isinstance(empty_page, AssertionError),
            repr(empty_page),
        )
        desc = await s.list({"meta": {"batch": run}})
        check("order defaults to desc", [i.id for i in desc.items] == ids[::-1], [i.id for i in desc.items])
        check("take=0 means 100", len((await s.list({"take": 0, "meta": {"batch": run}})).items) == 5)
        check("a negative take means 1", len((await s.list({"take": -3, "meta": {"batch": run}})).items) == 1)
        lines = [line async for line in s.list({"meta": {"batch": run}}).stream()]
        check(
            "stream: every item, as 'item' lines",
            [(line.type.value, line.data.id) for line in lines] == [("item", i) for i in ids[::-1]],
            [(line.type.value, line.data.id) for line in lines],
        )
        streamed = [line async for line in s.list({"take": 2, "order": "asc", "meta": {"batch": run}}).stream()]
        check("stream with take stops after that many", [line.data.id for line in streamed] == ids[:2])
        await s.delete(ids[1])
        after_deleted = await raised(
            lambda: s.list({"take": 2, "order": "asc", "meta": {"batch": run}, "cursor": ids[1]})
        )
        check(
            "the cursor of a secret deleted since gives an empty page (AssertionError in the SDK)",
            isinstance(after_deleted, AssertionError),
            "a page with items" if after_deleted is None else repr(after_deleted),
            item="G7",
        )
        number = await raised(lambda: s.list({"meta": {"n": 3}}))
        check(
            "meta filter 'n=3' does not match a stored number 3 (an empty page)",
            isinstance(number, AssertionError),
            "a page with items" if number is None else repr(number),
            item="G13",
        )

    async with report.section("errors as the SDK surfaces them"):
        missing = api_error(await raised(lambda: s.fetch(f"@no-such-{run}")))
        check("an unknown @alias is 404 NOT_FOUND", missing[:2] == (404, "NOT_FOUND"), missing)
        check("with the message 'Not found'", missing[2] == "Not found", missing[2], item="E10")
        personal = api_error(await raised(lambda: s.create({"kind": "personal", "value": "v"})))
        check(
            "a personal secret with a value is 409 CONFLICT",
            personal == (409, "CONFLICT", "Personal secrets cannot have a value"),
            personal,
        )
        unknown = api_error(await raised(lambda: s.create({"colour": "red"})))
        check("an unknown key is 400 BAD_REQUEST", unknown == (400, "BAD_REQUEST", '"colour" is not allowed'), unknown)
        kind = api_error(await raised(lambda: s.create({"kind": "x"})))
        check("a bad kind is 400 BAD_REQUEST", kind[:2] == (400, "BAD_REQUEST"), kind)
        check("in Joi's words", kind[2] == '"kind" must be one of [shared, personal]', kind[2], item="C7")
        duplicate = api_error(await raised(lambda: s.create({"alias": alias})))
        check("a duplicate alias is 409 CONFLICT", duplicate[:2] == (409, "CONFLICT"), duplicate)
        check("'Unique constraint violation'", duplicate[2] == "Unique constraint violation", duplicate[2], item="E4")
        early = api_error(await raised(lambda: s.update(f"no-such-{run}", {"kind": "personal", "value": "x"})))
        check("update {personal, value} of an unknown id is the 409, before the lookup", early[0] == 409, early,
              item="E8")
        underscore = api_error(await raised(lambda: s.update(created.id, {"alias": alias, "meta": {"_a": 1}})))
        check("a meta key beginning with '_' is 400 on update", underscore[0] == 400, underscore, item="D1")
        hashed = await s.create({"meta": {"#x": 1, "a": {"#b": 2}}})
        shown = (await s.fetch(hashed.id)).meta
        check("'#' meta keys are never answered, at any depth", shown == {"a": {}}, shown, item="C18")
        merged = await s.create({"meta": {"a": 1}})
        await s.update(merged.id, {"meta": {"$update": {"b": 2}, "c": 3}})
        shown = (await s.fetch(merged.id)).meta
        check("meta.$update wins over its sibling keys", shown == {"a": 1, "b": 2}, shown, item="D5")
        blueprint = api_error(await raised(lambda: s.create({"blueprintId": "abc"})))
        check(
            "an unknown blueprintId is 400",
            blueprint == (400, "BAD_REQUEST", "Blueprint not found (blueprintId)"),
            blueprint,
            item="E5",
        )
        async with chatbotkit.ChatBotKit(base_url=base_url, token="sk-wrong-token") as wrong:
            denied = api_error(await raised(lambda: wrong.secret.list()))
        check("a wrong token is 401 NOT_AUTHENTICATED", denied[:2] == (401, "NOT_AUTHENTICATED"), denied)
        doomed = await s.create({"name": f"doomed {run}"})
        with_body = await raised(lambda: s.delete(doomed.id, {"x": 1}))
        check("delete ignores its body", with_body is None, api_error(with_body), item="A10")
        victim = await s.create({"name": f"victim {run}"})
        deleted = await s.delete(victim.id)
        check("delete answers the id", deleted.id == victim.id, deleted.id)
        check("then fetch is 404", api_error(await raised(lambda: s.fetch(victim.id)))[0] == 404)
        check("and a second delete is 404", api_error(await raised(lambda: s.delete(victim.id)))[0] == 404)

    async with report.section("mint"):
        stored = await s.create({"type": "oauth", "value": json.dumps({"accessToken": "at-1"})})
        minted = await s.mint(stored.id)
        check("oauth mints its access token (the stand-in's token-state format)", minted.token == "at-1", minted.token)
        check("expiresAt null when the state has none", minted.expires_at is None, minted.expires_at)
        pem = _rsa_pem()
        if pem is not None:
            jwt_secret = await s.create({"type": "jwt", "value": pem, "config": {"claims": {"iss": run}}})
            signed = await s.mint(jwt_secret.id)
            now_ms = time.time() * 1000
            check("jwt mints a signed token", signed.token.count(".") == 2, signed.token[:20])
            check(
                "expiresAt is epoch ms, 600 s ahead by default",
                signed.expires_at is not None and abs(signed.expires_at - (now_ms + 600_000)) < 120_000,
                signed.expires_at,
            )
        pending_oauth = await s.create({"type": "oauth"})
        required = await raised(lambda: s.mint(pending_oauth.id))
        check(
            "an unauthenticated oauth secret is AuthorizationRequiredError with the authorize url",
            isinstance(required, chatbotkit.AuthorizationRequiredError)
            and required.status_code == 409
            and "/manager/authenticate" in (required.url or ""),
            repr(required),
        )
        refused = await raised(lambda: s.mint(created.id))
        check(
            "a bearer secret is not mintable: APIError 409, data.error not_mintable, code ERROR_409",
            isinstance(refused, chatbotkit.APIError)
            and not isinstance(refused, chatbotkit.AuthorizationRequiredError)
            and (refused.status_code, refused.code, (refused.data or {}).get("error"))
            == (409, "ERROR_409", "not_mintable"),
            repr(refused),
        )
        check(
            "with the cloud's message",
            api_error(refused)[2]
            == "Secrets of type 'bearer' cannot be minted for a token; use the egress proxy instead.",
            api_error(refused)[2],
            item="I13",
        )
        empty_bearer = await s.create({"type": "bearer"})
        no_value = await raised(lambda: s.mint(empty_bearer.id))
        check(
            "a bearer secret without a value asks for authorization",
            isinstance(no_value, chatbotkit.AuthorizationRequiredError),
            repr(no_value),
            item="I12",
        )
        personal_oauth = await s.create({"type": "oauth", "kind": "personal"})
        personal_mint = await raised(lambda: s.mint(personal_oauth.id))
        check(
            "a personal secret is authorization_required, without url",
            isinstance(personal_mint, chatbotkit.AuthorizationRequiredError) and personal_mint.url is None,
            repr(personal_mint),
        )
        check(
            "with the cloud's message",
            api_error(personal_mint)[2]
            == "Cannot obtain valid authentication context: "
            "the current conversation session is mostly likely not trusted",
            api_error(personal_mint)[2],
            item="I14",
        )
        check("mint of an unknown id is 404", api_error(await raised(lambda: s.mint(f"@no-such-{run}")))[0] == 404)

    async with report.section("proxy"):
        loopback = await s.proxy(created.id, {"url": "http://127.0.0.1/x"})
        check(
            "a loopback destination is 400 invalid_destination (returned, not raised)",
            loopback.status_code == 400 and _json(loopback).get("error") == "invalid_destination",
            (loopback.status_code, _json(loopback)),
            item="I22",
        )
        no_url = await s.proxy(created.id, {})
        check(
            'a body without url is 400 "\\"url\\" is required"',
            no_url.status_code == 400 and _json(no_url).get("message") == '"url" is required',
            (no_url.status_code, _json(no_url)),
            item="I22",
        )
        nowhere = await s.proxy(f"@no-such-{run}", {"url": "https://example.com/"})
        check("an unknown secret is 404", nowhere.status_code == 404, (nowhere.status_code, _json(nowhere)), item="I22")
        auth = await raised(lambda: s.proxy(pending_oauth.id, {"url": "https://example.com/"}))
        check(
            "an unauthenticated secret raises AuthorizationRequiredError",
            isinstance(auth, chatbotkit.AuthorizationRequiredError),
            repr(auth),
            item="I22",
        )
        allowed = await s.proxy(created.id, {"url": "https://example.com/"})
        check(
            "offline, an allowed destination is refused, never forwarded (501, docs/FIDELITY.md)",
            allowed.status_code == 501,
            (allowed.status_code, _json(allowed)),
        )

    await cbk.aclose()


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _rsa_pem() -> str | None:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        print("skip     jwt mint: the cryptography package is not installed")
        return None
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__)
        return 2
    report = Report(f"python SDK (chatbotkit {chatbotkit.__version__})")
    try:
        asyncio.run(scenario(argv[1], argv[2], report))
    except Exception:
        report.failed += 1
        traceback.print_exc()
    return report.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
