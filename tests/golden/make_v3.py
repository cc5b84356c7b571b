"""Writes the frozen format-v3 example vaults. Run once per format version; never edit the output.

    python tests/golden/make_v3.py   # rewrites tests/golden/v3-*.cbkv and v3-expected.json

Version 3 adds the checkpoint (OP_CHECKPOINT) that compaction writes: live records without past
revisions, indexed in columns and kept packed until used. ``v3-checkpoint.cbkv`` is a compacted vault
(a checkpoint beside version 2's REVISION/PUT/TRASHED records); ``v3-tail.cbkv`` is the same vault
with commits after the compaction (the log tail: a PUT and a TRASH of checkpoint records, a new
record). Randomness and the clock are seeded, so the same code writes the same bytes;
tests/test_checkpoint.py checks that these files open forever and (while the writer is v3) that the
writer still produces them byte for byte. The retention keeps everything by age, so the files read the
same whatever the date.
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

PASSPHRASE = "golden passphrase v3"
KDF = vault.KdfParams(opslimit=1, memlimit=8192)


def seeded(seed: int) -> tuple[Callable[[int], bytes], Callable[[], int]]:
    rnd = random.Random(seed)
    ticks = iter(range(1_790_000_000_000, 1_790_000_000_000 + 10_000_000, 1000))
    return rnd.randbytes, ticks.__next__


def build(path: Path, *, tail: bool) -> dict[str, Any]:
    rng, clock = seeded(2028)
    with vault.init(path, PASSPHRASE, kdf=KDF, clock=clock, _rng=rng, _version=3) as v:
        v.set_retention(history=3, history_days=None, trash_days=None)
        ids = [
            v.secret.create(
                name=f"Service {i}",
                type="bearer" if i % 2 else "plain",
                value=f"value-{i}",
                alias=f"svc-{i}" if i % 3 == 0 else None,
                meta={"env": "prod", "n": i} if i % 4 else None,
            ).id
            for i in range(12)
        ]
        v.secret.create(name="Service 1", description="a second secret with one name")  # names are not unique
        v.secret.create(name="No value", kind="personal")
        v.secret.update(ids[5], value="value-5, rotated")  # past revisions: written as REVISION + PUT
        v.secret.update(ids[5], description="rotated twice")
        v.secret.delete(ids[7])  # the trash: TRASHED
        v.compact()  # everything else: one CHECKPOINT
        if tail:
            v.secret.update(ids[0], value="value-0, after the checkpoint", alias="svc-zero")  # PUT, rev 2
            v.secret.delete(ids[1])  # TRASH of a checkpoint record
            v.secret.delete(ids[2], purge=True)  # DELETE of a checkpoint record
            v.secret.create(name="After", value="written to the tail", alias="svc-0")  # the freed alias
        live = v.secret.list(order="asc", take=100)
        return {
            "secrets": [v.secret.fetch(s.id).to_dict(reveal=True) for s in live],
            "history": {
                s.id: [[h.revision, v.secret.fetch(s.id, revision=h.revision).value] for h in v.secret.history(s.id)]
                for s in live
            },
            "trash": [t.id for t in v.secret.list(deleted=True, order="asc")],
            "retention": v.retention().to_setting(),
        }


CASES = {"v3-checkpoint.cbkv": {"tail": False}, "v3-tail.cbkv": {"tail": True}}


def write_all(out: Path) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for name, case in CASES.items():
        target = out / name
        if target.exists():
            target.unlink()
        expected[name] = {"passphrase": PASSPHRASE, **build(target, tail=bool(case["tail"]))}
    return expected


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        expected = write_all(Path(tmp))
        for name in CASES:
            (HERE / name).write_bytes((Path(tmp) / name).read_bytes())
    (HERE / "v3-expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    print("wrote", ", ".join(CASES))
