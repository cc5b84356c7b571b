"""Test helpers for agents that use ChatBotKit's secret API: run them offline against a vault.

* :func:`memory_vault` -- a throwaway :class:`~vault.Vault` for code that needs no file of
  its own (it does have one: see the function's note).
* :func:`serve` -- the HTTP stand-in on a background thread, as a context manager.
* A pytest plugin (entry point ``pytest11``, name ``vault.testing``) with the fixtures
  ``cbk_vault``, ``cbk_server`` and ``cbk_async_vault``. Importing this module never needs
  pytest; the fixtures exist only when pytest does, and each does work only when a test
  asks for it. Switch the plugin off with ``-p no:vault.testing``.

::

    def test_agent_reads_its_key(cbk_server):
        cbk_server.vault.secret.create(alias="weather", type="bearer", value="tok")
        agent = Agent(base_url=cbk_server.base_url, token=cbk_server.token)
        ...
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ._crypto import KdfParams
from ._http import StandInServer
from ._vault import Clock, Vault, engine_of, init

if TYPE_CHECKING:
    from .aio import AsyncVault

__all__ = ["FAST_KDF", "StandInServer", "memory_vault", "new_vault", "serve"]

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
    def cbk_server(cbk_vault: Vault) -> Iterator[StandInServer]:
        """The stand-in serving ``cbk_vault``: ``.base_url``, ``.token`` (required), ``.vault``."""
        with serve(cbk_vault) as server:
            yield server

    @pytest.fixture
    def cbk_async_vault(cbk_vault: Vault) -> AsyncVault:
        """``vault.aio.AsyncVault`` over ``cbk_vault``: the official async SDK's secret calls."""
        from .aio import AsyncVault

        return AsyncVault(cbk_vault)
