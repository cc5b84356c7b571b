"""Frozen example vaults: every released format version must keep opening, forever."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import vault
from vault._vault import raw_records

GOLDEN = Path(__file__).parent / "golden"
EXPECTED: dict[str, Any] = json.loads((GOLDEN / "v1-expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_vault_opens_with_exact_contents(name: str, tmp_path: Path) -> None:
    copy = tmp_path / name
    shutil.copyfile(GOLDEN / name, copy)
    copy.chmod(0o600)
    case = EXPECTED[name]
    with vault.open(copy, case["passphrase"]) as v:
        got = [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")]
        assert got == case["secrets"]
        assert raw_records(v).setting("example") == case["settings"]["example"]
        # Still writable by this version.
        v.secret.create(name="new")
    with vault.open(copy, case["passphrase"]) as v:
        assert len(v) == len(case["secrets"]) + 1


def test_golden_passphrase_change_retired_the_old_passphrase(tmp_path: Path) -> None:
    copy = tmp_path / "p.cbkv"
    shutil.copyfile(GOLDEN / "v1-passwd.cbkv", copy)
    with pytest.raises(vault.WrongPassphraseError):
        vault.open(copy, EXPECTED["v1-log.cbkv"]["passphrase"])


def test_v1_writer_still_writes_the_golden_bytes(tmp_path: Path) -> None:
    # While the writer is format v1 it must reproduce the frozen files exactly (seeded
    # randomness and clock). A deliberate writer change regenerates them with a new
    # version; old files stay and keep passing the test above.
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_v1", GOLDEN / "make_v1.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_all(tmp_path)
    for name in EXPECTED:
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name
