"""Fuzz target: ``vault.open`` of a mutated vault with the right passphrase (fast KDF), then read it all.

Two kinds of input, told apart by the first byte:

- even: the rest is a whole vault file, opened as it is;
- odd: the rest is the plaintext of one more frame, sealed and chained onto a reference
  vault with its own keys: the format-v1 reference (``ok-reference``), or with bit 1 of the
  first byte set the format-v3 one (``v3-ok-checkpoint-then-tail``: a checkpoint and its log
  tail, so a frame can hold CHECKPOINT ops and change checkpoint records). This is a
  key-holding writer with a bug: it reaches everything after authentication (msgpack, the
  record rules, the operation replay, the checkpoint's columns and its records decoded on use,
  value opening), which blind mutation of sealed bytes never could.

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

_REFS = {0: reference_log(), 2: reference_log("v3-ok-checkpoint-then-tail")}
_DIR = scratch_dir()
_PATH = _DIR / "fuzz.cbkv"


def _seal_onto_reference(which: int, plaintext: bytes) -> bytes:
    ref, keys, tail = _REFS[which]
    sealed = _crypto.seal(keys.frame, _format.pad(plaintext, _format.FRAME_PAD))
    body = _format.FRAME_HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed
    return bytes(ref) + body + _crypto.mac(keys.chain, tail.tag + body)


def build(data: bytes) -> bytes:
    if not data:
        return b""
    return _seal_onto_reference(data[0] & 2, data[1:]) if data[0] & 1 else data[1:]


def one_input(data: bytes) -> None:
    blob = build(data)
    fd = os.open(_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, blob)
    finally:
        os.close(fd)
    try:
        with vault.open(_PATH, REFERENCE_PASSPHRASE) as v:
            with contextlib.suppress(vault.CorruptVaultError):
                # Listing decodes every checkpoint record on the page; one that fails is typed.
                for item in v.secret.list(take=100).items:
                    with contextlib.suppress(vault.CorruptVaultError):
                        v.secret.fetch(item.id)
            len(v)
    except vault.VaultError:
        pass


if __name__ == "__main__":
    main("fuzz_open", one_input)
