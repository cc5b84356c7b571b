from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import vault

# Hypothesis's own time limits (a deadline per example, the too_slow health check) measure how
# busy the machine is, not the code: off for the whole suite (a test's own @settings inherit this).
settings.register_profile("cbk-vault", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cbk-vault")

#: libsodium's minimum Argon2id cost: tests exercise the format, not the KDF's strength.
FAST = vault.KdfParams(opslimit=1, memlimit=8192)
PASSPHRASE = "correct horse battery staple"
#: Exactly the fields of a secret item in the cloud's responses (list, fetch): no value.
CLOUD_ITEM_KEYS = frozenset(
    {
        "id",
        "alias",
        "name",
        "description",
        "blueprintId",
        "kind",
        "type",
        "config",
        "visibility",
        "meta",
        "createdAt",
        "updatedAt",
    }
)


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "test.cbkv"


class Clock:
    """The vault's injected clock: wall time, until a test sets ``source`` (epoch ms)."""

    def __init__(self) -> None:
        self.source: Callable[[], int] | None = None

    def __call__(self) -> int:
        return self.source() if self.source is not None else time.time_ns() // 1_000_000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def v(vault_path: Path, clock: Clock) -> Iterator[vault.Vault]:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST, clock=clock) as handle:
        yield handle
