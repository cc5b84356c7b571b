"""Crash safety of the upgrade: the first write to a v1 or v2 file rewrites it in the current version
(3, with a checkpoint; temp, fsync, rename, directory fsync). A death after any I/O call leaves the old
file as it was or the new file with the write, whole, in every crash image (tests/_faults.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import vault
from tests._faults import Died, FaultIO, dump, freeze

GOLDEN = Path(__file__).parent / "golden"
CASE = json.loads((GOLDEN / "v1-expected.json").read_text())["v1-log.cbkv"]
#: (golden file, its passphrase, the alias the write updates, the file's version)
SOURCES = [
    ("v1-log.cbkv", CASE["passphrase"], "payment", 1),
    ("v2-log.cbkv", json.loads((GOLDEN / "v2-expected.json").read_text())["v2-log.cbkv"]["passphrase"], "rot", 2),
]


def _clock() -> int:
    return 1_800_000_000_000


def _write(v: vault.Vault, alias: str = "payment") -> None:
    pay = v.secret.fetch(f"@{alias}")
    v.secret.update(pay.id, value="sk_after_upgrade")


@pytest.mark.parametrize(("name", "passphrase", "alias", "old"), SOURCES)
def test_crash_after_every_io_call_of_the_upgrade(
    tmp_path: Path, name: str, passphrase: str, alias: str, old: int
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    shutil.copyfile(GOLDEN / name, base / "v.cbkv")
    (base / "v.cbkv").chmod(0o600)
    with vault.open(base / "v.cbkv", passphrase) as v:
        before = freeze(dump(v))
    dry = tmp_path / "dry"
    shutil.copytree(base, dry)
    io = FaultIO(armed=False)
    with vault.open(dry / "v.cbkv", passphrase, _io=io, clock=_clock) as v:
        io.arm()
        _write(v, alias)
        total = io.count
        after = freeze(dump(v))
    assert (dry / "v.cbkv").read_bytes()[8] == 3 and total >= 5
    seen = {"old": 0, "new": 0}
    for n in range(1, total + 1):
        work = tmp_path / f"run{n}"
        shutil.copytree(base, work)
        io = FaultIO(die_at=n, directory=work, armed=False)
        v = vault.open(work / "v.cbkv", passphrase, _io=io, clock=_clock)
        io.arm()
        with pytest.raises(Died):
            _write(v, alias)
        io.bury()
        for k, image in enumerate(io.images):
            where = tmp_path / f"img{n}-{k}"
            image.restore(where)
            with vault.open(where / "v.cbkv", passphrase) as again:
                state = freeze(dump(again))
                assert state in (before, after), f"died after call {n} ({io.calls[n - 1]}), image {image.kind}"
                seen["old" if state == before else "new"] += 1
                version = (where / "v.cbkv").read_bytes()[8]
                assert version == (old if state == before else 3)
                again.secret.create(name="after-crash")  # and it takes a write
        shutil.rmtree(work)
    assert seen["old"] and seen["new"]


@pytest.mark.parametrize("fail_at", range(1, 12))
def test_an_io_error_in_the_upgrade_leaves_the_v1_file(tmp_path: Path, fail_at: int) -> None:
    path = tmp_path / "v.cbkv"
    shutil.copyfile(GOLDEN / "v1-log.cbkv", path)
    path.chmod(0o600)
    before = path.read_bytes()
    io = FaultIO(fail_at=fail_at, armed=False)
    v = vault.open(path, CASE["passphrase"], _io=io)
    io.arm()
    try:
        _write(v)
    except vault.StorageError:
        assert io.failed
        if path.read_bytes()[8] == 1:
            assert path.read_bytes() == before
        v.close()
        return
    finally:
        if not v.closed:
            v.close()
    with vault.open(path, CASE["passphrase"]) as again:
        assert again.secret.fetch("@payment").value == "sk_after_upgrade"
