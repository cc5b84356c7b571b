"""vault.testing in process: transport(), seed(), the cbk_client / cbk_seed fixtures, and the README's example.

The README's example test is run as it is written there, in a fresh temporary directory,
by pytest in a subprocess, with nothing but the installed package: no conftest, no
``-p`` option, no ``PYTHONPATH``. docs/TESTING.md carries the same block; both are checked.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import vault
from tests.test_testing import run_inner_pytest
from vault.testing import CLOUD_BASE_URL, seed, transport

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MARK = re.compile(r"<!-- example: (\S+) .*?-->\n```python\n(.*?)```\n", re.S)


def readme_example(path: Path) -> tuple[str, str]:
    """The file name and text of the one marked example block in ``path``."""
    found = EXAMPLE_MARK.findall(path.read_text())
    assert len(found) == 1, f"{path.name}: expected one '<!-- example: ... -->' block, found {len(found)}"
    return found[0]


def test_transport_answers_in_process_with_no_socket_and_no_thread(v: vault.Vault) -> None:
    v.secret.create(alias="k", type="bearer", value="tok")
    made = transport(v, token="sk-chosen")
    assert isinstance(made, httpx.AsyncBaseTransport)

    class NoSockets(socket.socket):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("the in-process transport opened a socket")

    async def scenario() -> None:
        threads = threading.active_count()
        real = socket.socket
        socket.socket = NoSockets  # type: ignore[misc]
        try:
            async with httpx.AsyncClient(transport=made, base_url="https://api.chatbotkit.com") as client:
                ok = await client.get("/v1/secret/@k/fetch", headers={"authorization": "Bearer sk-chosen"})
                wrong = await client.get("/v1/secret/@k/fetch", headers={"authorization": "Bearer other"})
                none = await client.get("/api/v1/secret/list")
                created = await client.post(
                    "/api/v1/secret/create", json={"name": "n"}, headers={"authorization": "Bearer sk-chosen"}
                )
                assert threading.active_count() == threads
        finally:
            socket.socket = real  # type: ignore[misc]
        assert ok.status_code == 200 and ok.json()["type"] == "bearer" and "tok" not in ok.text
        assert wrong.status_code == 401 and none.status_code == 401
        assert created.status_code == 200 and v.secret.fetch(created.json()["id"]).name == "n"

    asyncio.run(scenario())


def test_transport_without_a_token_takes_any_bearer_token_but_not_none(v: vault.Vault) -> None:
    async def scenario() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=transport(v), base_url="http://in-process") as client:
            anyone = await client.get("/v1/secret/list", headers={"authorization": "Bearer whatever"})
            nobody = await client.get("/v1/secret/list")
            return anyone.status_code, nobody.status_code

    assert asyncio.run(scenario()) == (200, 401)


def test_transport_is_the_official_sdks_transport(v: vault.Vault) -> None:
    chatbotkit = pytest.importorskip("chatbotkit", reason="the official chatbotkit SDK is not installed")
    sid = seed(v, alias="weather", type="bearer", value="tok", meta={"env": "prod"})

    async def scenario() -> None:
        client = chatbotkit.ChatBotKit(base_url=CLOUD_BASE_URL, token="t", transport=transport(v, token="t"))
        async with client:
            item = await client.secret.fetch("@weather")
            assert item.id == sid and item.meta == {"env": "prod"}
            with pytest.raises(chatbotkit.APIError) as denied:
                await client.extend(token="wrong").secret.fetch("@weather")
            assert denied.value.status_code == 401

    asyncio.run(scenario())


def test_seed_applies_the_clouds_create_rules(v: vault.Vault) -> None:
    sid = seed(v, {"alias": "a", "type": "oauth"}, config={"clientSecret": "cs"}, blueprintId=None)
    assert v.secret.fetch("@a").id == sid and v.secret.fetch(sid).type == "oauth"
    with pytest.raises(vault.ConflictError):
        seed(v, kind="personal", value="not allowed in the cloud")
    with pytest.raises(vault.InvalidRequestError):
        seed(v, colour="red")
    assert len(v) == 1


def test_cbk_client_and_cbk_seed_in_a_user_test_suite(tmp_path: Path) -> None:
    pytest.importorskip("chatbotkit", reason="the official chatbotkit SDK is not installed")
    result = run_inner_pytest(
        tmp_path,
        """
        import chatbotkit
        import pytest

        seen = []

        @pytest.mark.anyio
        async def test_client(cbk_client, cbk_seed, cbk_vault):
            sid = cbk_seed(alias="k", type="bearer", value="tok")
            assert isinstance(cbk_client, chatbotkit.ChatBotKit)
            assert cbk_client.options.token.startswith("sk-test-")  # a random token, required
            item = await cbk_client.secret.fetch("@k")
            assert item.id == sid and cbk_vault.secret.fetch(sid).value == "tok"
            seen.append(cbk_client)

        def test_closed_after_the_test_and_fresh_each_time(cbk_client):
            import asyncio
            assert seen and seen[0] is not cbk_client
            with pytest.raises(RuntimeError):  # the first test's client was closed at teardown
                asyncio.run(seen[0].secret.list().json())

        @pytest.mark.anyio
        async def test_fresh_vault(cbk_client):
            with pytest.raises(AssertionError):  # SDK 0.6.0 cannot parse the cloud's empty page
                await cbk_client.secret.list()
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_readme_example_passes_on_the_first_try(tmp_path: Path) -> None:
    """The README's example, as written, in an empty directory: ``pytest`` finds the plugin by itself."""
    pytest.importorskip("chatbotkit", reason="the example uses the official chatbotkit SDK")
    if not any(ep.name == "vault.testing" for ep in importlib.metadata.entry_points(group="pytest11")):
        pytest.skip("cbk-vault is not installed (pip install -e .): its pytest11 entry point is what the example uses")
    name, text = readme_example(ROOT / "README.md")
    assert readme_example(ROOT / "docs" / "TESTING.md") == (name, text), "docs/TESTING.md's copy drifted"
    project = tmp_path / "fresh project"
    project.mkdir()
    (project / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH", "COV_", "COVERAGE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", name],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^2 passed", result.stdout, re.M), result.stdout


def test_vault_testing_imports_without_pytest_httpx_uvicorn_or_the_sdk() -> None:
    """It is a pytest11 plugin loaded in every user's test run: its import must need none of them."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        BLOCKED = ("pytest", "httpx", "uvicorn", "chatbotkit", "anyio", "_pytest", "httpcore")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import vault.testing, vault.aio
        v = vault.testing.memory_vault()
        try:
            vault.testing.transport(v)
        except vault.MissingDependencyError as exc:
            print("transport:", exc)
        sid = vault.testing.seed(v, name="x")
        assert v.secret.fetch(sid).name == "x"
        assert not hasattr(vault.testing, "cbk_client")  # no pytest, no fixtures
        print("ok", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "transport: vault.testing.transport needs httpx" in result.stdout
    assert "ok []" in result.stdout
