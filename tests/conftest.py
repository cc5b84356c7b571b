from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def v(vault_path: Path) -> Iterator[vault.Vault]:
    with vault.init(vault_path, PASSPHRASE, kdf=FAST) as handle:
        yield handle
