"""The on-disk format, versions 1 to 3: bytes <-> structures, limits, framing. No I/O, no keys.

The normative description is docs/FORMAT.md; the constants and layouts here follow it
field for field. Layout of a vault file::

    0    40   header       magic "CBKVAULT", version, reserved, vault id, epoch
    40   32   header tag   BLAKE2b-256(K_chain, "cbkv1-header" || header)
    72   256  key slot A   Argon2id parameters, salt, wrapped data key, checksum
    328  256  key slot B   (the other slot: empty, or the one a passphrase change writes)
    584  ...  frames       one per commit: len, ~len, sealed ops, chain tag

Everything pre-authentication (header, slots, frame lengths) is fixed-width binary,
so the parser that sees untrusted bytes before any MAC check is a few struct reads
with every field range-checked. msgpack is only decoded after the frame's chain tag
and secretbox have both verified.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import msgpack

from . import _crypto
from .errors import CorruptVaultError, KdfParamsError, UnsupportedVersionError

MAGIC: Final = b"CBKVAULT"
#: The version this build writes. Version 2 adds the trash and revision-history operations
#: (OP_TRASH, OP_REVISION, OP_TRASHED); version 3 adds the checkpoint (OP_CHECKPOINT) that
#: compaction writes, so open indexes records without decoding them. An older file is read as
#: it is and upgraded (rewritten in this version) by its first write.
VERSION: Final = 3
VERSIONS: Final = (1, 2, 3)

HEADER_SIZE: Final = 40
HEADER_TAG_OFFSET: Final = 40
SLOT_OFFSETS: Final = (72, 328)
SLOT_SIZE: Final = 256
LOG_START: Final = 584

SLOT_MAGIC: Final = b"CKS1"
ALG_ARGON2ID13: Final = 1
WRAP_PLAIN_SIZE: Final = 32 + 16 + 8  # data key || vault id || slot generation
_SLOT_BODY: Final = struct.Struct(">4sQB3sII16s96s")  # 136 bytes, then 32-byte checksum
_SLOT_CHECKSUM_PERSON: Final = b"cbkv1-slot"

FRAME_HEAD: Final = struct.Struct(">II")  # sealed length, its bitwise complement
FRAME_TAG_SIZE: Final = _crypto.TAG_SIZE
FRAME_PAD: Final = 64
VALUE_PAD: Final = 256
MIN_SEALED: Final = _crypto.NONCE_SIZE + _crypto.MAC_SIZE + FRAME_PAD
MAX_SEALED: Final = 64 << 20
#: A run this long of zero bytes never occurs in sealed data; it marks a block the
#: file system extended but never wrote (a torn append after a crash).
ZERO_RUN: Final = 16

# Field limits, enforced on write and on read.
MAX_NAME: Final = 1024
MAX_DESCRIPTION: Final = 64 << 10
MAX_VALUE: Final = 1 << 20
MAX_JSON: Final = 64 << 10
MAX_DEPTH: Final = 8
MAX_ALIAS: Final = 128
MAX_ID: Final = 128
MAX_RECORDS: Final = 1_000_000

TYPES: Final = ("plain", "basic", "bearer", "jwt", "oauth", "template", "reference")
KINDS: Final = ("shared", "personal")
VISIBILITIES: Final = ("private", "protected", "public")
ALIAS_RE: Final = re.compile(rf"[a-z0-9_-]{{0,{MAX_ALIAS}}}")
ID_RE: Final = re.compile(r"[a-z][a-z0-9]{23}|c[a-z0-9]{24}")

OP_PUT: Final = 1
OP_DELETE: Final = 2
OP_SETTING: Final = 3
#: Version 2: ``[4, id, deletedAt]`` moves a live record to the trash.
OP_TRASH: Final = 4
#: Version 2: ``[5, record]`` a past revision of a record that follows (compacted files).
OP_REVISION: Final = 5
#: Version 2: ``[6, record, deletedAt]`` a record in the trash (compacted files).
OP_TRASHED: Final = 6
V2_OPS: Final = frozenset({OP_TRASH, OP_REVISION, OP_TRASHED})
#: Version 3: ``[7, ids, createdAts, names, aliases, records]`` a chunk of the checkpoint: live
#: records with no past revision, each kept packed (a bin) until it is first used.
OP_CHECKPOINT: Final = 7
#: The least version that may hold each op code (a reader refuses it in an older file).
OP_SINCE: Final = {OP_TRASH: 2, OP_REVISION: 2, OP_TRASHED: 2, OP_CHECKPOINT: 3}


def corrupt(what: str) -> CorruptVaultError:
    return CorruptVaultError(f"vault file is damaged or has been tampered with ({what})")


# --- ids ----------------------------------------------------------------------------

_ID_FIRST: Final = "abcdefghijklmnopqrstuvwxyz"
_ID_REST: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
# byte -> id character, done in C by bytes.translate. Bytes at or above the largest multiple
# of the alphabet size are deleted (rejection sampling), so every character stays uniform.
_REST_TABLE: Final = bytes(ord(_ID_REST[b % len(_ID_REST)]) for b in range(256))
_REST_REJECT: Final = bytes(range(256 - 256 % len(_ID_REST), 256))
_FIRST_LIMIT: Final = 256 - 256 % len(_ID_FIRST)


def new_id(rng: _crypto.RandomSource) -> str:
    """A record id like the cloud's cuid2 ids: 24 lowercase characters, a letter first, unbiased.

    Every id the vault makes (secrets, sync's local copies, imports) comes from here and
    from the injected random source, so a seeded source reproduces a whole vault.
    """
    first = ""
    rest = b""
    while len(rest) < 23:
        chunk = rng(32)
        if not first:
            for i, byte in enumerate(chunk):
                if byte < _FIRST_LIMIT:
                    first = _ID_FIRST[byte % len(_ID_FIRST)]
                    chunk = chunk[i + 1 :]
                    break
            else:
                continue
        rest += chunk.translate(_REST_TABLE, _REST_REJECT)
    return first + rest[:23].decode("ascii")


# --- header -------------------------------------------------------------------------

_HEADER: Final = struct.Struct(">8sB7s16sQ")


@dataclass(frozen=True, slots=True)
class Header:
    vault_id: bytes
    epoch: int
    version: int = VERSION

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, self.version, bytes(7), self.vault_id, self.epoch)


def decode_header(data: bytes) -> Header:
    if len(data) < LOG_START:
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise corrupt("not a cbk-vault file")
        raise corrupt("file is shorter than its header")
    magic, version, reserved, vault_id, epoch = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise corrupt("not a cbk-vault file")
    if version not in VERSIONS:
        raise UnsupportedVersionError(
            f"vault format version {version} is not supported by this build (it reads versions 1 to 3)"
        )
    if reserved != bytes(7):
        raise corrupt("reserved header bytes are not zero")
    return Header(vault_id=vault_id, epoch=epoch, version=version)


def header_mac_input(header: bytes) -> bytes:
    return b"cbkv1-header" + header


# --- key slots ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Slot:
    generation: int
    kdf: _crypto.KdfParams
    salt: bytes
    wrapped: bytes  # nonce || secretbox(data key || vault id || generation)

    def encode(self) -> bytes:
        body = _SLOT_BODY.pack(
            SLOT_MAGIC,
            self.generation,
            ALG_ARGON2ID13,
            bytes(3),
            self.kdf.opslimit,
            self.kdf.memlimit // 1024,
            self.salt,
            self.wrapped,
        )
        return (body + _crypto.checksum(body, _SLOT_CHECKSUM_PERSON)).ljust(SLOT_SIZE, b"\0")

    def __repr__(self) -> str:
        return f"Slot(generation={self.generation}, kdf={self.kdf!r})"


EMPTY_SLOT: Final = bytes(SLOT_SIZE)


def decode_slot(raw: bytes) -> Slot | None:
    """A valid slot, or None for an empty or damaged one (a torn slot write looks damaged).

    KDF limits are checked here, before anyone can derive with them.
    """
    if raw == EMPTY_SLOT:
        return None
    body = raw[: _SLOT_BODY.size]
    check = raw[_SLOT_BODY.size : _SLOT_BODY.size + 32]
    if not _crypto.macs_equal(_crypto.checksum(body, _SLOT_CHECKSUM_PERSON), check):
        return None
    if raw[_SLOT_BODY.size + 32 :] != bytes(SLOT_SIZE - _SLOT_BODY.size - 32):
        return None
    magic, gen, alg, reserved, ops, mem_kib, salt, wrapped = _SLOT_BODY.unpack(body)
    if magic != SLOT_MAGIC or reserved != bytes(3):
        return None
    if alg != ALG_ARGON2ID13:
        raise KdfParamsError(f"key slot uses unknown KDF algorithm {alg}")
    _crypto.check_kdf_limits(ops, mem_kib * 1024)
    return Slot(gen, _crypto.KdfParams(ops, mem_kib * 1024), salt, wrapped)


def choose_slot(data: bytes) -> tuple[int, Slot]:
    """The slot to unlock with: the valid one with the highest generation.

    A passphrase change commits when its new slot is durable; from then on only the
    new slot is tried, so the old passphrase stops working even if the erase of the
    old slot never happened.
    """
    found: list[tuple[int, Slot]] = []
    for index, offset in enumerate(SLOT_OFFSETS):
        slot = decode_slot(data[offset : offset + SLOT_SIZE])
        if slot is not None:
            found.append((index, slot))
    if not found:
        raise corrupt("no intact key slot")
    if len(found) == 2 and found[0][1].generation == found[1][1].generation:
        raise corrupt("two key slots share a generation")
    return max(found, key=lambda pair: pair[1].generation)


def wrap_plaintext(data_key: bytes, vault_id: bytes, generation: int) -> bytes:
    return data_key + vault_id + generation.to_bytes(8, "big")


# --- padding ------------------------------------------------------------------------


def pad(data: bytes, block: int) -> bytes:
    """ISO/IEC 7816-4 padding (libsodium's sodium_pad): 0x80 then zeros up to a block multiple."""
    total = (len(data) // block + 1) * block
    return data + b"\x80" + bytes(total - len(data) - 1)


def unpad(data: bytes, block: int) -> bytes:
    return data[: unpad_end(data, block)]


def unpad_end(data: bytes, block: int) -> int:
    """Where the padding starts. Only the last block is scanned: the marker is never further back,
    and open unpads every frame (a copy of the whole plaintext per frame otherwise)."""
    if not data or len(data) % block:
        raise corrupt("bad padding")
    marker = len(data[-block:].rstrip(b"\0")) - 1
    if marker < 0 or data[len(data) - block + marker] != 0x80:
        raise corrupt("bad padding")
    return len(data) - block + marker


# --- msgpack ------------------------------------------------------------------------


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("msgpack extension types are not allowed")


def packb(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpackb(data: bytes | memoryview) -> Any:
    """Strict decode of data that has already authenticated.

    Even authenticated data is decoded strictly (no ext types, str map keys, one
    object, valid UTF-8): a key-holding writer with a bug must not be able to plant
    something the reader mistakes for another structure.
    """
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        pass
    # Raised outside the handler, so neither __cause__ nor __context__ holds msgpack's error:
    # ExtraData carries the decoded object (a value's plaintext, for a value box) in its repr,
    # and loggers, error trackers and pytest repr the chain.
    raise corrupt("undecodable record")


# --- records ------------------------------------------------------------------------


#: The shared empty extension map of every record without one (nearly all): 64 bytes per
#: secret otherwise. Records never edit their ext map in place; they are given a new one.
NO_EXT: Final[dict[str, Any]] = {}

#: The order of a record's fields on disk (a PUT op carries them as a msgpack array).
ENTRY_FIELDS: Final = (
    "id",
    "rev",
    "created_at",
    "updated_at",
    "name",
    "description",
    "kind",
    "type",
    "visibility",
    "alias",
    "meta",
    "config",
    "blueprint_id",
    "value_rev",
    "value_box",
    "ext",
)


class Entry:
    """One stored secret, as kept in memory: metadata in the clear, the value still sealed."""

    __slots__ = ENTRY_FIELDS

    def __init__(
        self,
        id: str,
        rev: int,
        created_at: int,
        updated_at: int,
        name: str,
        description: str,
        kind: str,
        type: str,
        visibility: str,
        alias: str | None,
        meta: dict[str, Any] | None,
        config: dict[str, Any] | None,
        blueprint_id: str | None,
        value_rev: int,
        value_box: bytes | None,
        ext: dict[str, Any],
    ) -> None:
        self.id = id
        self.rev = rev
        self.created_at = created_at
        self.updated_at = updated_at
        self.name = name
        self.description = description
        self.kind = kind
        self.type = type
        self.visibility = visibility
        self.alias = alias
        self.meta = meta
        self.config = config
        self.blueprint_id = blueprint_id
        self.value_rev = value_rev
        self.value_box = value_box
        self.ext = ext

    def to_list(self) -> list[Any]:
        # Spelled out rather than a getattr loop over ENTRY_FIELDS: every write calls this
        # (and copy) several times, and the loop was a tenth of a bulk import's CPU.
        return [
            self.id,
            self.rev,
            self.created_at,
            self.updated_at,
            self.name,
            self.description,
            self.kind,
            self.type,
            self.visibility,
            self.alias,
            self.meta,
            self.config,
            self.blueprint_id,
            self.value_rev,
            self.value_box,
            self.ext,
        ]

    def copy(self) -> Entry:
        return Entry(*self.to_list())

    def __repr__(self) -> str:
        return f"Entry(id={self.id!r}, rev={self.rev})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("vault entries cannot be pickled")


_U63: Final = (1 << 63) - 1


# One shared str object per enum value: validation by dict lookup, and a 100k-secret index
# holds three strings in all instead of three per record (msgpack makes a new str each time).
_KIND_OF: Final = {k: k for k in KINDS}
_TYPE_OF: Final = {t: t for t in TYPES}
_VISIBILITY_OF: Final = {v: v for v in VISIBILITIES}


def _id_ok(rid: str) -> bool:
    """``ID_RE.fullmatch`` without the regex engine (open runs this once per record).

    ASCII, alphanumeric and no upper case (``islower`` holds because the first
    character is a letter) is exactly ``[a-z0-9]``.
    """
    n = len(rid)
    return (
        (n == 24 or (n == 25 and rid[0] == "c"))
        and "a" <= rid[0] <= "z"
        and rid.isascii()
        and rid.isalnum()
        and rid.islower()
    )


def decode_entry(fields: object) -> Entry:
    if type(fields) is not list or len(fields) != len(ENTRY_FIELDS):
        raise corrupt("malformed record")
    (rid, rev, ca, ua, name, desc, kind, typ, vis, alias, meta, config, bp, vrev, vbox, ext) = fields
    # Unhashable values must not reach the dict lookups below (a TypeError is not a VaultError).
    kind = _KIND_OF.get(kind) if type(kind) is str else None
    typ = _TYPE_OF.get(typ) if type(typ) is str else None
    vis = _VISIBILITY_OF.get(vis) if type(vis) is str else None
    if kind is None or typ is None or vis is None:
        raise corrupt("malformed record")
    if type(ext) is dict and not ext:
        ext = NO_EXT
    if ua == ca:
        ua = ca  # one int object for both when never updated (most secrets): 32 bytes each
    ok = (
        type(rid) is str
        and _id_ok(rid)
        and type(rev) is int
        and 1 <= rev <= _U63
        and type(ca) is int
        and 0 <= ca <= _U63
        and type(ua) is int
        and 0 <= ua <= _U63
        and type(name) is str
        and len(name) <= MAX_NAME
        and type(desc) is str
        and len(desc) <= MAX_DESCRIPTION
        and (alias is None or (type(alias) is str and alias != "" and ALIAS_RE.fullmatch(alias) is not None))
        and (meta is None or type(meta) is dict)
        and (config is None or type(config) is dict)
        and (bp is None or (type(bp) is str and len(bp) <= MAX_ID))
        and type(vrev) is int
        and 0 <= vrev <= rev
        and (vbox is None or (type(vbox) is bytes and len(vbox) >= _crypto.NONCE_SIZE + _crypto.MAC_SIZE))
        and type(ext) is dict
    )
    if not ok:
        raise corrupt("malformed record")
    return Entry(rid, rev, ca, ua, name, desc, kind, typ, vis, alias, meta, config, bp, vrev, vbox, ext)


def decode_time(value: object) -> int:
    """A ``deletedAt`` (epoch milliseconds) of a trash operation."""
    if type(value) is not int or not 0 <= value <= _U63:
        raise corrupt("malformed trash operation")
    return value


class Checkpoint:
    """One checkpoint op's columns, shape-checked: record ``i`` is ``ids[i]``, ``created[i]``, ...

    The checks here are whole-column ones done in C (``map``, ``min``, ``max``, ``set``), because
    open runs them once per record of the vault; each packed record is decoded, and checked
    against its columns, only when it is first used (docs/FORMAT.md, §15).
    """

    __slots__ = ("aliases", "created", "ids", "names", "records")

    def __init__(
        self, ids: list[str], created: list[int], names: list[str], aliases: list[str | None], records: list[bytes]
    ) -> None:
        self.ids = ids
        self.created = created
        self.names = names
        self.aliases = aliases
        self.records = records


_STR_ONLY: Final = {str}
_ALIAS_TYPES: Final = {str, type(None)}
#: Records per CHECKPOINT op at most (§15.2, §15.3): a reader refuses a larger op before indexing any of it.
CHECKPOINT_MAX: Final = 4096
# The characters of ID_RE and ALIAS_RE: a column is checked whole (joined, then bytes.translate deleting these,
# which leaves nothing) instead of a regex per record, which keeps open to whole-column work (~3 ms per 100k ids,
# where a set of the joined characters took ~19). ID_RE's first-letter rule is checked by the record's decode.
_ID_CHARS: Final = b"abcdefghijklmnopqrstuvwxyz0123456789"
_ALIAS_CHARS: Final = _ID_CHARS + b"_-"


def _only(joined: str, allowed: bytes) -> bool:
    """Whether a joined column is made of ``allowed`` (ASCII) characters only."""
    return joined.isascii() and not joined.encode("ascii").translate(None, allowed)


def decode_checkpoint(op: list[Any]) -> Checkpoint:
    """``[7, ids, createdAts, names, aliases, records]``: parallel arrays of one length, typed."""
    if len(op) != 6:
        raise corrupt("malformed checkpoint")
    _, ids, created, names, aliases, records = op
    if not (type(ids) is list and type(created) is list and type(names) is list):
        raise corrupt("malformed checkpoint")
    if not (type(aliases) is list and type(records) is list):
        raise corrupt("malformed checkpoint")
    n = len(ids)
    if not (len(created) == len(names) == len(aliases) == len(records) == n):
        raise corrupt("malformed checkpoint")
    if n == 0:
        return Checkpoint(ids, created, names, aliases, records)
    if n > CHECKPOINT_MAX:
        raise corrupt("malformed checkpoint")
    if (
        set(map(type, ids)) != _STR_ONLY
        or set(map(type, names)) != _STR_ONLY
        or set(map(type, created)) != {int}
        or set(map(type, records)) != {bytes}
        or not set(map(type, aliases)) <= _ALIAS_TYPES
        or min(created) < 0
        or max(created) > _U63
        or "" in aliases
    ):
        raise corrupt("malformed checkpoint")
    # Each column holds what its record may hold (ids of [a-z0-9], names up to MAX_NAME, aliases ALIAS_RE's):
    # hostile columns never reach the index. Whole-column work in C, no per-record call. The ids are bounded
    # by their total length (24 or 25 characters each on average); each is checked exactly when its record is
    # decoded, which must carry it (decode_packed), as its first letter is.
    named = list(filter(None, aliases))  # ("" was refused above: None is the only falsy element)
    joined = "".join(ids)
    if (
        not 24 * n <= len(joined) <= 25 * n
        or not _only(joined, _ID_CHARS)
        or max(map(len, names)) > MAX_NAME
        or (named and (max(map(len, named)) > MAX_ALIAS or not _only("".join(named), _ALIAS_CHARS)))
    ):
        raise corrupt("malformed checkpoint")
    return Checkpoint(ids, created, names, aliases, records)


def decode_packed(packed: bytes, record_id: str) -> Entry:
    """A checkpoint record, decoded (strictly, as any record) on first use; it must carry its column's id."""
    entry = decode_entry(unpackb(packed))
    if entry.id != record_id:
        raise corrupt(f"checkpoint record {record_id[:64]} differs from its index")
    return entry


def check_entry(entry: Entry, *, deleted_at: int | None = None) -> None:
    """Refuse a record the reader would refuse: the writer runs the reader's own check.

    Whatever reaches a commit (the API, a sync pull, an import, the stand-in, a restore or
    undelete) passes here, so no write can produce a file that ``decode_entry`` later rejects
    as corrupt. ``deleted_at`` is checked too for the record of a trash operation.
    """
    decode_entry(entry.to_list())
    if deleted_at is not None:
        decode_time(deleted_at)


def encode_frame_plaintext(epoch: int, seq: int, ops: list[list[Any]]) -> bytes:
    return pad(packb([epoch, seq, ops]), FRAME_PAD)


def decode_frame_plaintext(plaintext: bytes, epoch: int, seq: int) -> list[Any]:
    obj = unpackb(memoryview(plaintext)[: unpad_end(plaintext, FRAME_PAD)])
    if type(obj) is not list or len(obj) != 3:
        raise corrupt("malformed frame")
    f_epoch, f_seq, ops = obj
    if f_epoch != epoch or f_seq != seq:
        # A frame from another epoch or position: spliced or replayed.
        raise corrupt("frame out of sequence")
    if type(ops) is not list:
        raise corrupt("malformed frame")
    return ops


def value_plaintext(vault_id: bytes, record_id: str, value_rev: int, value: str) -> bytes:
    return pad(packb([vault_id, record_id, value_rev, value]), VALUE_PAD)


def decode_value_plaintext(plaintext: bytes, vault_id: bytes, record_id: str, value_rev: int) -> str:
    obj = unpackb(unpad(plaintext, VALUE_PAD))
    if type(obj) is not list or len(obj) != 4 or type(obj[3]) is not str:
        raise corrupt("malformed value")
    if obj[0] != vault_id or obj[1] != record_id or obj[2] != value_rev:
        # The box opened, so it is ours, but it belongs to another record or revision.
        raise corrupt(f"value of secret {record_id} is bound to another record")
    value: str = obj[3]
    return value


def json_copy_checked(obj: object, depth: int = 0) -> Any:
    """A plain copy of JSON-shaped data, or ValueError: one walk checks and copies.

    JSON-shaped means str keys and str/int/finite float/bool/None/list/dict leaves, at most
    MAX_DEPTH deep; a Mapping becomes a dict and a tuple a list (as msgpack reads them back),
    so the caller cannot change what was stored after the commit. NaN and the infinities are
    refused: JSON has no spelling for them, so a vault that held one would answer the cloud's
    API (and ``--json``) with output other parsers reject.
    """
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    # A container's children sit one level down: at MAX_DEPTH only an empty one fits, and below
    # that a str child (the common leaf) needs no call of its own.
    if isinstance(obj, Mapping):
        if obj and depth == MAX_DEPTH:
            raise ValueError("too deep")
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise ValueError("key")
            out[k] = v if type(v) is str else json_copy_checked(v, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        if obj and depth == MAX_DEPTH:
            raise ValueError("too deep")
        return [v if type(v) is str else json_copy_checked(v, depth + 1) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("not finite")
        return obj
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise ValueError("type")
