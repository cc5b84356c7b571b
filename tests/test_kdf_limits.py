"""Hostile key-derivation parameters are refused fast and before any derivation (KeePassDX #2640).

A file's key slot names the Argon2id cost. If the reader believed it, a planted vault
could make ``open`` run for hours or allocate terabytes before the passphrase is even
checked. Every out-of-range vector (tests/vectors, expect ``kdf_params``) must fail with
``KdfParamsError`` and the KDF must not be called at all: both our wrapper and libsodium's
entry point are replaced by tripwires, then (with the real KDF) by counters that pass calls on.
Not calling the KDF is what makes the refusal fast; the time is recorded, never asserted,
because on a shared machine a time bound measures the neighbours.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest

import vault
import vault._crypto as crypto
from tests._faults import FAST, PASSPHRASE, record_figure
from tests.test_vectors import CASES, parse

HOSTILE = [c for c in CASES if parse(c.read_bytes())[0]["expect"] == "kdf_params"]
SLOT = struct.Struct(">4sQB3sII16s96s")


class Tripwire:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.calls += 1
        raise AssertionError("the KDF ran on hostile parameters")


class Counter:
    """Counts the calls and passes them on to the real function."""

    def __init__(self, real: Callable[..., bytes]) -> None:
        self.real = real
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.calls += 1
        return self.real(*args, **kwargs)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_there_are_hostile_vectors() -> None:
    assert len(HOSTILE) >= 10


@pytest.mark.parametrize("case", HOSTILE, ids=[c.stem for c in HOSTILE])
def test_hostile_parameters_refused_before_any_derivation(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields, data = parse(case.read_bytes())
    path = _write(tmp_path / "hostile.cbkv", data)
    ours, sodium = Tripwire(), Tripwire()
    monkeypatch.setattr(crypto, "derive_kek", ours)
    monkeypatch.setattr(nacl.bindings, "crypto_pwhash_alg", sodium)
    with pytest.raises(vault.KdfParamsError) as info:
        vault.open(path, fields["passphrase"])
    assert ours.calls == 0 and sodium.calls == 0
    assert info.value.code == "KDF_PARAMS"


def test_hostile_parameters_refused_fast_with_the_real_kdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No mocks: the real open of every hostile vector, the real KDF in place (only counted), timed together."""
    ours, sodium = Counter(crypto.derive_kek), Counter(nacl.bindings.crypto_pwhash_alg)
    monkeypatch.setattr(crypto, "derive_kek", ours)
    monkeypatch.setattr(nacl.bindings, "crypto_pwhash_alg", sodium)
    started = time.perf_counter()
    worst = 0.0
    for case in HOSTILE:
        fields, data = parse(case.read_bytes())
        path = _write(tmp_path / f"{case.stem}.cbkv", data)
        t0 = time.perf_counter()
        with pytest.raises(vault.KdfParamsError):
            vault.open(path, fields["passphrase"])
        worst = max(worst, time.perf_counter() - t0)
    assert ours.calls == 0 and sodium.calls == 0
    # A live control: the counters do see the KDF when a sound vault is opened.
    vault.init(tmp_path / "sound.cbkv", PASSPHRASE, kdf=FAST).close()
    vault.open(tmp_path / "sound.cbkv", PASSPHRASE).close()
    assert ours.calls >= 1 and sodium.calls >= 1
    record_figure(
        "kdf_hostile_refused",
        len(HOSTILE),
        worst_ms=round(worst * 1000, 3),
        total_ms=round((time.perf_counter() - started) * 1000, 3),
    )


@pytest.mark.parametrize(
    ("ops", "mem"),
    [(0, 8192), (17, 8192), (1, 4096), (1, (1 << 30) + 1024), (1, 8193), (True, 8192), (1, 8192.0), (2**40, 2**50)],
)
def test_writers_are_held_to_the_same_caps(ops: Any, mem: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """We never write a vault we would refuse to read (KeePassDX #2630), and refuse before deriving."""
    monkeypatch.setattr(nacl.bindings, "crypto_pwhash_alg", Tripwire())
    with pytest.raises(vault.InvalidRequestError):
        vault.KdfParams(opslimit=ops, memlimit=mem)
    assert not (tmp_path / "x.cbkv").exists()


def test_caps_admit_the_sensitive_preset_without_deriving() -> None:
    sensitive = crypto.KDF_PRESETS["sensitive"]
    crypto.check_kdf_limits(sensitive.opslimit, sensitive.memlimit)
    assert crypto.OPSLIMIT_CAP >= sensitive.opslimit and crypto.MEMLIMIT_CAP >= sensitive.memlimit


def test_bad_preset_name_and_change_passphrase_refused_before_deriving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        before = path.read_bytes()
        wire = Tripwire()
        monkeypatch.setattr(nacl.bindings, "crypto_pwhash_alg", wire)
        with pytest.raises(vault.InvalidRequestError):
            v.change_passphrase("new", kdf="extreme")
        assert wire.calls == 0
        assert path.read_bytes() == before
    with pytest.raises(vault.InvalidRequestError):
        vault.init(tmp_path / "w.cbkv", PASSPHRASE, kdf="extreme")
    assert not (tmp_path / "w.cbkv").exists()


def test_written_parameters_are_the_chosen_ones_and_at_least_the_floor(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf="interactive").close()
    _magic, gen, alg, _reserved, ops, mem_kib, _salt, _wrapped = SLOT.unpack(path.read_bytes()[72 : 72 + SLOT.size])
    preset = crypto.KDF_PRESETS["interactive"]
    assert (gen, alg, ops, mem_kib * 1024) == (1, 1, preset.opslimit, preset.memlimit)
    assert ops >= crypto.OPSLIMIT_MIN and mem_kib * 1024 >= crypto.MEMLIMIT_MIN


# --- other caps on what a caller or a file may demand ------------------------------------------


@pytest.mark.parametrize("passphrase", ["", b"", 5, None, ["a"]])
def test_passphrase_must_be_non_empty_text_or_bytes(passphrase: Any, tmp_path: Path) -> None:
    with pytest.raises(vault.InvalidRequestError):
        vault.init(tmp_path / "v.cbkv", passphrase, kdf=FAST)
    assert not (tmp_path / "v.cbkv").exists()


def test_bytes_and_nfc_equivalent_passphrases_open_the_same_vault(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, "caf\u00e9 au lait", kdf=FAST).close()
    vault.open(path, "cafe\u0301 au lait").close()  # NFD typed elsewhere: the same after NFC
    vault.open(path, "caf\u00e9 au lait".encode()).close()
    vault.open(path, bytearray("caf\u00e9 au lait".encode())).close()  # type: ignore[arg-type]  # accepted too


def test_meta_nesting_is_capped(tmp_path: Path) -> None:
    with vault.init(tmp_path / "v.cbkv", PASSPHRASE, kdf=FAST) as v:
        deep: Any = "leaf"
        for _ in range(12):
            deep = {"k": [deep]}
        with pytest.raises(vault.InvalidRequestError):
            v.secret.create(meta=deep)
        v.secret.create(meta={"a": [{"b": [1, 2.5, True, None]}]})
        assert len(v) == 1


def test_a_batch_over_the_frame_cap_is_refused_whole(tmp_path: Path) -> None:
    """One commit is one frame, at most 64 MiB sealed; a bigger batch fails cleanly and changes nothing."""
    path = tmp_path / "v.cbkv"
    big = "x" * (1 << 20)  # the largest value allowed
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        before = path.read_bytes()
        with pytest.raises(vault.InvalidRequestError) as info:
            with v.batch():
                for i in range(65):
                    v.secret.create(name=f"big-{i}", value=big)
        assert "split the batch" in info.value.message
        assert len(v) == 0 and path.read_bytes() == before
        v.secret.create(name="after", value=big)
        assert len(v) == 1
