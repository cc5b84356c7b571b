"""The stand-in driven by the official `chatbotkit` Python package (skipped where it is not installed).

That package is proprietary: it is only used here as an installed client; none of its
code is copied. Its client sends `/api/v1/...` as written to any host other than
api.chatbotkit.com, so the stand-in's `/api/v1/secret/...` routes are what it reaches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_server import TOKEN, start_server, stop_server

chatbotkit = pytest.importorskip("chatbotkit", reason="the official chatbotkit SDK is not installed")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    proc, base, _ = start_server("--ephemeral", "--token", TOKEN)
    try:
        yield base
    finally:
        stop_server(proc)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_crud_list_and_stream_through_the_official_sdk(base_url: str) -> None:
    async def scenario() -> None:
        async with chatbotkit.ChatBotKit(base_url=base_url, token=TOKEN) as client:
            created = await client.secret.create(
                {"name": "SDK", "alias": "sdk-secret", "type": "bearer", "value": "tok-sdk", "meta": {"env": "TOKEN"}}
            )
            assert isinstance(created.id, str) and len(created.id) == 24
            item = await client.secret.fetch("@sdk-secret")
            assert item.id == created.id and item.name == "SDK" and item.alias == "sdk-secret"
            assert item.type.value == "bearer" and item.kind.value == "shared" and item.visibility.value == "private"
            assert item.meta == {"env": "TOKEN"} and not hasattr(item, "value")
            assert item.created_at > 1_600_000_000_000

            updated = await client.secret.update(created.id, {"description": "changed", "alias": "sdk-secret"})
            assert updated.id == created.id
            assert (await client.secret.fetch(created.id)).description == "changed"

            page = await client.secret.list({"take": 10, "meta": {"env": "TOKEN"}})
            assert [i.id for i in page.items] == [created.id] and page.cursor == created.id

            streamed = [line async for line in client.secret.list().stream()]
            assert [s.type.value for s in streamed] == ["item"] and streamed[0].data.id == created.id

            deleted = await client.secret.delete(created.id)
            assert deleted.id == created.id

    run(scenario())


def test_errors_reach_the_sdk_as_api_errors(base_url: str) -> None:
    async def scenario() -> None:
        async with chatbotkit.ChatBotKit(base_url=base_url, token=TOKEN) as client:
            with pytest.raises(chatbotkit.APIError) as missing:
                await client.secret.fetch("@does-not-exist")
            assert missing.value.status_code == 404 and missing.value.code == "NOT_FOUND"
            with pytest.raises(chatbotkit.APIError) as personal:
                await client.secret.create({"kind": "personal", "value": "v"})
            assert personal.value.status_code == 409 and personal.value.code == "CONFLICT"
            assert personal.value.message == "Personal secrets cannot have a value"
            with pytest.raises(chatbotkit.APIError) as bad:
                await client.secret.create({"colour": "red"})
            assert bad.value.status_code == 400 and bad.value.code == "BAD_REQUEST"
        async with chatbotkit.ChatBotKit(base_url=base_url, token="sk-wrong") as wrong:
            with pytest.raises(chatbotkit.APIError) as denied:
                await wrong.secret.list()
            assert denied.value.status_code == 401 and denied.value.code == "NOT_AUTHENTICATED"

    run(scenario())


def test_mint_through_the_sdk(base_url: str) -> None:
    async def scenario() -> None:
        async with chatbotkit.ChatBotKit(base_url=base_url, token=TOKEN) as client:
            oauth = await client.secret.create({"type": "oauth", "value": json.dumps({"accessToken": "at-sdk"})})
            minted = await client.secret.mint(oauth.id)
            assert minted.token == "at-sdk" and minted.expires_at is None
            pending = await client.secret.create({"type": "oauth"})
            with pytest.raises(chatbotkit.AuthorizationRequiredError) as required:
                await client.secret.mint(pending.id)
            assert required.value.url and "/manager/authenticate" in required.value.url
            bearer = await client.secret.create({"type": "bearer", "value": "t"})
            with pytest.raises(chatbotkit.APIError) as refused:
                await client.secret.mint(bearer.id)
            assert refused.value.status_code == 409 and refused.value.data["error"] == "not_mintable"

    run(scenario())
