"""The sealed, hash-chained log: frame sealing and the reader with its torn-tail rule. No I/O.

Each commit is one frame, so a commit is atomic by construction: a frame either
verifies (it is committed) or it is the torn tail of a write that never returned.
Each frame's tag chains from the previous tag (starting at the header tag), so
frames cannot be reordered, dropped from the middle, spliced from another epoch or
another vault, or edited without the reader noticing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _crypto, _format
from ._format import corrupt

__all__ = ["LogRead", "iter_log", "read_log", "seal_frame", "tail_is_torn"]


def seal_frame(
    keys: _crypto.Keys,
    prev_tag: bytes,
    epoch: int,
    seq: int,
    ops: list[list[Any]],
    rng: _crypto.RandomSource = _crypto.random_bytes,
) -> tuple[bytes, bytes]:
    """Frame bytes and the frame's chain tag (which the next frame chains from)."""
    sealed = _crypto.seal(keys.frame, _format.encode_frame_plaintext(epoch, seq, ops), rng)
    if len(sealed) > _format.MAX_SEALED:
        raise ValueError("frame too large")
    head = _format.FRAME_HEAD.pack(len(sealed), len(sealed) ^ 0xFFFFFFFF)
    body = head + sealed
    tag = _crypto.mac(keys.chain, prev_tag + body)
    return body + tag, tag


def tail_is_torn(tail: bytes | memoryview) -> bool:
    """Whether unverifiable bytes at the end of the file are a torn append, not damage.

    An append interrupted by a crash leaves a prefix of the frame, or a region the
    file system extended but never wrote (zeros). Sealed bytes never contain
    ``ZERO_RUN`` zeros in a row, and one flipped bit cannot create such a run, so
    this rule never mistakes a bit flip in a committed frame for a torn write.
    """
    data = bytes(tail)
    if len(data) < _format.FRAME_HEAD.size:
        return True
    if data.count(0) == len(data):
        return True
    return bytes(_format.ZERO_RUN) in data


@dataclass(slots=True)
class LogRead:
    frames: list[list[Any]] = field(default_factory=list)
    end: int = 0  # offset just past the last committed frame
    tag: bytes = b""  # chain tag of the last committed frame
    seq: int = 0  # sequence number the next frame must carry
    torn: bool = False  # bytes after ``end`` are a torn append


def read_log(
    keys: _crypto.Keys,
    data: bytes | memoryview,
    pos: int,
    prev_tag: bytes,
    epoch: int,
    seq: int,
) -> LogRead:
    """Verify and decode every committed frame from ``pos`` to the end of ``data``."""
    out = LogRead(end=pos, tag=prev_tag, seq=seq)
    out.frames = list(iter_log(keys, data, epoch, out))
    return out


def iter_log(keys: _crypto.Keys, data: bytes | memoryview, epoch: int, out: LogRead) -> Iterator[list[Any]]:
    """Yield each committed frame's ops in order, from ``out.end``, advancing ``out`` as it goes.

    ``out`` (end, tag, seq, torn) describes exactly the frames yielded so far, so a
    consumer that applies each frame and drops it never holds the whole decoded log:
    opening 100k secrets held ~25 MiB of decoded lists at once before.
    """
    view = memoryview(data)
    n = len(view)
    pos = out.end
    head = _format.FRAME_HEAD
    while pos < n:
        if n - pos < head.size:
            out.torn = True
            break
        length, check = head.unpack_from(view, pos)
        if length ^ 0xFFFFFFFF != check:
            if tail_is_torn(view[pos:]):
                out.torn = True
                break
            raise corrupt(f"bad frame header at offset {pos}")
        if not _format.MIN_SEALED <= length <= _format.MAX_SEALED:
            raise corrupt(f"frame length out of range at offset {pos}")
        body_end = pos + head.size + length
        end = body_end + _format.FRAME_TAG_SIZE
        if end > n:
            out.torn = True  # the file ends inside the frame: an append that never finished
            break
        body = bytes(view[pos:body_end])
        tag = bytes(view[body_end:end])
        if not _crypto.macs_equal(_crypto.mac_chained(keys.chain, out.tag, body), tag):
            if end == n and tail_is_torn(view[pos:]):
                out.torn = True
                break
            raise corrupt(f"frame at offset {pos} fails its integrity check")
        try:
            plaintext = _crypto.open_box(keys.frame, body[head.size :])
        except _crypto.OpenFailed:
            raise corrupt(f"frame at offset {pos} fails to decrypt") from None
        ops = _format.decode_frame_plaintext(plaintext, epoch, out.seq)
        out.seq += 1
        out.tag = tag
        out.end = pos = end
        yield ops
