from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import vault

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
