"""The agent's test, offline: the `vault.testing` pytest plugin provides the vault and the stand-in.

Run with ``pytest examples/agent_offline`` (the plugin comes from the ``pytest11`` entry
point; before that is installed, add ``-p vault.testing``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import vault
from examples.agent_offline.agent import forecast
from vault.aio import AsyncVault
from vault.testing import StandInServer


@pytest.fixture
def signing_key(cbk_vault: vault.Vault) -> rsa.RSAPrivateKey:
    """Store a jwt secret the way an operator would: the PEM key as value, claims in config."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cbk_vault.secret.create(
        name="Weather API",
        alias="weather-api",
        type="jwt",
        value=pem,
        config={"claims": {"iss": "forecast-agent", "aud": "weather"}, "expiresInSeconds": 300},
        meta={"baseUrl": "https://weather.test"},
    )
    return key


def upstream(key: rsa.RSAPrivateKey) -> httpx.AsyncClient:
    """The partner API, answered in-process: it checks the token like the real one would."""

    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        claims = jwt.decode(token, key.public_key(), algorithms=["RS256"], audience="weather")
        assert claims["iss"] == "forecast-agent"
        return httpx.Response(200, json={"summary": "sunny", "celsius": 21})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def test_forecast_with_the_async_facade(cbk_vault: vault.Vault, signing_key: rsa.RSAPrivateKey) -> None:
    async def scenario() -> str:
        async with upstream(signing_key) as http:
            return await forecast(AsyncVault(cbk_vault).secret, http, "Oslo")

    assert asyncio.run(scenario()) == "Oslo: sunny, 21 °C"


def test_forecast_with_the_official_sdk_against_the_stand_in(
    cbk_server: StandInServer, signing_key: rsa.RSAPrivateKey
) -> None:
    chatbotkit: Any = pytest.importorskip("chatbotkit", reason="the official chatbotkit SDK is not installed")

    async def scenario() -> str:
        cbk = chatbotkit.ChatBotKit(base_url=cbk_server.base_url, token=cbk_server.token)
        async with cbk, upstream(signing_key) as http:
            return await forecast(cbk.secret, http, "Bergen")

    assert asyncio.run(scenario()) == "Bergen: sunny, 21 °C"


def test_a_missing_secret_surfaces_as_the_cloud_would(cbk_vault: vault.Vault) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            await forecast(AsyncVault(cbk_vault).secret, http, "Oslo")

    with pytest.raises(vault.NotFoundError):
        asyncio.run(scenario())
