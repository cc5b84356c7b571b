"""One agent, two clients: ``vault.aio`` and the official SDK on the stand-in give the same results and errors.

The same agent code (``agent`` below: every secret call of the Python SDK, its enums, its
paging quirk, its error classes and attributes) runs once against ``AsyncVault(v).secret``
and once against ``chatbotkit.ChatBotKit`` answered by the stand-in (the in-process transport
of ``vault.testing``). Each run writes a transcript: result class names, attributes and their
types, enum classes and comparisons, and for errors the class name, which SDK classes catch
it, ``message``, ``code``, ``status_code``, ``url`` and ``data``. The transcripts must be equal.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import vault
from vault.aio import AsyncVault
from vault.testing import CLOUD_BASE_URL, new_vault, transport

chatbotkit = pytest.importorskip("chatbotkit", reason="the official chatbotkit SDK is not installed")

START_MS = 1_760_000_000_000


class Ticks:
    """A vault clock that moves one second per reading: both runs see the same timestamps."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def describe(value: Any) -> Any:
    """A result as plain data: class names, attribute values and types, enums with how they compare."""
    if isinstance(value, enum.Enum):
        return {
            "enum": type(value).__name__,
            "value": value.value,
            "equals_its_string": value == value.value,
        }
    if isinstance(value, (str, int, float, bool)) or value is None:
        return [type(value).__name__, value]
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if hasattr(value, "status_code") and hasattr(value, "headers"):  # an httpx.Response from proxy
        return {"response": value.status_code, "json": value.json()}
    return {"class": type(value).__name__, **{k: describe(v) for k, v in sorted(vars(value).items())}}


def describe_error(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {
        "raised": type(exc).__name__,
        "is": sorted(
            name
            for name, cls in (
                ("chatbotkit.APIError", chatbotkit.APIError),
                ("chatbotkit.AuthorizationRequiredError", chatbotkit.AuthorizationRequiredError),
                ("AssertionError", AssertionError),
                ("ValueError", ValueError),
                ("TypeError", TypeError),
                ("KeyError", KeyError),
            )
            if isinstance(exc, cls)
        ),
    }
    if isinstance(exc, chatbotkit.APIError):
        out.update(
            message=exc.message, code=exc.code, status_code=exc.status_code, url=exc.url, data=describe(exc.data)
        )
    elif not isinstance(exc, AssertionError):  # the SDK's assertion has no message; ours explains it
        out["str"] = str(exc)
    return out


async def agent(secrets: Any) -> list[Any]:
    """Agent code written against ``ChatBotKit(...).secret``; the transcript of what it saw."""
    log: list[Any] = []

    async def step(name: str, make: Callable[[], Awaitable[Any]], view: Callable[[Any], Any] = describe) -> Any:
        try:
            result = await make()
        except Exception as exc:  # every error is part of the transcript
            log.append([name, "raised", describe_error(exc)])
            return None
        log.append([name, "ok", view(result)])
        return result

    weather = await step(
        "create",
        lambda: secrets.create(
            {"name": "Weather", "alias": "weather", "type": "bearer", "value": "tok", "meta": {"env": "prod"}}
        ),
    )
    item = await step("fetch by alias", lambda: secrets.fetch("@weather"))
    log.append(["string compare", item.type == "bearer", item.kind == "shared", item.type.value == "bearer"])
    page = await step("list", lambda: secrets.list({"take": 1, "meta": {"env": "prod"}}))
    log.append(["listed enum equals fetched enum", page.items[0].type == item.type])
    log.append(["to_dict", item.to_dict()])
    await step("update without alias", lambda: secrets.update(weather.id, {"description": "d"}))
    await step("fetch by alias after update", lambda: secrets.fetch("@weather"))
    await step("fetch by id", lambda: secrets.fetch(weather.id))
    await step("update with alias", lambda: secrets.update(weather.id, {"alias": "weather", "name": "W2"}))
    await step("fetch by name", lambda: secrets.fetch("(W2)"))
    await step("fetch missing", lambda: secrets.fetch("@missing"))
    await step("fetch a name with a slash", lambda: secrets.fetch("(a/b)"))
    await step("personal with a value", lambda: secrets.create({"kind": "personal", "value": "v"}))
    await step("unknown key", lambda: secrets.create({"colour": "red"}))
    await step("bad kind", lambda: secrets.create({"kind": "x"}))
    await step("duplicate alias", lambda: secrets.create({"alias": "weather"}))
    await step("NaN in meta", lambda: secrets.create({"meta": {"x": math.nan}}))
    await step("not JSON", lambda: secrets.create({"meta": {"x": object()}}))
    await step("list a non-mapping", lambda: secrets.list(5))

    oauth = await step(
        "create oauth",
        lambda: secrets.create(
            {"type": "oauth", "value": json.dumps({"accessToken": "at-1"}), "config": {"clientSecret": "cs"}}
        ),
    )
    await step("fetch masked", lambda: secrets.fetch(oauth.id))
    await step("mint oauth", lambda: secrets.mint(oauth.id))
    pending = await step("create unauthenticated oauth", lambda: secrets.create({"type": "oauth"}))
    await step("mint unauthenticated", lambda: secrets.mint(pending.id))
    await step("mint bearer", lambda: secrets.mint(weather.id))
    await step("mint missing", lambda: secrets.mint("@missing"))
    await step("proxy", lambda: secrets.proxy(weather.id, {"url": "https://example.com/"}))
    await step("proxy missing", lambda: secrets.proxy("@missing", {"url": "https://example.com/"}))

    await step("empty page", lambda: secrets.list({"meta": {"env": "nowhere"}}))
    await step("page with a cursor", lambda: secrets.list({"take": 2, "order": "asc"}))

    async def streamed() -> list[Any]:
        return [line async for line in secrets.list({"order": "asc"}).stream()]

    await step("stream", streamed)
    await step("delete", lambda: secrets.delete(oauth.id))
    await step("delete again", lambda: secrets.delete(oauth.id))
    return log


def normalised(log: list[Any], ids: list[str]) -> Any:
    text = json.dumps(log, sort_keys=True)
    for n, sid in enumerate(ids):
        text = text.replace(sid, f"<id{n}>")
    # An authorize URL's state is a token signed per server, and its origin is the server's own.
    text = re.sub(r"state=[A-Za-z0-9_.-]+", "state=<state>", text)
    text = re.sub(r"http://[0-9.]+(:[0-9]+)?/secrets/", "<origin>/secrets/", text)
    return json.loads(text)


@pytest.fixture
def vaults(tmp_path: Path) -> Iterator[tuple[vault.Vault, vault.Vault]]:
    with new_vault(tmp_path / "aio.cbkv", clock=Ticks()) as a, new_vault(tmp_path / "sdk.cbkv", clock=Ticks()) as b:
        yield a, b


def test_the_same_agent_sees_the_same_results_through_aio_and_the_sdk(
    vaults: tuple[vault.Vault, vault.Vault],
) -> None:
    aio_vault, sdk_vault = vaults

    async def through_aio() -> list[Any]:
        return await agent(AsyncVault(aio_vault).secret)

    async def through_sdk() -> list[Any]:
        token = "sk-parity"
        client = chatbotkit.ChatBotKit(
            base_url=CLOUD_BASE_URL, token=token, transport=transport(sdk_vault, token=token)
        )
        async with client:
            return await agent(client.secret)

    aio_log = asyncio.run(through_aio())
    sdk_log = asyncio.run(through_sdk())
    # Ids are random: number them in the order the creates answered them.
    aio_ids = [step[2]["id"][1] for step in aio_log if step[0].startswith("create") and step[1] == "ok"]
    sdk_ids = [step[2]["id"][1] for step in sdk_log if step[0].startswith("create") and step[1] == "ok"]
    expected, got = normalised(sdk_log, sdk_ids), normalised(aio_log, aio_ids)
    for want, have in zip(expected, got, strict=False):  # the first difference, by name
        assert have == want, f"aio and the SDK differ at {want[0]!r}"
    assert len(got) == len(expected)


def test_the_transcript_shows_the_sdk_behaviours_that_matter(vaults: tuple[vault.Vault, vault.Vault]) -> None:
    """Spot checks on the aio transcript, so an agreement on something wrong cannot pass unseen."""
    log = {step[0]: step for step in asyncio.run(agent(AsyncVault(vaults[0]).secret))}
    assert log["string compare"][1:] == [False, False, True]
    assert log["listed enum equals fetched enum"][1] is False
    assert log["fetch by alias"][2]["type"]["enum"] == "SecretFetchResponseType"
    assert log["fetch by alias"][2]["created_at"][0] == "float"
    assert log["fetch missing"][2]["is"] == ["chatbotkit.APIError"]  # not also a KeyError, as online
    assert log["fetch missing"][2]["status_code"] == 404 and log["fetch missing"][2]["code"] == "NOT_FOUND"
    assert log["mint bearer"][2]["code"] == "ERROR_409"  # the mint refusal has no code: the SDK's fallback
    assert log["mint unauthenticated"][2]["raised"] == "AuthorizationRequiredError"
    assert "chatbotkit.AuthorizationRequiredError" in log["mint unauthenticated"][2]["is"]
    assert log["empty page"][2]["is"] == ["AssertionError"]
    assert log["NaN in meta"][2]["is"] == ["ValueError"] and log["not JSON"][2]["is"] == ["TypeError"]
    assert log["fetch masked"][2]["config"] == {"clientSecret": ["str", "********"]}
