"""The agent's test, offline: the `vault.testing` pytest plugin provides the vault, the SDK and the stand-in.

Run with ``pytest examples/agent_offline`` (the plugin comes from the ``pytest11`` entry
point; before that is installed, add ``-p vault.testing``). The async tests run under anyio's
pytest plugin (``@pytest.mark.anyio``), which the ``testing`` extra brings.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import vault
from examples.agent_offline.agent import forecast
from vault.aio import APIError, AsyncVault
from vault.testing import StandInServer

chatbotkit: Any = pytest.importorskip("chatbotkit", reason="the official chatbotkit SDK is not installed")


@pytest.fixture
def signing_key(cbk_seed: Any) -> rsa.RSAPrivateKey:
    """Store a jwt secret the way an operator would: the PEM key as value, claims in config."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cbk_seed(
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


@pytest.mark.anyio
async def test_forecast_with_the_official_sdk_in_process(cbk_client: Any, signing_key: rsa.RSAPrivateKey) -> None:
    async with upstream(signing_key) as http:
        assert await forecast(cbk_client.secret, http, "Oslo") == "Oslo: sunny, 21 °C"


@pytest.mark.anyio
async def test_forecast_with_the_async_facade(cbk_vault: vault.Vault, signing_key: rsa.RSAPrivateKey) -> None:
    async with upstream(signing_key) as http:
        assert await forecast(AsyncVault(cbk_vault).secret, http, "Tromsø") == "Tromsø: sunny, 21 °C"


@pytest.mark.anyio
async def test_forecast_with_the_official_sdk_over_a_socket(
    cbk_server: StandInServer, signing_key: rsa.RSAPrivateKey
) -> None:
    cbk = chatbotkit.ChatBotKit(base_url=cbk_server.base_url, token=cbk_server.token)
    async with cbk, upstream(signing_key) as http:
        assert await forecast(cbk.secret, http, "Bergen") == "Bergen: sunny, 21 °C"


@pytest.mark.anyio
async def test_a_missing_secret_surfaces_as_the_cloud_would(cbk_client: Any, cbk_vault: vault.Vault) -> None:
    for secrets in (cbk_client.secret, AsyncVault(cbk_vault).secret):
        async with httpx.AsyncClient() as http:
            with pytest.raises(chatbotkit.APIError) as missing:  # the SDK's error, from either client
                await forecast(secrets, http, "Oslo")
        assert missing.value.status_code == 404 and missing.value.code == "NOT_FOUND"
    assert issubclass(APIError, vault.VaultError)
