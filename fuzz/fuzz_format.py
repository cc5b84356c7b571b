"""Fuzz target: the pre-authentication decoder (header, key slots, frame framing, torn-tail rule),
and the post-authentication decoders of records and of the v3 checkpoint (its columns, and its
packed records applied to an index and decoded on use).

These are the only parsers that see attacker bytes before any MAC is checked, plus the
strict msgpack/padding decoders that run after authentication. Only documented
``VaultError`` subclasses may escape; anything else (IndexError, struct.error, a
MemoryError from believing a length) is a crash.

Run: ``python fuzz/fuzz_format.py -max_total_time=60`` (libFuzzer flags; see fuzz/README.md).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris
from _common import main, reference_vault

with atheris.instrument_imports():
    from vault import _crypto, _format, _index, _log
    from vault.errors import VaultError

# The reference vault's keys are fixed (its generator is seeded), so mutations of its frames
# are checked against the right chain key: a mutated frame gets as far as the MAC check.
_REF = reference_vault()
_SLOT = _format.decode_slot(_REF[72:328])
assert _SLOT is not None
_KEK = _crypto.derive_kek(b"vector passphrase", _SLOT.salt, _SLOT.kdf)
_KEYS = _crypto.Keys.from_data_key(_crypto.open_box(_KEK, _SLOT.wrapped)[:32])


def one_input(data: bytes) -> None:
    try:
        header = _format.decode_header(data)
    except VaultError:
        header = None
    with contextlib.suppress(VaultError):
        _format.choose_slot(data)
    for offset in _format.SLOT_OFFSETS:
        with contextlib.suppress(VaultError):
            _format.decode_slot(data[offset : offset + _format.SLOT_SIZE].ljust(_format.SLOT_SIZE, b"\0"))
    if header is not None:
        with contextlib.suppress(VaultError):
            _log.read_log(_KEYS, data, _format.LOG_START, data[40:72], header.epoch, 0)
    _log.tail_is_torn(data)
    # The post-authentication decoders, on raw bytes: strict, and typed on failure.
    for block in (_format.FRAME_PAD, _format.VALUE_PAD):
        with contextlib.suppress(VaultError):
            _format.unpad(data, block)
    try:
        obj = _format.unpackb(data)
    except VaultError:
        return
    for decode in (_format.decode_entry,):
        with contextlib.suppress(VaultError):
            decode(obj)
    with contextlib.suppress(VaultError):
        _format.decode_frame_plaintext(_format.pad(data, _format.FRAME_PAD), 0, 0)
    with contextlib.suppress(VaultError):
        _format.decode_value_plaintext(_format.pad(data, _format.VALUE_PAD), b"\0" * 16, "a" * 24, 1)
    with contextlib.suppress(ValueError):
        _format.json_copy_checked(obj)
    if type(obj) is list and obj:
        # The input as one op of a version-3 frame (a CHECKPOINT when it starts with 7), applied as
        # open applies it (bulk) and as catch-up does; then every record it indexed is decoded.
        for bulk in (True, False):
            index = _index.Index()
            with contextlib.suppress(VaultError):
                index.apply_logged([obj], bulk=bulk, version=_format.VERSION)
                if bulk:
                    index.resort()
                for _entry in index.iter_live():
                    pass
                index.page(ascending=False, cursor=None, count=5)


if __name__ == "__main__":
    main("fuzz_format", one_input)
