"""Writes the frozen format-v2 example vaults. Run once per format version; never edit the output.

    python tests/golden/make_v2.py   # rewrites tests/golden/v2-*.cbkv and v2-expected.json

Version 2 adds past revisions (OP_REVISION in compacted files), the trash (OP_TRASH, OP_TRASHED)
and the retention setting. Randomness and the clock are seeded, so the same code writes the same
bytes; tests/test_history.py checks that these files open forever and (while the writer is v2)
that the writer still produces them byte for byte. The retention keeps everything by age
(``historyDays``/``trashDays`` None), so the files read the same whatever the date.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import vault  # noqa: E402

PASSPHRASE = "golden passphrase v2"
KDF = vault.KdfParams(opslimit=1, memlimit=8192)


def seeded(seed: int) -> tuple[Callable[[int], bytes], Callable[[], int]]:
    rnd = random.Random(seed)
    ticks = iter(range(1_780_000_000_000, 1_780_000_000_000 + 10_000_000, 1000))
    return rnd.randbytes, ticks.__next__


def build(path: Path, *, compact: bool) -> dict[str, Any]:
    rng, clock = seeded(2027)
    # _version=2: the frozen v2 writer (the default writer is v3 since the checkpoint).
    with vault.init(path, PASSPHRASE, kdf=KDF, clock=clock, _rng=rng, _version=2) as v:
        v.set_retention(history=5, history_days=None, trash_days=None)
        key = v.secret.create(name="Rotating", type="bearer", value="rot-1", alias="rot", meta={"env": "ROT"})
        for i in range(2, 9):
            v.secret.update(key.id, value=f"rot-{i}")  # 7 updates: 5 past revisions are kept
        v.secret.update(key.id, description="renamed", type="plain")  # a type change keeps the value
        v.secret.restore(key.id, 5)
        gone = v.secret.create(name="Deleted", value="in the trash", alias="gone")
        v.secret.update(gone.id, value="in the trash, v2")
        v.secret.delete(gone.id)
        purged = v.secret.create(name="Purged", value="gone for good")
        v.secret.delete(purged.id, purge=True)
        back = v.secret.create(name="Undeleted", value="back", alias="back")
        v.secret.delete(back.id)
        v.secret.undelete(back.id)
        v.secret.create(name="Plain", kind="personal")
        if compact:
            v.compact()
        live = v.secret.list(order="asc")
        return {
            "secrets": [v.secret.fetch(s.id).to_dict(reveal=True) for s in live],
            "history": {
                s.id: [[h.revision, v.secret.fetch(s.id, revision=h.revision).value] for h in v.secret.history(s.id)]
                for s in live
            },
            "trash": [t.id for t in v.secret.list(deleted=True, order="asc")],
            "retention": v.retention().to_setting(),
        }


CASES = {"v2-log.cbkv": {"compact": False}, "v2-compacted.cbkv": {"compact": True}}


def write_all(out: Path) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for name, case in CASES.items():
        target = out / name
        if target.exists():
            target.unlink()
        expected[name] = {"passphrase": PASSPHRASE, **build(target, compact=bool(case["compact"]))}
    return expected


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        expected = write_all(Path(tmp))
        for name in CASES:
            (HERE / name).write_bytes((Path(tmp) / name).read_bytes())
    (HERE / "v2-expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    print("wrote", ", ".join(CASES))
