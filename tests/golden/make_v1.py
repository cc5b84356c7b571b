"""Writes the frozen format-v1 example vaults. Run once per format version; never edit the output.

    python tests/golden/make_v1.py   # rewrites tests/golden/v1-*.cbkv and v1-expected.json

Randomness and the clock are seeded, so the same code writes the same bytes; the
test suite checks both that these files open forever and (while the writer is v1)
that the writer still produces them byte for byte.
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
from vault._vault import raw_records  # noqa: E402

PASSPHRASE = "golden passphrase"
NEW_PASSPHRASE = "golden passphrase, changed"
KDF = vault.KdfParams(opslimit=1, memlimit=8192)


def seeded(seed: int) -> tuple[Callable[[int], bytes], Callable[[], int]]:
    rnd = random.Random(seed)
    ticks = iter(range(1_767_225_600_000, 1_767_225_600_000 + 10_000_000, 1000))
    return rnd.randbytes, ticks.__next__


def build(path: Path, *, compact: bool, passwd: bool) -> dict[str, Any]:
    rng, clock = seeded(2026)
    # _version=1: the frozen v1 writer (the default writer is v2 since the trash and history).
    with vault.init(path, PASSPHRASE, kdf=KDF, clock=clock, _rng=rng, _version=1) as v:
        pay = v.secret.create(
            name="PaymentAPIKey",
            type="bearer",
            description="API key for payment gateway",
            value="sk_live_12345",
            alias="payment",
            meta={"env": "prod", "owner": "billing"},
        )
        v.secret.create(
            name="GitHub OAuth",
            type="oauth",
            kind="personal",
            visibility="protected",
            config={
                "clientId": "gh-client",
                "clientSecret": "gh-secret",
                "scope": "repo",
                "authorizationUrl": "https://github.com/login/oauth/authorize",
            },
        )
        basic = v.secret.create(name="Staging DB", type="basic", value='{"username":"app","password":"p@ss"}')
        v.secret.create(
            name="Unicode ☃", type="plain", value="välue ✓", blueprint_id="bp1", meta={"n": [1, 2.5, True, None]}
        )
        with v.batch():
            v.secret.update(
                pay.id, description="Rotated key", value="sk_live_67890", meta={"$update": {"rotated": True}}
            )
            gone = v.secret.create(name="Temporary")
        v.secret.delete(gone.id)
        v.secret.update(basic.id, alias="staging-db")
        raw_records(v).set_setting("example", {"k": "v"})
        if compact:
            v.compact()
        if passwd:
            v.change_passphrase(NEW_PASSPHRASE, kdf=vault.KdfParams(1, 16384))
        return {
            "secrets": [v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(order="asc")],
            "settings": {"example": raw_records(v).setting("example")},
        }


CASES = {
    "v1-log.cbkv": {"compact": False, "passwd": False, "passphrase": PASSPHRASE},
    "v1-compacted.cbkv": {"compact": True, "passwd": False, "passphrase": PASSPHRASE},
    "v1-passwd.cbkv": {"compact": False, "passwd": True, "passphrase": NEW_PASSPHRASE},
}


def write_all(out: Path) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for name, case in CASES.items():
        target = out / name
        if target.exists():
            target.unlink()
        contents = build(target, compact=bool(case["compact"]), passwd=bool(case["passwd"]))
        expected[name] = {"passphrase": case["passphrase"], **contents}
    return expected


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        expected = write_all(Path(tmp))
        for name in CASES:
            (HERE / name).write_bytes((Path(tmp) / name).read_bytes())
    (HERE / "v1-expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    print("wrote", ", ".join(CASES))
