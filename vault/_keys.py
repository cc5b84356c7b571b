"""Key slots and the keys they unlock: wrap the data key under a passphrase, unwrap it, rewrap it.

A vault's records are sealed under subkeys of one random data key. The passphrase only
wraps that key, in one of two fixed-size key slots after the header, so a passphrase
change rewrites one slot and never the records. No I/O: callers read and write the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from . import _crypto, _format
from ._format import Entry, corrupt
from .errors import WrongPassphraseError

__all__ = [
    "SlotWrite",
    "Unlocked",
    "VaultKeys",
    "Wrapping",
    "compacted_head",
    "create",
    "current_generation",
    "rekeyed_head",
    "rewrap",
    "unlock",
]


class VaultKeys:
    """The unwrapped data key of one vault, its subkeys, and the vault id they are bound to."""

    __slots__ = ("data_key", "keys", "vault_id")

    def __init__(self, data_key: bytes, vault_id: bytes) -> None:
        self.data_key = data_key
        self.vault_id = vault_id
        self.keys = _crypto.Keys.from_data_key(data_key)

    def header_tag(self, header: bytes) -> bytes:
        """The chain's first link: a MAC of the header, so the epoch and vault id cannot be edited."""
        return _crypto.mac(self.keys.chain, _format.header_mac_input(header))

    def check_header(self, head: bytes) -> _format.Header:
        """Decode the header of ``head`` (the file's first LOG_START bytes) and verify its tag."""
        header = _format.decode_header(head)
        if header.vault_id != self.vault_id:
            raise corrupt("the file now holds a different vault")
        tag = head[_format.HEADER_TAG_OFFSET : _format.HEADER_TAG_OFFSET + _crypto.TAG_SIZE]
        if not _crypto.macs_equal(self.header_tag(head[: _format.HEADER_SIZE]), tag):
            raise corrupt("header fails its integrity check")
        return header

    def seal_value(self, record_id: str, value_rev: int, value: str, rng: _crypto.RandomSource) -> bytes:
        """A value box bound to (vault id, record id, value revision): it cannot be moved or replayed."""
        return _crypto.seal(self.keys.value, _format.value_plaintext(self.vault_id, record_id, value_rev, value), rng)

    def open_value(self, entry: Entry) -> str | None:
        if entry.value_box is None:
            return None
        try:
            plaintext = _crypto.open_box(self.keys.value, entry.value_box)
        except _crypto.OpenFailed:
            raise corrupt(f"value of secret {entry.id} fails its integrity check") from None
        return _format.decode_value_plaintext(plaintext, self.vault_id, entry.id, entry.value_rev)

    def lock_in_memory(self) -> bool:
        """Keep the key bytes out of swap where the OS allows it (the unlock agent holds them for hours)."""
        return all([_crypto.lock_bytes(k) for k in (self.data_key, self.keys.chain, self.keys.frame, self.keys.value)])

    def wipe(self) -> None:
        """Overwrite the key bytes in place (best effort, CPython): the unlock agent's lock.

        Python's ``bytes`` are immutable and may have been copied, so this cannot promise that
        no copy survives; it removes the copies this object holds.
        """
        for key in (self.data_key, self.keys.chain, self.keys.frame, self.keys.value):
            _crypto.wipe_bytes(key)

    def __repr__(self) -> str:
        return "VaultKeys(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("vault keys cannot be pickled")


class Wrapping:
    """A key-encryption key derived from a passphrase, with the salt and cost it was derived with.

    Derived before any lock is taken: Argon2id runs for about a second, and other writers
    must not wait for it.
    """

    __slots__ = ("kek", "params", "salt")

    def __init__(self, passphrase: bytes, params: _crypto.KdfParams, rng: _crypto.RandomSource) -> None:
        self.params = params
        self.salt = rng(_crypto.SALT_SIZE)
        self.kek = _crypto.derive_kek(passphrase, self.salt, params)

    def slot(self, keys: VaultKeys, generation: int, rng: _crypto.RandomSource) -> bytes:
        """A key slot holding ``keys``' data key, bound to its vault id and ``generation``."""
        wrapped = _crypto.seal(self.kek, _format.wrap_plaintext(keys.data_key, keys.vault_id, generation), rng)
        return _format.Slot(generation, self.params, self.salt, wrapped).encode()

    def __repr__(self) -> str:
        return f"Wrapping(params={self.params!r}, <hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material cannot be pickled")


def create(
    passphrase: bytes, params: _crypto.KdfParams, rng: _crypto.RandomSource, *, version: int = _format.VERSION
) -> tuple[bytes, VaultKeys]:
    """The first LOG_START bytes of a new, empty vault (header, tag, slot A, empty slot B) and its keys."""
    vault_id = rng(16)
    keys = VaultKeys(rng(_crypto.KEY_SIZE), vault_id)
    header = _format.Header(vault_id, 0, version).encode()
    slot = Wrapping(passphrase, params, rng).slot(keys, 1, rng)
    return header + keys.header_tag(header) + slot + _format.EMPTY_SLOT, keys


@dataclass(frozen=True, slots=True)
class Unlocked:
    keys: VaultKeys
    kdf: _crypto.KdfParams
    #: The generation of the slot that opened: a later re-key writes a higher one.
    generation: int
    #: The index of a slot an interrupted passphrase change left behind (erased on the next write).
    stale_slot: int | None


def unlock(head: bytes, passphrase: bytes) -> Unlocked:
    """Unwrap the data key from the newest intact slot of ``head``. Runs Argon2id once.

    KDF limits were checked when the slot was decoded, before any derivation.
    """
    header = _format.decode_header(head)
    index, slot = _format.choose_slot(head)
    kek = _crypto.derive_kek(passphrase, slot.salt, slot.kdf)
    try:
        wrapped = _crypto.open_box(kek, slot.wrapped)
    except _crypto.OpenFailed:
        raise WrongPassphraseError("wrong passphrase for this vault") from None
    if (
        len(wrapped) != _format.WRAP_PLAIN_SIZE
        or wrapped[32:48] != header.vault_id
        or int.from_bytes(wrapped[48:], "big") != slot.generation
    ):
        # A slot copied from another vault, or replayed from an older generation.
        raise corrupt("key slot does not belong to this vault")
    other = _format.SLOT_OFFSETS[1 - index]
    stale = 1 - index if head[other : other + _format.SLOT_SIZE] != _format.EMPTY_SLOT else None
    return Unlocked(VaultKeys(wrapped[:32], header.vault_id), slot.kdf, slot.generation, stale)


@dataclass(frozen=True, slots=True)
class SlotWrite:
    """A passphrase change as two in-place writes: the new slot (the commit point), then the erase."""

    new_offset: int
    new_slot: bytes
    old_offset: int
    generation: int


def rewrap(head: bytes, keys: VaultKeys, wrapping: Wrapping, rng: _crypto.RandomSource) -> SlotWrite:
    """The slot writes that put the data key under a new passphrase, beside the current slot."""
    index, current = _format.choose_slot(head)
    slot = wrapping.slot(keys, current.generation + 1, rng)
    return SlotWrite(_format.SLOT_OFFSETS[1 - index], slot, _format.SLOT_OFFSETS[index], current.generation + 1)


def current_generation(head: bytes) -> int:
    return _format.choose_slot(head)[1].generation


def rekeyed_head(
    head: bytes,
    new_keys: VaultKeys,
    wrapping: Wrapping,
    epoch: int,
    rng: _crypto.RandomSource,
    *,
    version: int = _format.VERSION,
) -> tuple[bytes, bytes, int]:
    """The prefix of a re-keyed file: header and tag under the new keys, one new slot, one empty slot.

    The new slot's generation is above every slot the file had, so a handle still holding the
    old key can tell a re-key (its header tag no longer verifies, the generation went up) from
    tampering. Returns the prefix, the header tag and the new generation.
    """
    generation = current_generation(head) + 1
    header = _format.Header(new_keys.vault_id, epoch, version).encode()
    tag = new_keys.header_tag(header)
    return header + tag + wrapping.slot(new_keys, generation, rng) + _format.EMPTY_SLOT, tag, generation


def compacted_head(
    head: bytes, keys: VaultKeys, epoch: int, *, version: int = _format.VERSION
) -> tuple[bytes, bytes]:
    """The prefix of a compacted file: the new epoch's header and tag, the current slot, an empty slot.

    ``version`` is the format the new file is written in (compacting a version-1 file upgrades it).
    Returns the prefix and the header tag the new file's chain starts from.
    """
    index, _slot = _format.choose_slot(head)
    offset = _format.SLOT_OFFSETS[index]
    header = _format.Header(keys.vault_id, epoch, version).encode()
    tag = keys.header_tag(header)
    return header + tag + head[offset : offset + _format.SLOT_SIZE] + _format.EMPTY_SLOT, tag
