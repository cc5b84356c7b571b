"""The only module that touches libsodium (through PyNaCl).

Everything here works on ``bytes`` and returns ``bytes``; no nacl type crosses the
module boundary. Callers get no choice of cipher, nonce or salt: the one knob is the
key-derivation cost, :class:`KdfParams`.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NoReturn

import nacl.bindings as _sodium
import nacl.exceptions as _nacl_exc

from .errors import InvalidRequestError, KdfParamsError

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "MAC_SIZE",
    "SALT_SIZE",
    "KdfParams",
    "Keys",
    "KDF_PRESETS",
    "OpenFailed",
    "check_kdf_limits",
    "derive_kek",
    "normalize_passphrase",
    "random_bytes",
    "resolve_kdf",
    "seal",
    "open_box",
    "mac",
    "mac_chained",
    "macs_equal",
]

KEY_SIZE = 32
NONCE_SIZE = 24
MAC_SIZE = 16
SALT_SIZE = 16
TAG_SIZE = 32

#: libsodium's own bounds for Argon2id are the floor: below them libsodium refuses.
OPSLIMIT_MIN = int(_sodium.crypto_pwhash_argon2id_OPSLIMIT_MIN)
MEMLIMIT_MIN = int(_sodium.crypto_pwhash_argon2id_MEMLIMIT_MIN)
#: Caps on what a file may ask for. A hostile vault could otherwise make open()
#: run for hours or allocate terabytes before the passphrase is even checked
#: (KeePassDX #2640). The caps admit libsodium's "sensitive" preset (4, 1 GiB)
#: with room to spare, and writers are held to the same caps so we never write a
#: vault we would refuse to read (KeePassDX #2630).
OPSLIMIT_CAP = 16
MEMLIMIT_CAP = 1 << 30

RandomSource = Callable[[int], bytes]


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost: ``opslimit`` passes over ``memlimit`` bytes of memory.

    Use a preset name ("interactive", "moderate", "sensitive") where you can.
    ``memlimit`` must be a multiple of 1024 (the file stores KiB).
    """

    opslimit: int
    memlimit: int

    def __post_init__(self) -> None:
        try:
            check_kdf_limits(self.opslimit, self.memlimit)
        except KdfParamsError as exc:
            raise InvalidRequestError(exc.message) from None


def check_kdf_limits(opslimit: object, memlimit: object) -> None:
    """Refuse a cost outside [floor, cap] before any work is done."""
    # bool is an int subclass; a True opslimit is a type confusion, not 1.
    if type(opslimit) is not int or type(memlimit) is not int:
        raise KdfParamsError("KDF parameters must be integers")
    if not OPSLIMIT_MIN <= opslimit <= OPSLIMIT_CAP:
        raise KdfParamsError(f"KDF opslimit {opslimit} is outside the allowed range {OPSLIMIT_MIN}..{OPSLIMIT_CAP}")
    if not MEMLIMIT_MIN <= memlimit <= MEMLIMIT_CAP:
        raise KdfParamsError(f"KDF memlimit {memlimit} is outside the allowed range {MEMLIMIT_MIN}..{MEMLIMIT_CAP}")
    if memlimit % 1024:
        raise KdfParamsError(f"KDF memlimit {memlimit} is not a multiple of 1024")


KDF_PRESETS: dict[str, KdfParams] = {
    "interactive": KdfParams(
        int(_sodium.crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE),
        int(_sodium.crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE),
    ),
    "moderate": KdfParams(
        int(_sodium.crypto_pwhash_argon2id_OPSLIMIT_MODERATE),
        int(_sodium.crypto_pwhash_argon2id_MEMLIMIT_MODERATE),
    ),
    "sensitive": KdfParams(
        int(_sodium.crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE),
        int(_sodium.crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE),
    ),
}


def resolve_kdf(kdf: str | KdfParams) -> KdfParams:
    if isinstance(kdf, KdfParams):
        return kdf
    if isinstance(kdf, str) and kdf in KDF_PRESETS:
        return KDF_PRESETS[kdf]
    raise InvalidRequestError("kdf must be one of 'interactive', 'moderate', 'sensitive' or a vault.KdfParams")


def normalize_passphrase(passphrase: str | bytes | bytearray) -> bytes:
    """NFC-normalise text passphrases so the same words typed on two systems unlock the same vault."""
    if isinstance(passphrase, str):
        data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    elif isinstance(passphrase, (bytes, bytearray)):
        data = bytes(passphrase)
    else:
        raise InvalidRequestError("passphrase must be str or bytes")
    if not data:
        raise InvalidRequestError("passphrase must not be empty")
    return data


def derive_kek(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    """Argon2id (v1.3) key-encryption key. Limits are checked again: this is the expensive call."""
    check_kdf_limits(params.opslimit, params.memlimit)
    if len(salt) != SALT_SIZE:
        raise KdfParamsError("KDF salt has the wrong length")
    return bytes(
        _sodium.crypto_pwhash_alg(
            KEY_SIZE,
            passphrase,
            salt,
            params.opslimit,
            params.memlimit,
            _sodium.crypto_pwhash_ALG_ARGON2ID13,
        )
    )


class OpenFailed(Exception):
    """Internal: a box did not authenticate. Callers translate it to the right VaultError."""


def seal(key: bytes, plaintext: bytes, rng: RandomSource = random_bytes) -> bytes:
    """``nonce || secretbox(plaintext)``, with a fresh random 24-byte nonce.

    There is no nonce parameter on purpose: XSalsa20's 192-bit nonce makes random
    nonces safe, and a caller-chosen nonce is the classic way to reuse one.
    """
    nonce = rng(NONCE_SIZE)
    return nonce + bytes(_sodium.crypto_secretbox(plaintext, nonce, key))


def open_box(key: bytes, sealed: bytes) -> bytes:
    if len(sealed) < NONCE_SIZE + MAC_SIZE:
        raise OpenFailed()
    try:
        return bytes(_sodium.crypto_secretbox_open(sealed[NONCE_SIZE:], sealed[:NONCE_SIZE], key))
    except _nacl_exc.CryptoError:
        raise OpenFailed() from None


def mac(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2b-256 (libsodium's crypto_generichash with a key)."""
    return hashlib.blake2b(data, key=key, digest_size=TAG_SIZE).digest()


def mac_chained(key: bytes, prev_tag: bytes, data: bytes | memoryview) -> bytes:
    """``mac(key, prev_tag + data)`` without building the concatenation (a frame is up to 64 MiB)."""
    h = hashlib.blake2b(key=key, digest_size=TAG_SIZE)
    h.update(prev_tag)
    h.update(data)
    return h.digest()


def macs_equal(a: bytes, b: bytes) -> bool:
    # Constant time: a tag comparison that leaks the first differing byte is a forgery oracle.
    return hmac.compare_digest(a, b)


def checksum(data: bytes, person: bytes) -> bytes:
    """Unkeyed BLAKE2b-256, for damage detection before the key is known."""
    return hashlib.blake2b(data, digest_size=TAG_SIZE, person=person).digest()


@dataclass(frozen=True, slots=True, repr=False)
class Keys:
    """Subkeys of the vault's random data key, one per purpose (domain separation)."""

    chain: bytes
    frame: bytes
    value: bytes

    @classmethod
    def from_data_key(cls, data_key: bytes) -> Keys:
        def sub(label: bytes) -> bytes:
            return hashlib.blake2b(b"", key=data_key, digest_size=KEY_SIZE, person=label).digest()

        return cls(chain=sub(b"cbkv1-chain"), frame=sub(b"cbkv1-frame"), value=sub(b"cbkv1-value"))

    def __repr__(self) -> str:
        return "Keys(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("vault keys cannot be pickled")


def subkey(data_key: bytes, label: bytes) -> bytes:
    """A purpose-bound subkey of a data key: keyed BLAKE2b with ``label`` as personalisation (<= 16 bytes)."""
    return hashlib.blake2b(b"", key=data_key, digest_size=KEY_SIZE, person=label).digest()


_BYTES_HEADER: Final = sys.getsizeof(b"") - 1


def wipe_bytes(data: bytes) -> None:
    """Zero a ``bytes`` object's buffer in place (CPython layout; a no-op elsewhere). Best effort."""
    if sys.implementation.name != "cpython" or not data:
        return
    ctypes.memset(id(data) + _BYTES_HEADER, 0, len(data))


def lock_bytes(data: bytes) -> bool:
    """Ask the OS to keep a ``bytes`` object's pages out of swap (``mlock``; CPython, Linux/macOS).

    Best effort: returns False when it is refused (``RLIMIT_MEMLOCK``) or unavailable.
    """
    if sys.implementation.name != "cpython" or not data:
        return False
    try:
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.mlock(ctypes.c_void_p(id(data) + _BYTES_HEADER), ctypes.c_size_t(len(data)))) == 0
    except (OSError, AttributeError):
        return False
