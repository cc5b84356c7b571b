"""Shared parts of the fuzz targets: the memory cap, the escape rule, corpus replay and the reference vault.

Every target calls :func:`main` with its one-input function. ``main`` caps the address
space (RLIMIT_AS), replays the committed corpus ``fuzz/corpus/<target>/`` in-process
first (seeded from tests/vectors plus every past crash), then hands over to libFuzzer
through atheris with whatever libFuzzer flags were given (``-max_total_time=30``,
``-runs=100000``, a corpus directory...).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Room for the interpreter, libFuzzer and the KDF's 1 GiB cap, and no more: a decoder that
#: believes a hostile length and allocates for it dies here instead of swapping the machine.
MEMORY_CAP = int(os.environ.get("CBKV_FUZZ_MEMORY_CAP", str(3 << 30)))

REFERENCE_PASSPHRASE = "vector passphrase"


def cap_memory() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_CAP if hard == resource.RLIM_INFINITY else min(MEMORY_CAP, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def corpus_dir(target: str) -> Path:
    return FUZZ_DIR / "corpus" / target


def vector_bytes() -> list[bytes]:
    """The raw vault bytes of every committed test vector (the corpus seeds)."""
    out = []
    for case in sorted((ROOT / "tests" / "vectors" / "cases").glob("*.vec")):
        _, _, data = case.read_bytes().partition(b"\n\n")
        out.append(data)
    return out


def reference_vault(name: str = "ok-reference") -> bytes:
    """A committed vector's vault bytes: ``ok-reference`` (format v1) or ``v3-ok-checkpoint-then-tail`` (v3)."""
    for case in sorted((ROOT / "tests" / "vectors" / "cases").glob(f"{name}.vec")):
        return case.read_bytes().partition(b"\n\n")[2]
    raise FileNotFoundError(f"tests/vectors/cases/{name}.vec (run tests/vectors/generate.py)")


def reference_log(name: str = "ok-reference") -> tuple[bytes, Any, Any]:
    """A reference vault, its subkeys (unlocked with the reference passphrase) and its verified log.

    vault is imported here, not at module level, so a target's ``atheris.instrument_imports()``
    block is the first to import it.
    """
    from vault import _crypto, _format, _log

    ref = reference_vault(name)
    slot = _format.decode_slot(ref[_format.SLOT_OFFSETS[0] : _format.SLOT_OFFSETS[1]])
    assert slot is not None
    kek = _crypto.derive_kek(REFERENCE_PASSPHRASE.encode(), slot.salt, slot.kdf)
    keys = _crypto.Keys.from_data_key(_crypto.open_box(kek, slot.wrapped)[:32])
    tag = ref[_format.HEADER_TAG_OFFSET : _format.SLOT_OFFSETS[0]]
    epoch = _format.decode_header(ref).epoch
    return ref, keys, _log.read_log(keys, ref, _format.LOG_START, tag, epoch, 0)


def replay(target: str, one: Callable[[bytes], None]) -> int:
    """Run every committed corpus file through the target; a failure here is a regression."""
    count = 0
    for path in sorted(corpus_dir(target).glob("*")):
        if path.is_file():
            one(path.read_bytes())
            count += 1
    return count


def scratch_dir() -> Path:
    # tmpfs when there is one: the open target writes one small file per input.
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="cbkv-fuzz-", dir=base))


def main(target: str, one: Callable[[bytes], None]) -> None:
    import atheris

    cap_memory()
    replayed = replay(target, one)
    print(f"{target}: replayed {replayed} corpus inputs", file=sys.stderr, flush=True)
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


def write_seeds(target: str, seeds: dict[str, bytes]) -> int:
    """Replace ``seed-*`` files of a target's corpus with ``seeds`` (name -> bytes); ``crash-*`` stay forever."""
    out = corpus_dir(target)
    out.mkdir(parents=True, exist_ok=True)
    for path in out.glob("seed-*"):
        path.unlink()
    for name, blob in seeds.items():
        (out / f"seed-{name}").write_bytes(blob)
    return len(seeds)
