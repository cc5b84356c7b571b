"""vault.aio: the official async SDK's secret calls and response shapes, served from a vault."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import vault
from tests.conftest import CLOUD_ITEM_KEYS
from vault._credentials import MintRefusedError
from vault.aio import (
    APIError,
    AsyncVault,
    SecretCreateResponse,
    SecretFetchResponseKind,
    SecretFetchResponseType,
    SecretFetchResponseVisibility,
    SecretIdResponse,
    SecretItem,
    SecretListResponse,
    SecretListStreamItemType,
    SecretMintResponse,
    SecretType,
    SecretUpdateResponse,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_crud_shapes_match_the_sdk(v: vault.Vault) -> None:
    async def scenario() -> None:
        secrets = AsyncVault(v).secret
        created = await secrets.create(
            {"name": "Pay", "alias": "pay", "type": "oauth", "value": "at", "config": {"clientSecret": "cs"}}
        )
        assert isinstance(created, SecretCreateResponse) and created.to_dict() == {"id": created.id}
        item = await secrets.fetch("@pay")
        assert isinstance(item, SecretItem) and not hasattr(item, "value")
        assert item.id == created.id and item.alias == "pay" and item.blueprint_id is None
        # The SDK's enums: plain Enum, so the value compares and the plain string does not.
        assert item.type is SecretFetchResponseType.OAUTH and item.type.value == "oauth" and item.type != "oauth"
        assert item.kind is SecretFetchResponseKind.SHARED and item.visibility is SecretFetchResponseVisibility.PRIVATE
        assert item.config == {"clientSecret": "********"}  # masked like the cloud
        assert item.created_at == item.updated_at and isinstance(item.created_at, float)
        assert set(item.to_dict()) == CLOUD_ITEM_KEYS - {"blueprintId", "meta"}  # None left out, as the SDK does

        updated = await secrets.update("@pay", {"description": "d", "alias": "pay"})
        assert isinstance(updated, SecretUpdateResponse) and isinstance(updated, SecretIdResponse)
        assert updated.id == created.id
        assert (await secrets.fetch(created.id)).description == "d"
        deleted = await secrets.delete(created.id)
        assert deleted.id == created.id
        with pytest.raises(APIError) as missing:  # the SDK's error (and chatbotkit.APIError when installed)
            await secrets.fetch(created.id)
        assert missing.value.status_code == missing.value.status == 404 and missing.value.code == "NOT_FOUND"
        assert isinstance(missing.value, vault.VaultError) and not isinstance(missing.value, KeyError)

    run(scenario())


def test_cloud_rules_apply(v: vault.Vault) -> None:
    async def scenario() -> None:
        secrets = AsyncVault(v).secret
        with pytest.raises(vault.ConflictError) as personal:
            await secrets.create({"kind": "personal", "value": "v"})
        assert personal.value.message == "Personal secrets cannot have a value"
        with pytest.raises(APIError) as unknown:
            await secrets.create({"colour": "red"})
        assert unknown.value.message == '"colour" is not allowed' and unknown.value.status_code == 400
        doomed = (await secrets.create({})).id
        assert (await secrets.delete(doomed, {"force": True})).id == doomed  # no body schema (A10)

    run(scenario())


def test_list_pages_and_stream(v: vault.Vault) -> None:
    with v.batch():
        ids = [v.secret.create(name=f"n{i}", meta={"even": i % 2 == 0}).id for i in range(12)]

    async def scenario() -> None:
        secrets = AsyncVault(v).secret
        page = await secrets.list({"take": 5, "order": "asc"})
        assert isinstance(page, SecretListResponse) and len(page.items) == 5
        assert page.cursor == page.items[-1].id
        again = secrets.list({"take": 5, "order": "asc", "cursor": page.cursor})
        assert (await again).items[0].id not in {i.id for i in page.items}
        assert await again.json() is await again  # one call, one result, like the SDK's Response
        evens = await secrets.list({"meta": {"even": True}})
        assert len(evens.items) == 6
        with pytest.raises(AssertionError):  # SDK 0.6.0 cannot parse an empty page (no cursor)
            await secrets.list({"cursor": "nosuchcursor"})
        lines = [line async for line in secrets.list({"take": 3}).stream()]
        assert [x.type for x in lines] == [SecretListStreamItemType.ITEM] * 3
        everything = [line.data.id async for line in secrets.list().stream()]
        assert sorted(everything) == sorted(ids)
        with pytest.raises(vault.InvalidRequestError):  # locally stricter: a typo is not ignored
            await secrets.list({"limit": 3})

    run(scenario())


def test_sdk_style_request_objects_and_enums_are_accepted(v: vault.Vault) -> None:
    class Request:
        def to_dict(self) -> dict[str, Any]:
            return {"name": "Obj", "type": "bearer", "value": "tok"}

    class EnumInside:
        def to_dict(self) -> dict[str, Any]:
            return {"type": SecretType.BEARER}  # the SDK takes to_dict() as it is: an enum is not JSON

    async def scenario() -> None:
        secrets = AsyncVault(v).secret
        created = await secrets.create(Request())
        assert (await secrets.fetch(created.id)).type is SecretFetchResponseType.BEARER
        assert v.secret.fetch(created.id).value == "tok"
        in_mapping = await secrets.create({"type": SecretType.JWT})  # enums inside a mapping are converted
        assert (await secrets.fetch(in_mapping.id)).type is SecretFetchResponseType.JWT
        with pytest.raises(TypeError):
            await secrets.create(EnumInside())

    run(scenario())


def test_mint(v: vault.Vault) -> None:
    async def scenario() -> None:
        secrets = AsyncVault(v).secret
        sid = (await secrets.create({"type": "oauth", "value": json.dumps({"accessToken": "at-9"})})).id
        minted = await secrets.mint(sid)
        assert isinstance(minted, SecretMintResponse) and minted.token == "at-9" and minted.expires_at is None
        assert "at-9" not in repr(minted)
        plain = (await secrets.create({"value": "p"})).id
        with pytest.raises(MintRefusedError) as refused:
            await secrets.mint(plain)
        assert refused.value.error == "not_mintable"

    run(scenario())


def test_runs_in_the_given_executor_and_closes_when_asked(v: vault.Vault) -> None:
    seen: list[str] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            seen.append(getattr(fn, "func", fn).__name__)
            return super().submit(fn, *args, **kwargs)

    async def scenario() -> None:
        with Recording(max_workers=1) as pool:
            async with AsyncVault(v, executor=pool, close_vault=True) as av:
                await av.secret.create({"name": "x"})
                assert "AsyncVault" in repr(av)

    run(scenario())
    assert seen == ["create"] and v.closed


def test_a_failure_while_streaming_is_raised(v: vault.Vault) -> None:
    with v.batch():
        for i in range(101):
            v.secret.create(name=f"s{i}")

    async def scenario() -> int:
        seen = 0
        async for _ in AsyncVault(v).secret.list().stream():
            seen += 1
            if seen == 100:
                v.close()  # the next page cannot be read
        return seen

    with pytest.raises(vault.VaultError) as exc:
        run(scenario())
    assert exc.value.code == "VAULT_CLOSED"


def test_a_stream_error_keeps_its_type_and_status() -> None:
    from vault.testing import memory_vault

    async def scenario(v: vault.Vault) -> None:
        lines = AsyncVault(v).secret.list().stream()
        got = 0
        with pytest.raises(vault.VaultClosedError) as info:
            async for _ in lines:
                got += 1
                if got == 100:
                    v.close()  # the next page fails mid-stream: an error line
        assert got == 100 and info.value.code == "VAULT_CLOSED"

    with memory_vault() as v:
        with v.batch():
            for i in range(101):
                v.secret.create(name=f"s{i}")
        run(scenario(v))


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        ("NOT_FOUND", vault.NotFoundError, 404),
        ("BAD_REQUEST", vault.InvalidRequestError, 400),
        ("CONFLICT", vault.ConflictError, 409),
        ("LOCKED", vault.LockTimeoutError, 503),
        ("SOMETHING_ELSE", vault.VaultError, 500),
    ],
)
def test_stream_error_codes_map_back_to_their_error_class(code: str, cls: type[vault.VaultError], status: int) -> None:
    from vault.aio import _error_for

    err = _error_for(code, "m")
    assert type(err) is cls and err.status == status and err.code == code and err.message == "m"


def test_cache_answers_the_first_result_of_the_same_request(v: vault.Vault) -> None:
    """The SDK's ``Response.cache(key)``: one call per request and key on a client."""

    async def scenario() -> None:
        secrets = AsyncVault(v).secret
        sid = (await secrets.create({"name": "c"})).id
        first = await secrets.fetch(sid).cache()
        await secrets.update(sid, {"name": "changed"})
        assert await secrets.fetch(sid).cache() is first and first.name == "c"
        assert (await secrets.fetch(sid).cache("other")).name == "changed"
        assert (await secrets.fetch(sid)).name == "changed"

    run(scenario())
