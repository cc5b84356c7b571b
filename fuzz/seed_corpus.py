"""Seed fuzz/corpus/<target>/ from the test vectors (run after tests/vectors/generate.py).

fuzz_format gets every vector's raw bytes. fuzz_open gets them too (first byte 0: "open
this file") plus, with first byte 1, frame plaintexts that the target seals onto the
reference vault: each reference frame's operations re-numbered to follow it, and a few
hand-made operations. Files named ``crash-*`` (past finds) are never removed.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import corpus_dir, reference_log, vector_bytes

from vault import _format


def frame_seeds() -> list[bytes]:
    _, _, log = reference_log()
    seeds = []
    entries = []
    for ops in log.frames:
        seeds.append(_format.packb([0, log.seq, ops]))
        entries += [op[1] for op in ops if op[0] == _format.OP_PUT]
    last = entries[-1]
    newer = list(last)
    newer[1] = last[1] + 1
    seeds.append(_format.packb([0, log.seq, [[_format.OP_PUT, newer]]]))
    seeds.append(_format.packb([0, log.seq, [[_format.OP_DELETE, last[0]]]]))
    seeds.append(_format.packb([0, log.seq, [[_format.OP_SETTING, "sync", {"cursor": "x", "n": [1, 2.5, None]}]]]))
    return seeds


def checkpoint_seeds() -> list[bytes]:
    """Frame plaintexts for the v3 reference (a checkpoint of alpha, beta, gamma, then a PUT and a TRASH):
    its own frames re-numbered to follow it, a second checkpoint of a new record, a PUT of a checkpoint
    record, and the checkpoint op alone (fuzz_format's decoder)."""
    _, _, log = reference_log("v3-ok-checkpoint-then-tail")
    seeds = [_format.packb([1, log.seq, ops]) for ops in log.frames]
    cp = next(op for ops in log.frames for op in ops if op[0] == _format.OP_CHECKPOINT)
    record = _format.unpackb(cp[5][2])
    fresh = list(record)
    fresh[0], fresh[9] = "z" * 24, None
    seeds.append(_format.packb([1, log.seq, [[7, ["z" * 24], [fresh[2]], [fresh[4]], [None], [_format.packb(fresh)]]]]))
    newer = list(record)
    newer[1] += 1
    seeds.append(_format.packb([1, log.seq, [[_format.OP_PUT, newer]]]))
    seeds.append(_format.packb(cp))
    return seeds


def write(target: str, blobs: list[bytes]) -> int:
    out = corpus_dir(target)
    out.mkdir(parents=True, exist_ok=True)
    keep = {p.name for p in out.glob("crash-*")}
    wanted = {f"seed-{hashlib.sha256(b).hexdigest()[:16]}": b for b in blobs}
    for path in out.iterdir():
        if path.name not in wanted and path.name not in keep:
            path.unlink()
    for name, blob in wanted.items():
        (out / name).write_bytes(blob)
    return len(wanted)


def main() -> None:
    vectors = vector_bytes()
    checkpoints = checkpoint_seeds()
    n1 = write("fuzz_format", vectors + checkpoints[-1:])
    n2 = write(
        "fuzz_open",
        [b"\0" + v for v in vectors] + [b"\1" + s for s in frame_seeds()] + [b"\3" + s for s in checkpoints[:-1]],
    )
    print(f"fuzz_format: {n1} seeds, fuzz_open: {n2} seeds")


if __name__ == "__main__":
    main()
