"""vault.testing: memory_vault(), serve(), and the pytest plugin's fixtures (run in an inner pytest)."""

from __future__ import annotations

import gc
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

import vault
from vault.testing import FAST_KDF, memory_vault, new_vault, serve

ROOT = Path(__file__).resolve().parents[1]


def test_memory_vault_is_a_vault_in_a_private_directory_removed_on_close() -> None:
    v = memory_vault()
    assert isinstance(v, vault.Vault) and v.kdf == FAST_KDF
    directory = v.path.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    sid = v.secret.create(name="m", value="x").id
    assert v.secret.fetch(sid).value == "x" and len(v) == 1
    with pytest.raises(vault.WrongPassphraseError):
        vault.open(v.path, "a guess")  # the random passphrase is kept nowhere
    v.close()
    assert v.closed and not directory.exists()
    v.close()  # idempotent


def test_memory_vault_context_manager_and_garbage_collection() -> None:
    with memory_vault() as v:
        directory = v.path.parent
        assert directory.exists()
    assert not directory.exists()
    lost = memory_vault()
    directory = lost.path.parent
    del lost
    gc.collect()
    assert not directory.exists()


def test_memory_vaults_are_independent() -> None:
    with memory_vault() as a, memory_vault() as b:
        a.secret.create(name="only-in-a")
        assert len(a) == 1 and len(b) == 0 and a.path != b.path


def test_new_vault_uses_the_fast_kdf(tmp_path: Path) -> None:
    with new_vault(tmp_path / "t.cbkv") as v:
        assert v.kdf == FAST_KDF
    with vault.open(tmp_path / "t.cbkv", "test passphrase") as again:
        assert len(again) == 0


def test_serve_requires_its_own_token_and_owns_a_default_vault() -> None:
    with serve() as server:
        url = f"{server.base_url}/api/v1/secret/list"
        assert not server.accepts_any_token
        assert httpx.get(url, headers={"authorization": "Bearer other"}).status_code == 401
        assert httpx.get(url, headers={"authorization": f"Bearer {server.token}"}).json() == {"items": []}
        directory = server.vault.path.parent
    assert server.vault.closed and not directory.exists()
    with memory_vault() as v, serve(v, token="sk-chosen") as server:
        assert server.token == "sk-chosen" and server.vault is v
    assert v.closed  # closed by the `with`, not by serve(): serve() leaves a given vault open until then


def run_inner_pytest(
    tmp_path: Path, test_source: str, *extra: str, plugin: bool = True
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)  # coverage options of the outer run must not leak in
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(["-p", "vault.testing"] if plugin else []),
            *extra,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_plugin_fixtures_in_a_user_test_suite(tmp_path: Path) -> None:
    result = run_inner_pytest(
        tmp_path,
        """
        import asyncio
        import httpx
        import vault

        def test_vault(cbk_vault):
            assert isinstance(cbk_vault, vault.Vault) and len(cbk_vault) == 0
            cbk_vault.secret.create(alias="k", type="bearer", value="tok")

        def test_fresh_vault_per_test(cbk_vault):
            assert len(cbk_vault) == 0

        def test_server(cbk_server):
            cbk_server.vault.secret.create(alias="k", type="bearer", value="tok")
            r = httpx.get(
                cbk_server.base_url + "/api/v1/secret/@k/fetch",
                headers={"authorization": "Bearer " + cbk_server.token},
            )
            assert r.status_code == 200 and r.json()["type"] == "bearer" and "tok" not in r.text

        def test_async(cbk_async_vault):
            async def go():
                created = await cbk_async_vault.secret.create({"name": "a"})
                return (await cbk_async_vault.secret.fetch(created.id)).name
            assert asyncio.run(go()) == "a"
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_plugin_is_inert_for_tests_that_do_not_ask(tmp_path: Path) -> None:
    result = run_inner_pytest(tmp_path, "def test_plain():\n    assert True\n", "--fixtures")
    assert result.returncode == 0, result.stderr
    for name in ("cbk_vault", "cbk_seed", "cbk_client", "cbk_server", "cbk_async_vault"):
        assert name in result.stdout
    # A test that asks for no fixture gets no vault. Watched from inside the inner run (a scan of
    # the machine's temp roots would also see what other processes create).
    marker = tmp_path / "vault-made"
    (tmp_path / "conftest.py").write_text(
        "import vault.testing\n"
        "_init = vault.testing.init\n"
        "def _spy(*args, **kwargs):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    return _init(*args, **kwargs)\n"
        "vault.testing.init = _spy\n"
    )
    plain = run_inner_pytest(tmp_path, "def test_plain():\n    assert True\n")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert not marker.exists()
    # The spy does see a test that asks for a vault.
    asked = run_inner_pytest(tmp_path, "def test_asks(cbk_vault):\n    assert len(cbk_vault) == 0\n")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert marker.exists()
    (tmp_path / "conftest.py").unlink()
    # The entry point's name switches it off (trivially true until the entry point is installed).
    off = run_inner_pytest(tmp_path, "def test_x(cbk_vault):\n    pass\n", "-p", "no:vault.testing", plugin=False)
    assert off.returncode != 0 and "fixture 'cbk_vault' not found" in off.stdout


def test_the_worked_example_passes_offline() -> None:
    env = {**os.environ}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/agent_offline"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "failed" not in result.stdout
