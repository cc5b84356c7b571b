"""Test helpers for agents that use ChatBotKit's secret API: run them offline against a vault.

* :func:`memory_vault` -- a throwaway :class:`~vault.Vault` for code that needs no file of
  its own (it does have one: see the function's note).
* :func:`transport` -- the stand-in as an ``httpx`` transport: the official SDK answered in
  process, with no socket, no thread and no port.
* :func:`serve` -- the HTTP stand-in on a background thread, as a context manager.
* :func:`seed` -- create a secret the way the cloud would accept it (its rules, its 409s).
* A pytest plugin (entry point ``pytest11``, name ``vault.testing``) with the fixtures
  ``cbk_vault``, ``cbk_client``, ``cbk_seed``, ``cbk_server`` and ``cbk_async_vault``.
  Importing this module never needs pytest, httpx or uvicorn; the fixtures exist only when
  pytest does, and each does work only when a test asks for it. Switch the plugin off with
  ``-p no:vault.testing``.

::

    @pytest.mark.anyio
    async def test_agent_reads_its_key(cbk_client, cbk_seed):
        cbk_seed(alias="weather", type="bearer", value="tok")
        item = await cbk_client.secret.fetch("@weather")     # the official SDK, in process
        ...
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._api import SecretApi
from ._asgi import StandInApp
from ._crypto import KdfParams
from ._http import StandInServer
from ._vault import Clock, Vault, engine_of, init
from .errors import MissingDependencyError

if TYPE_CHECKING:
    import httpx

    from .aio import AsyncVault

__all__ = [
    "CLOUD_BASE_URL",
    "FAST_KDF",
    "StandInServer",
    "memory_vault",
    "new_vault",
    "seed",
    "serve",
    "transport",
]

#: The base URL the ``cbk_client`` fixture gives the SDK: the cloud's own, so the SDK builds exactly
#: the URLs it builds online (``/v1/secret/...``). The transport answers them all in process.
CLOUD_BASE_URL: Final = "https://api.chatbotkit.com"

#: libsodium's minimum Argon2id cost. For tests only: it protects nothing.
FAST_KDF: Final = KdfParams(opslimit=1, memlimit=8192)


def new_vault(
    path: str | os.PathLike[str],
    passphrase: str = "test passphrase",  # noqa: S107 - fast-KDF test vaults protect nothing
    *,
    clock: Clock | None = None,
) -> Vault:
    """``vault.init(path, passphrase, kdf=FAST_KDF)``: a new vault file that unlocks in about a millisecond."""
    return init(path, passphrase, kdf=FAST_KDF, clock=clock)


def _temp_root() -> str | None:
    # RAM-backed when the system has it, so the throwaway file never reaches a disk.
    shm = "/dev/shm"  # noqa: S108 - we create a private 0700 directory inside it, below
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def memory_vault(*, clock: Clock | None = None) -> Vault:
    """A new, empty vault that lives only as long as its handle.

    Honest note: the core vault always has a file. This one is created in a private
    (0700) temporary directory -- on ``/dev/shm`` (RAM) when available, else the system
    temp directory -- with the fast KDF and a random 256-bit passphrase that is never
    stored, so nobody (you included) can open the file again. ``close()`` deletes the
    directory; a handle that is garbage-collected unclosed is cleaned up then, or at exit.
    """
    directory = tempfile.mkdtemp(prefix="cbk-vault-", dir=_temp_root())
    try:
        v = init(Path(directory) / "memory.cbkv", secrets.token_urlsafe(32), kdf=FAST_KDF, clock=clock)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    engine_of(v).on_close(lambda: shutil.rmtree(directory, ignore_errors=True))
    weakref.finalize(v, shutil.rmtree, directory, True)
    return v


@contextmanager
def serve(vault: Vault | None = None, *, token: str | None = None, host: str = "127.0.0.1") -> Iterator[StandInServer]:
    """The stand-in over ``vault`` (default: a :func:`memory_vault`, closed afterwards) on a free port.

    ``token=None`` makes up a random token and *requires* it (unlike ``cbk-vault serve``,
    which accepts any token by default), so a test notices an agent that sends the wrong
    one; pass ``token`` to choose it.
    """
    owned = vault is None
    v = memory_vault() if vault is None else vault
    try:
        with StandInServer(v, host, 0, token or "sk-test-" + secrets.token_hex(16)) as server:
            yield server
    finally:
        if owned:
            v.close()


def transport(v: Vault, *, token: str | None = None) -> httpx.AsyncBaseTransport:
    """The stand-in over ``v`` as an ``httpx`` transport: requests are answered in process.

    No socket, no thread, no port: give it to the official SDK as
    ``ChatBotKit(base_url=..., token=..., transport=transport(v, token=...))``, or to any
    ``httpx.AsyncClient(transport=...)``. The answers are the stand-in's, byte for byte (it is
    the same ASGI application ``cbk-vault serve`` runs; the Host check against DNS rebinding is
    off, as there is no socket to rebind). ``token`` is the bearer token it requires; with
    ``None`` it accepts any bearer token (only the code holding the transport can reach it).
    The access log records the use-time routes' reads with this process as the peer.
    Needs httpx (``pip install 'cbk-vault[testing]'``).
    """
    try:
        http = importlib.import_module("httpx")
    except ImportError:
        raise MissingDependencyError("vault.testing.transport needs httpx: pip install 'cbk-vault[testing]'") from None
    app = StandInApp(v, token=token, any_token=token is None, loopback_only=False, in_process=True)
    made: httpx.AsyncBaseTransport = http.ASGITransport(app=app)
    return made


def seed(v: Vault, request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
    """Create a secret through the cloud's create route and rules; return its id.

    ``request`` (or keyword arguments, or both) is the body the SDK's ``create`` takes:
    ``alias``, ``name``, ``description``, ``blueprintId``, ``kind``, ``type``, ``value``,
    ``config``, ``visibility``, ``meta``. What the cloud would refuse is refused (a personal
    secret with a value is a ``ConflictError``, an unknown key an ``InvalidRequestError``), so a
    test cannot seed a state that its online twin could never reach.
    """
    body = {**(request or {}), **fields}
    return SecretApi(v).create(body)["id"]


def _close_now(client: Any) -> None:
    """Close an SDK client whose transport is in process: its ``aclose()`` never has to wait."""
    closing = client.aclose()
    try:
        closing.send(None)
    except StopIteration:
        return
    closing.close()  # it wanted to wait on something: nothing in process is left to wait for


try:
    import pytest
except ImportError:  # pytest is a test-time extra: without it this module is plain helpers
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

if _HAVE_PYTEST:

    @pytest.fixture
    def cbk_vault(tmp_path: Path) -> Iterator[Vault]:
        """A new, empty vault file in ``tmp_path`` with the fast KDF; closed after the test."""
        with new_vault(tmp_path / "cbk-vault.cbkv") as v:
            yield v

    @pytest.fixture
    def cbk_seed(cbk_vault: Vault) -> Any:
        """``cbk_seed(alias=..., type=..., value=..., ...)``: :func:`seed` into ``cbk_vault``; returns the id."""

        def seed_one(request: Mapping[str, Any] | None = None, /, **fields: Any) -> str:
            return seed(cbk_vault, request, **fields)

        return seed_one

    @pytest.fixture
    def cbk_client(cbk_vault: Vault) -> Iterator[Any]:
        """The official SDK client, ``chatbotkit.ChatBotKit``, answered in process from ``cbk_vault``.

        A plain (synchronous) fixture, so it works with any async test plugin: the ``testing``
        extra brings anyio's (mark the test ``@pytest.mark.anyio``); pytest-asyncio works too.
        It requires a random token, which the client sends; it is closed after the test.
        """
        try:
            chatbotkit = importlib.import_module("chatbotkit")
        except ImportError:
            raise MissingDependencyError(
                "the cbk_client fixture hands out the official SDK: pip install chatbotkit"
            ) from None
        token = "sk-test-" + secrets.token_hex(16)
        client = chatbotkit.ChatBotKit(
            base_url=CLOUD_BASE_URL, token=token, transport=transport(cbk_vault, token=token)
        )
        try:
            yield client
        finally:
            _close_now(client)

    @pytest.fixture
    def cbk_server(cbk_vault: Vault) -> Iterator[StandInServer]:
        """The stand-in serving ``cbk_vault``: ``.base_url``, ``.token`` (required), ``.vault``."""
        with serve(cbk_vault) as server:
            yield server

    @pytest.fixture
    def cbk_async_vault(cbk_vault: Vault) -> AsyncVault:
        """``vault.aio.AsyncVault`` over ``cbk_vault``: the official async SDK's secret calls."""
        from .aio import AsyncVault

        return AsyncVault(cbk_vault)
