"""Fuzz target: ``vault.open`` of a mutated vault with the right passphrase (fast KDF), then read it all.

Two kinds of input, told apart by the first byte:

- even: the rest is a whole vault file, opened as it is;
- odd: the rest is the plaintext of one more frame, sealed and chained onto the reference
  vault with its own keys. This is a key-holding writer with a bug: it reaches everything
  after authentication (msgpack, the record rules, the operation replay, value opening),
  which blind mutation of sealed bytes never could.

After ``open`` every secret is listed and fetched (which opens each value box). Only
documented ``VaultError`` subclasses may escape.

Run: ``python fuzz/fuzz_open.py -max_total_time=60`` (see fuzz/README.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris
from _common import REFERENCE_PASSPHRASE, main, reference_log, scratch_dir

with atheris.instrument_imports():
    import vault
    from vault import _crypto, _format

_REF, _KEYS, _TAIL = reference_log()
_DIR = scratch_dir()
_PATH = _DIR / "fuzz.cbkv"


def _seal_onto_reference(plaintext: bytes) -> bytes:
    sealed = _crypto.seal(_KEYS.frame, _format.pad(plaintext, _format.FRAME_PAD))
    body = _format.FRAME_HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed
    return _REF + body + _crypto.mac(_KEYS.chain, _TAIL.tag + body)


def build(data: bytes) -> bytes:
    if not data:
        return b""
    return _seal_onto_reference(data[1:]) if data[0] & 1 else data[1:]


def one_input(data: bytes) -> None:
    blob = build(data)
    fd = os.open(_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, blob)
    finally:
        os.close(fd)
    try:
        with vault.open(_PATH, REFERENCE_PASSPHRASE) as v:
            for item in v.secret.list(take=100).items:
                with contextlib.suppress(vault.CorruptVaultError):
                    v.secret.fetch(item.id)
            len(v)
    except vault.VaultError:
        pass


if __name__ == "__main__":
    main("fuzz_open", one_input)
