"""Every single-bit flip, every byte inversion and every truncation point of a small reference vault.

The reference vault (fast KDF) holds three secrets built by six commits: three creates,
a value update, a description/meta update and a delete. The full contents after each
commit (every field, every value fetched) are recorded as it is built. Then:

- a flipped bit or inverted byte anywhere must give a typed error (``CorruptVaultError``
  or one of its subclasses) or exactly the final contents (damage in the empty key slot
  is ignored); never altered data, never an earlier state;
- a file cut at offset t must give a typed error if t is inside the header or key slots,
  and otherwise exactly the state of the last commit whose frame ends at or before t
  (the torn-tail rule: a cut log is an older copy, which no local format can tell apart
  from a rollback, as SECURITY.md says). Never another state.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import vault
from tests._faults import FAST, PASSPHRASE, SeededRng, State, StepClock, dump, freeze, outcome, record_figure

LOG_START = 584
ALLOWED_ERRORS = (vault.CorruptVaultError,)  # includes UnsupportedVersionError and KdfParamsError


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Tens of thousands of opens: tmpfs when there is one, so the loop measures the code, not the disk.
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=base, prefix="cbkv-tamper-") as d:
        yield Path(d)


def build_reference(path: Path) -> tuple[bytes, list[int], list[State]]:
    """The reference vault's bytes, the file size after each commit (index 0: empty vault), the states."""
    ends: list[int] = []
    states: list[State] = []
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=StepClock(), _rng=SeededRng(99)) as v:

        def commit() -> None:
            ends.append(path.stat().st_size)
            states.append(dump(v))

        commit()
        a = v.secret.create(name="alpha", value="alpha-secret-1", alias="alpha", meta={"env": "prod"})
        commit()
        b = v.secret.create(name="beta", value="beta-secret-1", type="bearer", description="b")
        commit()
        c = v.secret.create(name="gamma", value="gamma-secret-1", kind="personal")
        commit()
        v.secret.update(a.id, value="alpha-secret-2")
        commit()
        v.secret.update(b.id, description="beta, described", meta={"$update": {"k": "v"}})
        commit()
        v.secret.delete(c.id)
        commit()
    assert len(states[-1]) == 2 and len(set(map(freeze, states))) == len(states)
    return path.read_bytes(), ends, states


def test_reference_vault_reopens_and_frames_are_where_expected(scratch: Path) -> None:
    data, ends, states = build_reference(scratch / "ref.cbkv")
    assert ends[0] == LOG_START and ends[-1] == len(data)
    result = outcome(scratch / "copy.cbkv", data)
    assert not isinstance(result, vault.VaultError)
    assert freeze(result) == freeze(states[-1])


def test_every_bit_flip_and_byte_inversion_is_rejected_or_harmless(scratch: Path) -> None:
    data, _ends, states = build_reference(scratch / "ref.cbkv")
    final = freeze(states[-1])
    target = scratch / "t.cbkv"
    errors: dict[str, int] = {}
    harmless: list[int] = []
    tried = 0
    for pos in range(len(data)):
        for mask in (1, 2, 4, 8, 16, 32, 64, 128, 255):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            result = outcome(target, bytes(damaged))
            tried += 1
            if isinstance(result, vault.VaultError):
                assert isinstance(result, ALLOWED_ERRORS), f"byte {pos} ^ {mask:#x}: {result!r}"
                errors[type(result).__name__] = errors.get(type(result).__name__, 0) + 1
            else:
                # Only the unused key slot B (ignored when damaged) may be changed without notice.
                assert freeze(result) == final, f"byte {pos} ^ {mask:#x} gave altered data"
                harmless.append(pos)
    assert set(harmless) <= set(range(328, 584)), "a change outside the empty key slot went unnoticed"
    record_figure("bit_flips", tried, file_bytes=len(data), errors=errors, harmless_in_empty_slot=len(harmless))


def test_every_truncation_point(scratch: Path) -> None:
    data, ends, states = build_reference(scratch / "ref.cbkv")
    target = scratch / "t.cbkv"
    earlier = 0
    for t in range(len(data)):
        result = outcome(target, data[:t])
        if t < LOG_START:
            assert isinstance(result, vault.CorruptVaultError), f"cut at {t}: {result!r}"
            continue
        assert not isinstance(result, vault.VaultError), f"cut at {t}: {result!r}"
        committed = max(k for k, end in enumerate(ends) if end <= t)
        assert freeze(result) == freeze(states[committed]), f"cut at {t}: not the state of commit {committed}"
        earlier += committed < len(states) - 1
    record_figure("truncations", len(data), earlier_state=earlier, commits=len(ends) - 1)


def test_a_zero_filled_tail_reads_as_torn_but_garbage_does_not(scratch: Path) -> None:
    """A crash may leave an extended, never-written region (zeros): torn. Random bytes there: damage."""
    data, _ends, states = build_reference(scratch / "ref.cbkv")
    target = scratch / "t.cbkv"
    for extra in (1, 7, 8, 100, 4096):
        result = outcome(target, data + bytes(extra))
        assert not isinstance(result, vault.VaultError) and freeze(result) == freeze(states[-1])
    result = outcome(target, data + bytes(range(1, 200)))
    assert isinstance(result, vault.CorruptVaultError)
