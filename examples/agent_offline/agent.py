"""A small agent tool that calls a partner API with a credential kept in ChatBotKit.

It talks to ChatBotKit only through the secret client of the official async Python SDK
(``chatbotkit.ChatBotKit(...).secret``): it looks the secret up by alias, reads where to
call from the secret's ``meta``, and asks ChatBotKit to ``mint`` a short-lived token
(the stored key never leaves the vault). The upstream call goes through an injected
``httpx.AsyncClient``, so a test can answer it without the network.

Offline, the same function runs unchanged against
* the official SDK answered in process (the ``cbk_client`` fixture of ``vault.testing``),
* ``vault.aio.AsyncVault(v).secret`` (no HTTP at all), or
* the official SDK pointed at the stand-in: ``ChatBotKit(base_url=server.base_url, token=server.token)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

WEATHER_API = "@weather-api"  # the secret, by alias


class SecretCalls(Protocol):
    """The part of the SDK's ``SecretClient`` this agent uses (both offline clients provide it)."""

    def fetch(self, secret_id: str) -> Any: ...

    def mint(self, secret_id: str) -> Any: ...


async def forecast(secrets: SecretCalls, http: httpx.AsyncClient, city: str) -> str:
    """One line of weather for ``city``, fetched with a freshly minted token."""
    item = await secrets.fetch(WEATHER_API)
    base_url = (item.meta or {}).get("baseUrl", "https://weather.example")
    minted = await secrets.mint(WEATHER_API)
    response = await http.get(
        f"{base_url}/v1/forecast",
        params={"city": city},
        headers={"authorization": f"Bearer {minted.token}"},
    )
    response.raise_for_status()
    data = response.json()
    return f"{city}: {data['summary']}, {data['celsius']} °C"
