"""Generate the format test vectors: one small file per case, each with its expected outcome.

Run from the repository root: ``python tests/vectors/generate.py`` (rewrites tests/vectors/cases/).
The output is deterministic (seeded randomness, a fixed clock), so ``tests/test_vectors.py``
also checks that this script reproduces the committed files byte for byte.

A case file is a short text header, a blank line, then the raw vault bytes::

    cbkv-vector 1
    expect: corrupt            success | wrong_passphrase | corrupt | unsupported_version | kdf_params
    stage: open                open | fetch (where the error must appear; fetch: open succeeds)
    error-contains: ...        a fragment of the error message (why it failed)
    passphrase: ...
    content: [[name, value, description], ...]     (success only: the exact contents)
    comment: ...

Like age's CCTV test kit, each malformed case breaks one thing. Cases that need a
validly keyed frame (a wrong epoch, a bad record field) are sealed and chained with the
reference vault's own keys, which the generator recovers by unwrapping its key slot: they
model a buggy or malicious writer that holds the key, and show that the reader still
checks every field after authentication.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

import vault  # noqa: E402
from vault import _crypto, _format  # noqa: E402

CASES_DIR = Path(__file__).resolve().parent / "cases"
PASSPHRASE = "vector passphrase"
NEW_PASSPHRASE = "vector passphrase, rotated"
FAST = vault.KdfParams(opslimit=1, memlimit=8192)
SLOT = struct.Struct(">4sQB3sII16s96s")
SLOT_A, SLOT_B = _format.SLOT_OFFSETS
HEAD = _format.LOG_START

Content = list[list[Any]]
Changes = list[tuple[str, dict[str, Any], str]]


class SeededRng:
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._random.randbytes(n)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1000
        return self.now


@dataclass
class Case:
    name: str
    data: bytes
    expect: str
    comment: str
    stage: str = "open"
    error: str = ""
    passphrase: str = PASSPHRASE
    content: Content | None = None

    def render(self) -> bytes:
        lines = ["cbkv-vector 1", f"expect: {self.expect}", f"stage: {self.stage}"]
        if self.error:
            lines.append(f"error-contains: {self.error}")
        lines.append(f"passphrase: {self.passphrase}")
        if self.content is not None:
            lines.append("content: " + json.dumps(self.content))
        lines.append(f"comment: {self.comment}")
        return ("\n".join(lines) + "\n\n").encode() + self.data


def parse_case(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, _, data = raw.partition(b"\n\n")
    lines = head.decode().split("\n")
    if lines[0] != "cbkv-vector 1":
        raise ValueError("not a cbkv test vector")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return fields, data


# --- the reference vault and the tools to take it apart ---------------------------------


@dataclass
class Frame:
    offset: int
    body: bytes  # len || ~len || nonce || box
    tag: bytes

    @property
    def raw(self) -> bytes:
        return self.body + self.tag


@dataclass
class Ref:
    """The reference vault: its bytes, keys and frames, and the contents after each commit."""

    data: bytes
    data_key: bytes
    keys: _crypto.Keys
    vault_id: bytes
    frames: list[Frame]
    states: list[Content]
    rng: SeededRng = field(default_factory=lambda: SeededRng(4242))

    @property
    def header(self) -> bytes:
        return self.data[:40]

    @property
    def header_tag(self) -> bytes:
        return self.data[40:72]

    @property
    def slot_a(self) -> bytes:
        return self.data[SLOT_A : SLOT_A + 256]

    def plaintext(self, i: int) -> list[Any]:
        pt = _crypto.open_box(self.keys.frame, self.frames[i].body[8:])
        obj: list[Any] = msgpack.unpackb(_format.unpad(pt, _format.FRAME_PAD), raw=False)
        return obj

    def seal_plain(self, padded_plaintext: bytes) -> bytes:
        """A frame body (len, ~len, sealed) around exact plaintext bytes."""
        sealed = _crypto.seal(self.keys.frame, padded_plaintext, self.rng)
        return struct.pack(">II", len(sealed), len(sealed) ^ 0xFFFFFFFF) + sealed

    def assemble(
        self,
        bodies: list[bytes],
        *,
        header: bytes | None = None,
        slot_a: bytes | None = None,
        slot_b: bytes | None = None,
        keys: _crypto.Keys | None = None,
    ) -> bytes:
        """A whole file from frame bodies: header tag and every chain tag recomputed."""
        k = keys or self.keys
        header = self.header if header is None else header
        tag = _crypto.mac(k.chain, _format.header_mac_input(header))
        out = [header, tag, self.slot_a if slot_a is None else slot_a, bytes(256) if slot_b is None else slot_b]
        for body in bodies:
            tag = _crypto.mac(k.chain, tag + body)
            out.append(body + tag)
        return b"".join(out)

    def body_for(self, obj: object, *, pad: bool = True) -> bytes:
        packed = msgpack.packb(obj, use_bin_type=True)
        return self.seal_plain(_format.pad(packed, _format.FRAME_PAD) if pad else packed)

    def with_frame(self, i: int, obj: object) -> bytes:
        """The reference file with frame i replaced by a validly sealed and chained ``obj``."""
        bodies = [f.body for f in self.frames]
        bodies[i] = self.body_for(obj)
        return self.assemble(bodies)

    def with_op(self, i: int, op: object) -> bytes:
        epoch, seq, _ops = self.plaintext(i)
        return self.with_frame(i, [epoch, seq, [op]])

    def entry(self, i: int) -> list[Any]:
        """The record of frame i's single PUT op (a fresh copy)."""
        ops = self.plaintext(i)[2]
        assert ops[0][0] == _format.OP_PUT
        return list(ops[0][1])

    def with_entry(self, i: int, **changes: Any) -> bytes:
        entry = self.entry(i)
        for name, value in changes.items():
            entry[_format.ENTRY_FIELDS.index(name)] = value
        return self.with_op(i, [_format.OP_PUT, entry])


def make_slot(
    *,
    generation: int,
    salt: bytes,
    wrapped: bytes,
    ops: int = 1,
    mem_kib: int = 8,
    alg: int = 1,
    magic: bytes = b"CKS1",
    reserved: bytes = bytes(3),
    checksum: bytes | None = None,
    padding: bytes | None = None,
) -> bytes:
    body = SLOT.pack(magic, generation, alg, reserved, ops, mem_kib, salt, wrapped)
    check = _crypto.checksum(body, b"cbkv1-slot") if checksum is None else checksum
    pad = bytes(256 - len(body) - 32) if padding is None else padding
    return body + check + pad


def wrap(passphrase: str, salt: bytes, data_key: bytes, vault_id: bytes, generation: int, rng: SeededRng) -> bytes:
    kek = _crypto.derive_kek(passphrase.encode(), salt, FAST)
    return _crypto.seal(kek, _format.wrap_plaintext(data_key, vault_id, generation), rng)


def slot_fields(raw: bytes) -> dict[str, Any]:
    _magic, gen, _alg, _reserved, ops, mem_kib, salt, wrapped = SLOT.unpack(raw[: SLOT.size])
    return {"generation": gen, "ops": ops, "mem_kib": mem_kib, "salt": salt, "wrapped": wrapped}


def resign(raw: bytes, **changes: Any) -> bytes:
    """Key slot ``raw`` with fields changed and its checksum recomputed (damage the checksum cannot see)."""
    f = slot_fields(raw)
    f.update(changes)
    return make_slot(**f)


def content_of(v: vault.Vault) -> Content:
    out = []
    for item in v.secret.list(order="asc", take=100).items:
        s = v.secret.fetch(item.id)
        out.append([s.name, s.value, s.description])
    return sorted(out)


def split_frames(data: bytes) -> list[Frame]:
    frames = []
    pos = HEAD
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 8 + length
        frames.append(Frame(pos, data[pos:end], data[end : end + 32]))
        pos = end + 32
    return frames


def build_vault(directory: Path, name: str, seed: int, passphrase: str = PASSPHRASE) -> tuple[Path, list[Content]]:
    """The reference: create alpha, beta, gamma (no value); update alpha's value; delete gamma."""
    path = directory / name
    states: list[Content] = []
    # These vectors are format version 1 (frozen): the v1 writer makes the reference.
    clock = Clock()

    def content() -> Content:
        # Each value read is stamped (access log) by the vault's clock, which ticks per call: the
        # frozen vectors were made when reads did not tick it, so the clock is put back.
        now = clock.now
        try:
            return content_of(v)
        finally:
            clock.now = now

    with vault.init(path, passphrase, kdf=FAST, clock=clock, _rng=SeededRng(seed), _version=1) as v:
        states.append(content())
        a = v.secret.create(name="alpha", value="alpha-1", alias="alpha", meta={"env": "prod"})
        states.append(content())
        v.secret.create(name="beta", value="beta-1", type="bearer", description="second")
        states.append(content())
        g = v.secret.create(name="gamma", description="no value")
        states.append(content())
        v.secret.update(a.id, value="alpha-2")
        states.append(content())
        v.secret.delete(g.id)
        states.append(content())
    return path, states


def load_ref(path: Path, states: list[Content], passphrase: str = PASSPHRASE) -> Ref:
    data = path.read_bytes()
    slot = _format.decode_slot(data[SLOT_A : SLOT_A + 256])
    assert slot is not None
    kek = _crypto.derive_kek(passphrase.encode(), slot.salt, slot.kdf)
    plain = _crypto.open_box(kek, slot.wrapped)
    data_key, vault_id = plain[:32], plain[32:48]
    return Ref(data, data_key, _crypto.Keys.from_data_key(data_key), vault_id, split_frames(data), states)


def flip(data: bytes, pos: int, mask: int = 1) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def put(data: bytes, pos: int, new: bytes) -> bytes:
    return data[:pos] + new + data[pos + len(new) :]


# --- the cases -----------------------------------------------------------------------------


def build_cases(work: Path) -> list[Case]:
    path, states = build_vault(work, "ref.cbkv", 1)
    ref = load_ref(path, states)
    other_path, _ = build_vault(work, "other.cbkv", 2)
    other = load_ref(other_path, states)
    final, data, frames = states[-1], ref.data, ref.frames
    rng = SeededRng(77)
    cases: list[Case] = []

    def ok(name: str, blob: bytes, comment: str, content: Content, passphrase: str = PASSPHRASE) -> None:
        cases.append(Case(name, blob, "success", comment, passphrase=passphrase, content=content))

    def bad(name: str, blob: bytes, expect: str, error: str, comment: str, **kw: Any) -> None:
        cases.append(Case(name, blob, expect, comment, error=error, **kw))

    def corrupt(name: str, blob: bytes, error: str, comment: str, **kw: Any) -> None:
        bad(name, blob, "corrupt", error, comment, **kw)

    # -- success -------------------------------------------------------------------------
    ok("ok-reference", data, "three creates, an update and a delete (5 frames)", final)
    with vault.init(work / "empty0.cbkv", PASSPHRASE, kdf=FAST, clock=Clock(), _rng=SeededRng(5), _version=1):
        pass
    ok("ok-empty-vault", (work / "empty0.cbkv").read_bytes(), "a new vault: header, slot A, no frames", [])
    with vault.open(work / "ref.cbkv", PASSPHRASE, clock=Clock(), _rng=SeededRng(6), _version=1) as v:
        v.compact()
    compacted = (work / "ref.cbkv").read_bytes()
    (work / "ref.cbkv").write_bytes(data)
    ok("ok-compacted", compacted, "after compaction: epoch 1, one frame", final)
    salt_b = rng(16)
    slot_b2 = make_slot(
        generation=2, salt=salt_b, wrapped=wrap(NEW_PASSPHRASE, salt_b, ref.data_key, ref.vault_id, 2, rng)
    )
    rekeyed = ref.assemble([f.body for f in frames], slot_a=bytes(256), slot_b=slot_b2)
    ok("ok-rekeyed-in-slot-b", rekeyed, "passphrase changed: slot B generation 2, slot A erased", final, NEW_PASSPHRASE)
    stale = ref.assemble([f.body for f in frames], slot_b=slot_b2)
    ok(
        "ok-stale-slot-a-new-passphrase",
        stale,
        "interrupted change: both slots; the newest wins",
        final,
        NEW_PASSPHRASE,
    )
    bad(
        "stale-slot-a-old-passphrase",
        stale,
        "wrong_passphrase",
        "wrong passphrase",
        "once the generation-2 slot is durable only it is tried: the old passphrase is refused",
    )
    ok(
        "ok-newer-slot-torn",
        ref.assemble([f.body for f in frames], slot_b=flip(slot_b2, 100)),
        "a torn write of the new slot (bad checksum) is ignored: the old slot still opens",
        final,
    )
    ok("ok-slot-b-garbage", put(data, SLOT_B, rng(256)), "random bytes in the empty slot B are ignored", final)
    ok("ok-slot-b-one-byte", put(data, SLOT_B + 255, b"\x01"), "slot B neither empty nor intact: ignored", final)
    setting = ref.assemble(
        [f.body for f in frames] + [ref.body_for([0, 5, [[_format.OP_SETTING, "sync.cursor", {"a": 1}]]])]
    )
    ok("ok-setting-op", setting, "a settings frame changes no secret", final)
    ok(
        "ok-setting-cleared",
        ref.assemble(
            [f.body for f in frames]
            + [
                ref.body_for([0, 5, [[_format.OP_SETTING, "k", 1]]]),
                ref.body_for([0, 6, [[_format.OP_SETTING, "k", None]]]),
            ]
        ),
        "a setting set then cleared",
        final,
    )
    ok("ok-zero-tail-4", data + bytes(4), "shorter than a frame head: a torn append", final)
    ok("ok-zero-tail-8", data + bytes(8), "an all-zero frame head: extended but never written", final)
    ok("ok-zero-tail-4096", data + bytes(4096), "a whole zero block: extended but never written", final)
    last = frames[-1]
    ok("ok-torn-last-frame-middle", data[: last.offset + 50], "the last append cut in its body", states[4])
    ok("ok-torn-last-frame-head", data[: last.offset + 8], "only the last frame's head was written", states[4])
    ok("ok-torn-last-frame-tag", data[: len(data) - 1], "the last frame's tag is one byte short", states[4])
    ok("ok-torn-3-bytes", data[: last.offset + 3], "three bytes of the last frame's head", states[4])
    ok("ok-cut-at-boundary-3", data[: frames[3].offset], "cut exactly after frame 2 (an older copy)", states[3])
    ok("ok-cut-in-first-frame", data[: frames[0].offset + 200], "cut inside the first frame: an empty vault", states[0])
    ok("ok-cut-after-slots", data[:HEAD], "header and slots only", states[0])
    zeroed = data[: last.offset + 100] + bytes(len(data) - last.offset - 100)
    ok("ok-last-frame-zeroed-tail", zeroed, "the end of the last frame never reached the disk (zeros)", states[4])
    ok(
        "ok-tail-frame-appended-torn",
        data + frames[1].raw[:60],
        "a torn append of a frame copy: it never completed, so it is not a commit",
        final,
    )
    overrun = put(data, frames[2].offset, struct.pack(">II", 1 << 20, (1 << 20) ^ 0xFFFFFFFF))
    ok(
        "ok-length-overrun-is-a-rollback",
        overrun,
        "a frame length rewritten (with its complement) to run past the end reads as a torn tail: the "
        "documented rollback class, no stronger than cutting the file there",
        states[2],
    )

    # -- wrong passphrase ------------------------------------------------------------------
    bad(
        "wrong-passphrase",
        data,
        "wrong_passphrase",
        "wrong passphrase",
        "the reference with another passphrase",
        passphrase="not the passphrase",
    )
    bad(
        "wrong-passphrase-unicode-nfd",
        data,
        "wrong_passphrase",
        "wrong passphrase",
        "a different passphrase",
        passphrase="ve\u0301ctor passphrase",
    )
    sa = ref.slot_a
    f = slot_fields(sa)
    table1: Changes = [
        ("slot-salt-changed", {"salt": flip(f["salt"], 0)}, "another salt gives another key"),
        ("slot-ops-changed-in-range", {"ops": 2}, "another in-range cost gives another key"),
        ("slot-mem-changed-in-range", {"mem_kib": 16}, "another in-range memory gives another key"),
        ("slot-wrapped-nonce-flipped", {"wrapped": flip(f["wrapped"], 0)}, "the wrapped key's nonce"),
        ("slot-wrapped-box-flipped", {"wrapped": flip(f["wrapped"], 40)}, "the wrapped key's ciphertext"),
        ("slot-wrapped-mac-flipped", {"wrapped": flip(f["wrapped"], 95)}, "the wrapped key's MAC"),
    ]
    for name, changes, why in table1:
        bad(
            name,
            put(data, SLOT_A, resign(sa, **changes)),
            "wrong_passphrase",
            "wrong passphrase",
            why + " (checksum recomputed): the KEK cannot unwrap, which reads as a wrong passphrase",
        )

    # -- unsupported version -------------------------------------------------------------------
    for version in (0, 4, 255):
        bad(
            f"header-version-{version}",
            put(data, 8, bytes([version])),
            "unsupported_version",
            f"version {version} is not supported",
            "the version byte is checked before anything else",
        )

    # -- KDF parameters out of range (checksum valid: only the caps stop them) ----------------------
    table2: Changes = [
        ("kdf-ops-0", {"ops": 0}, "below libsodium's floor"),
        ("kdf-ops-17", {"ops": 17}, "above the cap of 16"),
        ("kdf-ops-max", {"ops": 0xFFFFFFFF}, "4 billion passes: hours of work"),
        ("kdf-mem-0", {"mem_kib": 0}, "no memory"),
        ("kdf-mem-7kib", {"mem_kib": 7}, "below the 8 KiB floor"),
        ("kdf-mem-1gib-plus", {"mem_kib": (1 << 20) + 1}, "1 KiB above the 1 GiB cap"),
        ("kdf-mem-max", {"mem_kib": 0xFFFFFFFF}, "4 TiB of memory"),
        ("kdf-both-max", {"ops": 0xFFFFFFFF, "mem_kib": 0xFFFFFFFF}, "both at the maximum"),
    ]
    for name, changes, why in table2:
        bad(
            name,
            put(data, SLOT_A, resign(sa, **changes)),
            "kdf_params",
            "outside the allowed range",
            why + "; refused before any derivation",
        )
    for alg in (0, 2, 255):
        raw = make_slot(generation=1, salt=f["salt"], wrapped=f["wrapped"], alg=alg)
        bad(f"kdf-alg-{alg}", put(data, SLOT_A, raw), "kdf_params", "unknown KDF algorithm", "only Argon2id13 (1)")
    hostile_b = resign(sa, generation=9, mem_kib=0xFFFFFFFF)
    bad(
        "kdf-hostile-slot-b-beside-valid-a",
        put(data, SLOT_B, hostile_b),
        "kdf_params",
        "outside the allowed range",
        "a hostile slot is refused even when the other slot is fine",
    )

    # -- header ------------------------------------------------------------------------------
    corrupt("file-empty", b"", "shorter than its header", "zero bytes")
    corrupt("file-magic-only", data[:8], "shorter than its header", "just the magic")
    corrupt("file-magic-prefix", data[:4], "shorter than its header", "a prefix of the magic")
    corrupt("file-short-garbage", b"PK\x03\x04zip", "not a cbk-vault file", "a short file of another kind")
    corrupt("file-header-only", data[:40], "shorter than its header", "header without tag and slots")
    corrupt("file-one-byte-short", data[: HEAD - 1], "shorter than its header", "slot B one byte short")
    corrupt("header-magic-first-byte", flip(data, 0), "not a cbk-vault file", "magic byte 0")
    corrupt("header-magic-last-byte", flip(data, 7), "not a cbk-vault file", "magic byte 7")
    corrupt("header-magic-lowercase", put(data, 0, b"cbkvault"), "not a cbk-vault file", "magic is case-sensitive")
    for i in (9, 12, 15):
        corrupt(f"header-reserved-{i}", flip(data, i), "reserved header bytes", f"reserved byte at offset {i}")
    corrupt(
        "header-vault-id-changed", flip(data, 16), "does not belong to this vault", "the wrapped key binds the vault id"
    )
    corrupt(
        "header-epoch-changed",
        put(data, 32, (1).to_bytes(8, "big")),
        "header fails its integrity",
        "the header tag covers the epoch",
    )
    corrupt(
        "header-version-2-on-v1-file",
        put(data, 8, b"\x02"),
        "header fails its integrity",
        "a v1 file relabelled v2: the header tag covers the version byte",
    )
    corrupt(
        "header-version-3-on-v1-file",
        put(data, 8, b"\x03"),
        "header fails its integrity",
        "a v1 file relabelled v3: the header tag covers the version byte",
    )
    corrupt("header-tag-first-byte", flip(data, 40), "header fails its integrity", "header tag byte 0")
    corrupt("header-tag-last-byte", flip(data, 71), "header fails its integrity", "header tag byte 31")
    corrupt(
        "header-from-other-vault",
        put(data, 0, other.data[:72]),
        "does not belong to this vault",
        "another vault's header and tag in front of our slot",
    )

    # -- key slots ------------------------------------------------------------------------------
    corrupt("slots-both-empty", put(data, SLOT_A, bytes(256)), "no intact key slot", "both slots zero")
    corrupt("slot-a-checksum-flipped", flip(data, SLOT_A + 136), "no intact key slot", "checksum byte 0")
    corrupt("slot-a-body-flipped", flip(data, SLOT_A + 30), "no intact key slot", "salt byte without a new checksum")
    corrupt(
        "slot-a-magic-changed",
        put(data, SLOT_A, make_slot(magic=b"CKS2", generation=1, salt=f["salt"], wrapped=f["wrapped"])),
        "no intact key slot",
        "slot magic CKS2 (checksum recomputed)",
    )
    corrupt(
        "slot-a-reserved-set",
        put(data, SLOT_A, make_slot(reserved=b"\0\0\1", generation=1, salt=f["salt"], wrapped=f["wrapped"])),
        "no intact key slot",
        "slot reserved bytes (checksum recomputed)",
    )
    corrupt("slot-a-padding-set", flip(data, SLOT_A + 255), "no intact key slot", "the slot's zero padding")
    corrupt("slots-duplicate", put(data, SLOT_B, sa), "share a generation", "slot B a copy of slot A")
    salt_x = rng(16)
    dup2 = make_slot(
        generation=1, salt=salt_x, wrapped=wrap(NEW_PASSPHRASE, salt_x, ref.data_key, ref.vault_id, 1, rng)
    )
    corrupt("slots-same-generation", put(data, SLOT_B, dup2), "share a generation", "two different slots, generation 1")
    corrupt(
        "slot-generation-changed",
        put(data, SLOT_A, resign(sa, generation=5)),
        "does not belong to this vault",
        "the wrapped key binds the generation (checksum recomputed)",
    )
    corrupt(
        "slot-generation-0",
        put(data, SLOT_A, resign(sa, generation=0)),
        "does not belong to this vault",
        "generation 0 against a key wrapped for 1",
    )
    wrong_id = make_slot(
        generation=1, salt=f["salt"], wrapped=wrap(PASSPHRASE, f["salt"], ref.data_key, other.vault_id, 1, rng)
    )
    corrupt(
        "slot-wrapped-for-other-vault-id",
        put(data, SLOT_A, wrong_id),
        "does not belong to this vault",
        "the right key wrapped with another vault id",
    )
    corrupt(
        "slot-from-other-vault",
        put(data, SLOT_A, other.slot_a),
        "does not belong to this vault",
        "another vault's slot (same passphrase)",
    )

    # -- frame framing -------------------------------------------------------------------------
    f1, fl = frames[1].offset, last.offset
    corrupt("frame-complement-middle", flip(data, f1 + 7), "bad frame header", "a middle frame's ~len")
    corrupt("frame-complement-last", flip(data, fl + 7), "bad frame header", "the last frame's ~len (not torn)")
    corrupt("frame-length-middle", flip(data, f1 + 3), "bad frame header", "a middle frame's length")
    for name, n, why in [
        ("frame-length-zero", 0, "zero"),
        ("frame-length-below-min", _format.MIN_SEALED - 1, "one below the minimum sealed size"),
        ("frame-length-above-max", _format.MAX_SEALED + 1, "one above the 64 MiB maximum"),
        ("frame-length-max-u32", 0xFFFFFFFF, "4 GiB"),
    ]:
        corrupt(
            name,
            put(data, f1, struct.pack(">II", n, n ^ 0xFFFFFFFF)),
            "frame length out of range",
            why + " (complement matching)",
        )
    corrupt(
        "frame-tag-middle",
        flip(data, frames[2].offset + len(frames[2].body)),
        "fails its integrity check",
        "a middle frame's chain tag",
    )
    corrupt("frame-tag-last", flip(data, len(data) - 1), "fails its integrity check", "the last chain tag")
    corrupt("frame-nonce-flipped", flip(data, f1 + 8), "fails its integrity check", "covered by the chain tag")
    corrupt("frame-box-flipped", flip(data, f1 + 60), "fails its integrity check", "covered by the chain tag")
    raws = [fr.raw for fr in frames]
    corrupt(
        "frames-swapped",
        data[:HEAD] + b"".join([raws[0], raws[2], raws[1], raws[3], raws[4]]),
        "fails its integrity check",
        "frames 1 and 2 swapped",
    )
    corrupt(
        "frame-removed-middle",
        data[:HEAD] + b"".join(raws[:2] + raws[3:]),
        "fails its integrity check",
        "frame 2 dropped",
    )
    corrupt("frame-removed-first", data[:HEAD] + b"".join(raws[1:]), "fails its integrity check", "frame 0 dropped")
    corrupt("frame-replayed", data + raws[1], "fails its integrity check", "frame 1 appended again")
    corrupt(
        "frame-from-other-vault",
        data + other.frames[0].raw,
        "fails its integrity check",
        "another vault's first frame appended",
    )
    corrupt(
        "frames-from-other-vault",
        data[:HEAD] + b"".join(fr.raw for fr in other.frames),
        "fails its integrity check",
        "all frames replaced by another vault's",
    )
    corrupt("garbage-tail", data + bytes(range(1, 101)), "bad frame header", "bytes with no zero run: not torn")
    # A body whose chain tag is right but whose box does not open: only a key holder could chain it.
    resealed = bytearray(frames[1].body)
    resealed[40] ^= 1
    bodies = [fr.body for fr in frames]
    bodies[1] = bytes(resealed)
    corrupt("frame-box-rechained", ref.assemble(bodies), "fails to decrypt", "chain tag recomputed over a bad box")
    corrupt(
        "frame-box-other-key",
        ref.assemble([fr.body for fr in frames[:1]] + [other.frames[1].body]),
        "fails to decrypt",
        "another vault's sealed frame, chained with our key",
    )

    # -- frame plaintext (sealed and chained with the key: a writer's bug or a key holder) ---------
    e1, s1, ops1 = ref.plaintext(1)
    corrupt(
        "frame-epoch-wrong", ref.with_frame(1, [1, s1, ops1]), "frame out of sequence", "epoch 1 in an epoch-0 file"
    )
    corrupt("frame-seq-wrong", ref.with_frame(1, [e1, 7, ops1]), "frame out of sequence", "sequence 7 at position 1")
    corrupt("frame-seq-repeated", ref.with_frame(1, [e1, 0, ops1]), "frame out of sequence", "sequence 0 twice")
    corrupt("frame-seq-negative", ref.with_frame(1, [e1, -1, ops1]), "frame out of sequence", "sequence -1")
    packed = msgpack.packb([e1, s1, ops1], use_bin_type=True)

    def raw_frame(plain: bytes) -> bytes:
        bodies = [fr.body for fr in frames]
        bodies[1] = ref.seal_plain(plain)
        return ref.assemble(bodies)

    unmarked = packed + b"\x01"  # the record ends in an empty map (0x80): end on a byte that is no marker
    corrupt(
        "frame-pad-missing-marker",
        raw_frame(unmarked + bytes(-len(unmarked) % 64)),
        "bad padding",
        "zeros without the 0x80 marker",
    )
    corrupt("frame-pad-all-zero", raw_frame(bytes(64)), "bad padding", "a block of zeros, no marker, no data")
    corrupt(
        "frame-pad-nonzero-after-marker",
        raw_frame(_format.pad(packed, 64)[:-1] + b"\x01"),
        "bad padding",
        "a 1 after the marker",
    )
    corrupt(
        "frame-pad-too-long",
        raw_frame(_format.pad(packed, 64) + bytes(64)),
        "bad padding",
        "a whole extra block of padding",
    )
    corrupt("frame-pad-not-block", raw_frame(_format.pad(packed, 64)[:-1]), "bad padding", "not a multiple of 64")
    corrupt(
        "frame-pad-empty",
        raw_frame(b""),
        "frame length out of range",
        "an empty plaintext seals to less than the minimum frame",
    )
    corrupt("frame-not-msgpack", raw_frame(_format.pad(b"\xc1", 64)), "undecodable record", "0xc1 is never valid")
    corrupt(
        "frame-trailing-bytes",
        raw_frame(_format.pad(packed + b"\x00", 64)),
        "undecodable record",
        "one object plus a trailing byte",
    )
    corrupt(
        "frame-ext-type",
        ref.with_frame(1, [e1, s1, [msgpack.ExtType(5, b"x")]]),
        "undecodable record",
        "msgpack extension types are refused",
    )
    corrupt("frame-int-map-key", ref.with_entry(1, meta={1: "x"}), "undecodable record", "a non-string map key")
    corrupt(
        "frame-bad-utf8",
        raw_frame(_format.pad(packed.replace(b"beta", b"b\xffta"), 64)),
        "undecodable record",
        "a str that is not UTF-8",
    )
    corrupt("frame-not-a-list", ref.with_frame(1, {"epoch": 0}), "malformed frame", "a map, not [epoch, seq, ops]")
    corrupt("frame-two-items", ref.with_frame(1, [e1, s1]), "malformed frame", "[epoch, seq] only")
    corrupt("frame-ops-not-a-list", ref.with_frame(1, [e1, s1, {"op": 1}]), "malformed frame", "ops a map")

    # -- operations ------------------------------------------------------------------------------
    corrupt("op-not-a-list", ref.with_op(1, 5), "malformed operation", "an op that is an int")
    corrupt("op-empty", ref.with_op(1, []), "malformed operation", "an empty op")
    corrupt("op-unknown-code", ref.with_op(1, [9, "x"]), "unknown operation", "op code 9")
    corrupt("op-put-arity", ref.with_op(1, [_format.OP_PUT, ref.entry(1), 1]), "unknown operation", "PUT with 3 items")
    corrupt(
        "op-delete-unknown",
        ref.with_op(1, [_format.OP_DELETE, "b" * 24]),
        "delete of an unknown secret",
        "delete of an id never created",
    )
    corrupt(
        "op-delete-not-str", ref.with_op(1, [_format.OP_DELETE, 5]), "delete of an unknown secret", "delete of an int"
    )
    corrupt("op-setting-int-key", ref.with_op(1, [_format.OP_SETTING, 5, 1]), "unknown operation", "setting key 5")
    corrupt("op-setting-arity", ref.with_op(1, [_format.OP_SETTING, "k"]), "unknown operation", "setting without value")

    # -- record fields -------------------------------------------------------------------------------
    entry = ref.entry(1)
    corrupt("record-short", ref.with_op(1, [_format.OP_PUT, entry[:-1]]), "malformed record", "15 fields, not 16")
    corrupt("record-long", ref.with_op(1, [_format.OP_PUT, [*entry, None]]), "malformed record", "17 fields")
    corrupt("record-not-a-list", ref.with_op(1, [_format.OP_PUT, {"id": entry[0]}]), "malformed record", "a map")
    table3: Changes = [
        ("record-id-uppercase", {"id": "B" + entry[0][1:]}, "ids are lowercase"),
        ("record-id-short", {"id": entry[0][:23]}, "23 characters"),
        ("record-id-digit-first", {"id": "1" + entry[0][1:]}, "ids start with a letter"),
        ("record-id-int", {"id": 5}, "an int id"),
        ("record-rev-0", {"rev": 0}, "revisions start at 1"),
        ("record-rev-negative", {"rev": -1}, "a negative revision"),
        ("record-rev-bool", {"rev": True}, "True is not the integer 1"),
        ("record-rev-huge", {"rev": 1 << 63}, "above 2^63-1"),
        ("record-created-negative", {"created_at": -5}, "a negative timestamp"),
        ("record-updated-float", {"updated_at": 1.5}, "a float timestamp"),
        ("record-name-int", {"name": 7}, "name must be a string"),
        ("record-name-too-long", {"name": "n" * (_format.MAX_NAME + 1)}, "name over 1024 characters"),
        ("record-description-none", {"description": None}, "description must be a string"),
        ("record-kind-invalid", {"kind": "team"}, "kind outside shared/personal"),
        ("record-type-invalid", {"type": "password"}, "type outside the cloud's seven"),
        ("record-visibility-invalid", {"visibility": "secret"}, "visibility outside the three"),
        ("record-alias-empty", {"alias": ""}, "an empty alias is stored as None"),
        ("record-alias-uppercase", {"alias": "Beta"}, "alias pattern"),
        ("record-alias-too-long", {"alias": "a" * 129}, "alias over 128"),
        ("record-meta-list", {"meta": [1]}, "meta must be a map"),
        ("record-config-str", {"config": "x"}, "config must be a map"),
        ("record-blueprint-too-long", {"blueprint_id": "b" * 129}, "blueprint id over 128"),
        ("record-value-rev-above-rev", {"value_rev": 2}, "value revision after the record's"),
        ("record-value-box-short", {"value_box": b"x" * 39}, "shorter than nonce plus MAC"),
        ("record-value-box-str", {"value_box": "box"}, "a str box"),
        ("record-ext-list", {"ext": []}, "ext must be a map"),
    ]
    for name, changes, why in table3:
        corrupt(name, ref.with_entry(1, **changes), "malformed record", why)
    upd = ref.entry(3)
    upd[1] = 3
    corrupt(
        "record-rev-skips",
        ref.with_op(3, [_format.OP_PUT, upd]),
        "revision out of sequence",
        "an update from revision 1 to 3",
    )
    upd = ref.entry(3)
    upd[1] = upd[_format.ENTRY_FIELDS.index("value_rev")] = 1
    corrupt(
        "record-rev-repeats",
        ref.with_op(3, [_format.OP_PUT, upd]),
        "revision out of sequence",
        "an update that keeps revision 1 (a replayed record)",
    )
    corrupt(
        "record-alias-shared",
        ref.with_entry(1, alias="alpha"),
        "two secrets share an alias",
        "beta claims alpha's alias",
    )

    # -- values (sealed boxes inside records; checked when the value is fetched) -------------------
    alpha1, beta1 = ref.entry(0), ref.entry(1)
    VB = _format.ENTRY_FIELDS.index("value_box")

    def fetch_corrupt(name: str, blob: bytes, error: str, why: str) -> None:
        corrupt(name, blob, error, why + "; open succeeds, fetching the value fails", stage="fetch")

    fetch_corrupt(
        "value-box-of-other-record",
        ref.with_entry(1, value_box=alpha1[VB]),
        "bound to another record",
        "alpha's box in beta's record",
    )
    fetch_corrupt(
        "value-box-older-revision",
        ref.with_entry(3, value_box=alpha1[VB]),
        "bound to another record",
        "alpha's revision-1 box in its revision-2 record",
    )
    fetch_corrupt(
        "value-rev-rolled-back",
        ref.with_entry(3, value_rev=1),
        "bound to another record",
        "value revision 1 against a box bound to 2",
    )
    fetch_corrupt(
        "value-box-flipped",
        ref.with_entry(1, value_box=flip(beta1[VB], 30)),
        "fails its integrity check",
        "one bit of beta's box",
    )
    fetch_corrupt(
        "value-box-other-vault",
        ref.with_entry(1, value_box=other.entry(1)[VB]),
        "fails its integrity check",
        "the other vault's box for its beta (another key)",
    )

    def value_box(plain: bytes) -> bytes:
        return _crypto.seal(ref.keys.value, plain, rng)

    bid = beta1[0]
    fetch_corrupt(
        "value-bound-other-vault-id",
        ref.with_entry(1, value_box=value_box(_format.value_plaintext(other.vault_id, bid, 1, "beta-1"))),
        "bound to another record",
        "a box under our key naming another vault id",
    )
    fetch_corrupt(
        "value-pad-bad",
        ref.with_entry(1, value_box=value_box(msgpack.packb([ref.vault_id, bid, 1, "beta-1"], use_bin_type=True))),
        "bad padding",
        "no padding",
    )
    fetch_corrupt(
        "value-not-4-list",
        ref.with_entry(
            1, value_box=value_box(_format.pad(msgpack.packb([ref.vault_id, bid, 1], use_bin_type=True), 256))
        ),
        "malformed value",
        "three items, not four",
    )
    fetch_corrupt(
        "value-not-str",
        ref.with_entry(
            1, value_box=value_box(_format.pad(msgpack.packb([ref.vault_id, bid, 1, b"bytes"], use_bin_type=True), 256))
        ),
        "malformed value",
        "the value as bytes",
    )
    fetch_corrupt(
        "value-not-msgpack",
        ref.with_entry(1, value_box=value_box(_format.pad(b"\xc1", 256))),
        "undecodable record",
        "0xc1 inside the value box",
    )
    cases.extend(build_v2_cases(work, ref))
    cases.extend(build_v3_cases(work))
    return cases


def build_v2_cases(work: Path, v1: Ref) -> list[Case]:
    """Format version 2: the trash and past-revision operations (4 TRASH, 5 REVISION, 6 TRASHED)."""
    path = work / "ref2.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=Clock(), _rng=SeededRng(21), _version=2) as v:
        a = v.secret.create(name="alpha", value="alpha-1", alias="alpha")  # frame 0
        v.secret.update(a.id, value="alpha-2")  # frame 1
        b = v.secret.create(name="beta", value="beta-1", alias="beta")  # frame 2
        v.secret.delete(b.id)  # frame 3: TRASH
        final = content_of(v)
    ref = load_ref(path, [])
    assert len(ref.frames) == 4 and ref.header[8] == 2 and ref.plaintext(3)[2][0][0] == _format.OP_TRASH
    alpha1, alpha2, beta1 = ref.entry(0), ref.entry(1), ref.entry(2)
    at = ref.plaintext(3)[2][0][2]
    cases: list[Case] = []

    def ok(name: str, blob: bytes, comment: str, content: Content) -> None:
        cases.append(Case(name, blob, "success", comment, content=content))

    def corrupt(name: str, blob: bytes, error: str, comment: str) -> None:
        cases.append(Case(name, blob, "corrupt", comment, error=error))

    def v2_file(*ops_frames: list[list[Any]]) -> bytes:
        return ref.assemble([ref.body_for([0, i, ops]) for i, ops in enumerate(ops_frames)])

    ok("v2-ok-reference", ref.data, "v2: create, update, create, delete to the trash (TRASH op)", final)
    with vault.open(path, PASSPHRASE, clock=Clock(), _rng=SeededRng(22), _version=2) as v:
        v.compact()
    ok("v2-ok-compacted", path.read_bytes(), "v2 compacted: REVISION, PUT, TRASHED", final)
    ok(
        "v2-ok-undelete",
        v2_file([[1, alpha1]], [[1, beta1]], [[4, beta1[0], at]], [[1, [beta1[0], 2, *beta1[2:]]]]),
        "a PUT of the next revision takes a record out of the trash",
        sorted([["alpha", "alpha-1", ""], ["beta", "beta-1", ""]]),
    )
    ok(
        "v2-ok-purge-trashed",
        v2_file([[1, alpha1]], [[1, beta1]], [[4, beta1[0], at]], [[2, beta1[0]]]),
        "a DELETE purges a trashed record",
        [["alpha", "alpha-1", ""]],
    )
    ok(
        "v2-ok-revisions-then-trashed",
        v2_file([[5, alpha1], [6, alpha2, at], [1, beta1]]),
        "a past revision, then the record in the trash (compacted form); its alias is not claimed",
        [["beta", "beta-1", ""]],
    )
    corrupt(
        "v2-trash-in-v1-file",
        v1.with_op(1, [_format.OP_TRASH, v1.entry(1)[0], at]),
        "unknown operation",
        "a version-1 file cannot hold a TRASH op",
    )
    corrupt(
        "v2-revision-in-v1-file",
        v1.with_op(1, [_format.OP_REVISION, v1.entry(1)]),
        "unknown operation",
        "a version-1 file cannot hold a REVISION op",
    )
    corrupt(
        "v2-trash-unknown",
        v2_file([[1, alpha1]], [[4, "b" * 24, at]]),
        "trash of an unknown secret",
        "TRASH of an id never created",
    )
    corrupt(
        "v2-trash-twice",
        v2_file([[1, alpha1]], [[4, alpha1[0], at]], [[4, alpha1[0], at]]),
        "trash of an unknown secret",
        "TRASH of a record already in the trash",
    )
    corrupt(
        "v2-trash-time-negative",
        v2_file([[1, alpha1]], [[4, alpha1[0], -1]]),
        "malformed trash operation",
        "deletedAt below zero",
    )
    corrupt(
        "v2-trash-arity",
        v2_file([[1, alpha1]], [[4, alpha1[0]]]),
        "unknown operation",
        "TRASH without deletedAt",
    )
    corrupt(
        "v2-undelete-rev-skips",
        v2_file([[1, alpha1]], [[4, alpha1[0], at]], [[1, [alpha1[0], 3, *alpha1[2:]]]]),
        "revision out of sequence",
        "a PUT of a trashed record must be its revision + 1",
    )
    corrupt(
        "v2-revision-of-live",
        v2_file([[1, alpha1]], [[5, alpha1]]),
        "revision out of sequence",
        "a REVISION of a live record",
    )
    corrupt(
        "v2-revision-gap",
        v2_file([[5, alpha1], [5, [alpha1[0], 3, *alpha1[2:]]]]),
        "revision out of sequence",
        "past revisions 1 then 3",
    )
    corrupt(
        "v2-put-after-revision-skips",
        v2_file([[5, alpha1], [1, [alpha1[0], 3, *alpha1[2:]]]]),
        "revision out of sequence",
        "the PUT after past revision 1 must be revision 2",
    )
    corrupt(
        "v2-trashed-of-live",
        v2_file([[1, alpha1]], [[6, alpha1, at]]),
        "revision out of sequence",
        "a TRASHED record that is live",
    )
    corrupt(
        "v2-trashed-arity",
        v2_file([[6, alpha1]]),
        "unknown operation",
        "TRASHED without deletedAt",
    )
    corrupt(
        "v2-revision-malformed",
        v2_file([[5, alpha1[:-1]]]),
        "malformed record",
        "a REVISION whose record has 15 fields",
    )
    corrupt(
        "v2-delete-after-purge",
        v2_file([[1, alpha1]], [[4, alpha1[0], at]], [[2, alpha1[0]]], [[2, alpha1[0]]]),
        "delete of an unknown secret",
        "a purged record cannot be deleted again",
    )
    return cases


def build_v3_cases(work: Path) -> list[Case]:
    """Format version 3: the checkpoint (7 CHECKPOINT) that compaction writes, and the log tail after it."""
    path = work / "ref3.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=Clock(), _rng=SeededRng(31)) as v:
        a = v.secret.create(name="alpha", value="alpha-1", alias="alpha")
        b = v.secret.create(name="beta", value="beta-1")
        v.secret.create(name="gamma", value="gamma-1", alias="gamma")
        v.set_retention(history=0)
        v.compact()  # frame 0: the SETTING and one CHECKPOINT of the three records
        compacted = content_of(v)
        compacted_bytes = path.read_bytes()
        v.secret.update(a.id, value="alpha-2")  # frame 2: a PUT of a checkpoint record (rev 2)
        v.secret.delete(b.id)  # frame 3: TRASH of a checkpoint record
        final = content_of(v)
    ref = load_ref(path, [])
    assert ref.header[8] == 3 and len(ref.frames) == 3
    settings_op = ref.plaintext(0)[2][:1]
    cp = ref.plaintext(0)[2][1]
    assert cp[0] == _format.OP_CHECKPOINT and len(cp[1]) == 3
    put_alpha = ref.plaintext(1)[2][0]
    cases: list[Case] = []

    def ok(name: str, blob: bytes, comment: str, content: Content) -> None:
        cases.append(Case(name, blob, "success", comment, content=content))

    def corrupt(name: str, blob: bytes, error: str, comment: str, stage: str = "open") -> None:
        cases.append(Case(name, blob, "corrupt", comment, error=error, stage=stage))

    def v3_file(*ops_frames: list[list[Any]], header: bytes | None = None) -> bytes:
        return ref.assemble([ref.body_for([1, i, ops]) for i, ops in enumerate(ops_frames)], header=header)

    def with_cp(**changes: Any) -> list[Any]:
        op = [list(c) if isinstance(c, list) else c for c in cp]
        for column, value in changes.items():
            op[{"ids": 1, "created": 2, "names": 3, "aliases": 4, "records": 5}[column]] = value
        return op

    def part(sl: slice) -> list[Any]:
        return with_cp(ids=cp[1][sl], created=cp[2][sl], names=cp[3][sl], aliases=cp[4][sl], records=cp[5][sl])

    def record(i: int) -> list[Any]:
        out: list[Any] = msgpack.unpackb(cp[5][i], raw=False)
        return out

    def packed(fields: list[Any]) -> bytes:
        return bytes(msgpack.packb(fields, use_bin_type=True))

    ok("v3-ok-compacted", compacted_bytes, "v3 compacted: a SETTING and a CHECKPOINT of three records", compacted)
    ok("v3-ok-checkpoint-then-tail", ref.data, "v3: a checkpoint, then a PUT and a TRASH of its records", final)
    ok(
        "v3-ok-two-checkpoint-ops",
        v3_file(settings_op, [part(slice(0, 1))], [part(slice(1, 3))]),
        "a checkpoint split over two ops in two frames reads as one",
        compacted,
    )
    v2_header = ref.header[:8] + b"\x02" + ref.header[9:]
    corrupt(
        "v3-checkpoint-in-v2-file",
        v3_file(settings_op, [cp], header=v2_header),
        "unknown operation",
        "a version-2 file cannot hold a CHECKPOINT op",
    )
    corrupt("v3-checkpoint-arity", v3_file([cp[:5]]), "malformed checkpoint", "a CHECKPOINT op with five items")
    corrupt(
        "v3-checkpoint-column-short",
        v3_file([with_cp(names=cp[3][:2])]),
        "malformed checkpoint",
        "the names column is one shorter than the ids",
    )
    corrupt(
        "v3-checkpoint-id-not-str",
        v3_file([with_cp(ids=[cp[1][0], 7, cp[1][2]])]),
        "malformed checkpoint",
        "an id that is not a string",
    )
    corrupt(
        "v3-checkpoint-created-negative",
        v3_file([with_cp(created=[-1, *cp[2][1:]])]),
        "malformed checkpoint",
        "a createdAt below zero",
    )
    corrupt(
        "v3-checkpoint-record-not-bin",
        v3_file([with_cp(records=[record(0), *cp[5][1:]])]),
        "malformed checkpoint",
        "a record given as an array, not as packed bytes (bin)",
    )
    corrupt(
        "v3-checkpoint-empty-alias",
        v3_file([with_cp(aliases=["", *cp[4][1:]])]),
        "malformed checkpoint",
        "an empty alias (no alias is nil)",
    )
    corrupt(
        "v3-checkpoint-id-twice",
        v3_file([with_cp(ids=[cp[1][0], cp[1][0], cp[1][2]])]),
        "holds an id twice",
        "one id on two checkpoint records",
    )
    corrupt(
        "v3-checkpoint-id-already-live",
        v3_file([[_format.OP_PUT, record(0)]], [cp]),
        "not new",
        "a checkpoint record whose id a PUT already holds",
    )
    corrupt(
        "v3-checkpoint-alias-shared",
        v3_file([with_cp(aliases=["alpha", "alpha", None])]),
        "share an alias",
        "two checkpoint records with one alias",
    )
    corrupt(
        "v3-put-after-checkpoint-rev-skips",
        v3_file(settings_op, [cp], [[_format.OP_PUT, [put_alpha[1][0], 3, *put_alpha[1][2:]]]]),
        "revision out of sequence",
        "a PUT of a checkpoint record must be its revision + 1",
    )
    # Deferred checks: a checkpoint record is decoded when first used, and must agree with its columns.
    corrupt(
        "v3-checkpoint-record-other-id",
        v3_file([with_cp(records=[cp[5][1], cp[5][1], cp[5][2]])]),
        "differs from its index",
        "record 0's bytes are record 1's: its id is not its column's",
        stage="fetch",
    )
    corrupt(
        "v3-checkpoint-record-undecodable",
        v3_file([with_cp(records=[b"\xc1", *cp[5][1:]])]),
        "undecodable record",
        "a packed record that is not msgpack",
        stage="fetch",
    )
    corrupt(
        "v3-checkpoint-record-malformed",
        v3_file([with_cp(records=[packed(record(0)[:15]), *cp[5][1:]])]),
        "malformed record",
        "a packed record with 15 fields",
        stage="fetch",
    )
    # (A name column that is not the record's name is found when the record is looked up by name:
    # tests/test_checkpoint.py, test_a_name_column_that_is_not_the_records_name_is_found_by_name.)
    corrupt(
        "v3-checkpoint-created-differs",
        v3_file([with_cp(created=[cp[2][0] - 1, *cp[2][1:]])]),
        "differs from its index",
        "the createdAt column is not the record's",
        stage="fetch",
    )
    corrupt(
        "v3-checkpoint-alias-differs",
        v3_file([with_cp(aliases=["other", *cp[4][1:]])]),
        "differs from its index",
        "the alias column is not the record's alias",
        stage="fetch",
    )
    return cases


def generate(out_dir: Path) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(Path(tmp))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case name"
    return {f"{c.name}.vec": c.render() for c in cases}


def main() -> None:
    files = generate(CASES_DIR)
    CASES_DIR.mkdir(parents=True, exist_ok=True)
    for old in CASES_DIR.glob("*.vec"):
        if old.name not in files:
            old.unlink()
    for name, raw in files.items():
        (CASES_DIR / name).write_bytes(raw)
    digest = hashlib.sha256(b"".join(files[n] for n in sorted(files))).hexdigest()[:16]
    print(f"wrote {len(files)} vectors to {CASES_DIR} (set digest {digest})")


if __name__ == "__main__":
    main()
