"""Leak checks: marker secrets must never reach the file, repr/str, logs, errors, tracebacks or temp files.

Markers are planted as a value, a passphrase and (for the file) name, description, meta
and config. The file bytes are searched raw, hex, base64 (every alignment) and UTF-16;
log records are captured on the root logger at DEBUG for the whole run, including the
housekeeping warnings a failing disk produces; every error raised along the way is
rendered with ``str``, ``repr``, ``to_dict`` and a full traceback
(``traceback.TracebackException``, locals not captured, causes included).
"""

from __future__ import annotations

import base64
import errno
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import vault
from tests._faults import FAST, Died, FaultIO, record_figure, umask

VALUE = "LEAKVALUE-3f9c1d-sk_live_canary"
VALUE2 = "LEAKVALUE2-8e2b77-rotated_canary"
PASS = "LEAKPASS-5a0e44-passphrase"
PASS2 = "LEAKPASS2-c1d2e3-new-passphrase"
NAME = "LEAKNAME-77aa01"
DESC = "LEAKDESC-19bb02"
META = "LEAKMETA-42cc03"
CONFIG = "LEAKCONF-aa9904"
IN_MEMORY = (VALUE, VALUE2, PASS, PASS2)
IN_FILE = (*IN_MEMORY, NAME, DESC, META, CONFIG)


def encodings(marker: str) -> list[bytes]:
    raw = marker.encode()
    out = [raw, raw.hex().encode(), raw.hex().upper().encode(), marker.encode("utf-16-le"), marker.encode("utf-16-be")]
    for shift in range(3):
        # base64 of a substring depends on its alignment: take the stable middle of each.
        for enc in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode):
            text = enc(b"\0" * shift + raw)
            out.append(text[4:-4])
    return out


def assert_absent(blob: bytes, markers: tuple[str, ...], where: str) -> int:
    checked = 0
    for marker in markers:
        for form in encodings(marker):
            assert form not in blob, f"{marker} found in {where}"
            checked += 1
    return checked


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("vault", "vault._vault", "vault._store")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def render_error(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.TracebackException.from_exception(exc).format())]
    if isinstance(exc, vault.VaultError):
        parts.append(repr(exc.to_dict()))
    return "\n".join(parts)


class _FailSecondFdatasync(FaultIO):
    """Let the new key slot commit, then fail erasing the old one: a logged housekeeping warning."""

    def fdatasync(self, fd: int) -> None:
        if self.armed and self.calls.count("fdatasync") == 1:
            self.fail_at = self.count + 1
        super().fdatasync(fd)


def test_markers_never_leak_anywhere(tmp_path: Path, logs: Capture) -> None:
    path = tmp_path / "leak.cbkv"
    errors: list[BaseException] = []
    texts: list[str] = []

    def expect_error(call: object, *args: object, **kwargs: object) -> None:
        assert callable(call)
        try:
            call(*args, **kwargs)
        except vault.VaultError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected a VaultError")

    with vault.init(path, PASS, kdf=FAST) as v:
        s = v.secret.create(
            name=NAME,
            description=DESC,
            value=VALUE,
            type="oauth",
            meta={"note": META},
            config={"clientId": "id", "clientSecret": CONFIG},
        )
        fetched = v.secret.fetch(s.id)
        assert fetched.value == VALUE
        texts += [repr(s), str(s), repr(fetched), str(fetched), repr(fetched.to_dict()), repr(v), str(v)]
        texts += [repr(v.secret), repr(v.secret.list()), str(v.secret.list())]
        with v.batch():
            v.secret.update(s.id, value=VALUE2)
        expect_error(v.secret.create, value=VALUE * 40_000)  # over the 1 MiB value limit
        expect_error(v.secret.create, value=VALUE, type="password")
        expect_error(v.secret.create, value=VALUE, colour=VALUE)
        expect_error(v.secret.update, s.id, value=VALUE2.encode())
        expect_error(v.secret.fetch, "nonexistent")
        v.compact()
        v.change_passphrase(PASS2)
    expect_error(vault.open, path, PASS)  # the old passphrase: wrong
    expect_error(vault.open, path, PASS + "x")
    expect_error(vault.init, path, PASS2, kdf=FAST)  # exists

    # A failing disk: the new slot commits, erasing the old one fails and is logged.
    io = _FailSecondFdatasync(armed=False, fail_errno=errno.EIO)
    with vault.open(path, PASS2, _io=io) as v:
        io.arm()
        v.change_passphrase(PASS, kdf=FAST)
        assert io.failed
        v.secret.create(name="x", value=VALUE)  # retries the erase
    assert any(r.levelno == logging.WARNING for r in logs.records), "the housekeeping warning was not logged"

    # A damaged value box: the error must not show the value it protects (nor the plaintext around it).
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    damaged = tmp_path / "damaged.cbkv"
    damaged.write_bytes(bytes(data))
    damaged.chmod(0o600)
    expect_error(vault.open, damaged, PASS)

    for exc in errors:
        texts.append(render_error(exc))
    for text in texts:
        for marker in IN_MEMORY:
            assert marker not in text, f"{marker} leaked into: {text[:200]}"
    for record in logs.records:
        rendered = record.getMessage() + repr(record.args) + (logging.Formatter().format(record))
        for marker in IN_MEMORY:
            assert marker not in rendered, f"{marker} in a log record"
    checked = 0
    names = sorted(p.name for p in tmp_path.iterdir())
    # No temp file left behind: only the vaults and their lock files.
    # (leak.cbkv.access: the sealed access log of the reads above, checked for markers too.)
    assert names == ["damaged.cbkv", "damaged.cbkv.lock", "leak.cbkv", "leak.cbkv.access", "leak.cbkv.lock"], names
    for p in tmp_path.iterdir():
        checked += assert_absent(p.read_bytes(), IN_FILE, p.name)
    record_figure(
        "leak_checks",
        checked + len(texts) * len(IN_MEMORY) + len(logs.records),
        file_forms=checked,
        texts=len(texts),
        errors=len(errors),
        log_records=len(logs.records),
    )


def test_a_temp_file_left_by_a_crash_holds_no_plaintext_and_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASS, kdf=FAST) as v:
        v.secret.create(name=NAME, description=DESC, value=VALUE)
    io = FaultIO(armed=False)
    v = vault.open(path, PASS, _io=io)
    io.arm()
    io.die_at = 3  # compaction: open the temp, write it, fsync it... and die before the rename
    with pytest.raises(Died):
        v.compact()
    io.bury()
    temps = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert len(temps) == 1
    assert_absent(temps[0].read_bytes(), IN_FILE, "the crashed compaction's temp file")
    assert temps[0].stat().st_mode & 0o777 == 0o600
    with vault.open(path, PASS) as v2:
        v2.compact()
        assert v2.secret.fetch(f"({NAME})").value == VALUE
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_files_are_0600_and_directories_0700_under_any_umask(mask: int, tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "v.cbkv"
    with umask(mask):
        with vault.init(path, PASS, kdf=FAST) as v:
            v.secret.create(value=VALUE)
            assert path.stat().st_mode & 0o777 == 0o600
            v.compact()  # a new file from a temp
            v.change_passphrase(PASS2)
        for p in path.parent.iterdir():
            assert p.stat().st_mode & 0o777 == 0o600, (oct(mask), p.name)
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
        assert path.parent.stat().st_mode & 0o777 == 0o700


def test_symlinked_vault_and_lock_paths_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.cbkv"
    vault.init(real, PASS, kdf=FAST).close()
    link = tmp_path / "link.cbkv"
    link.symlink_to(real)
    with pytest.raises(vault.InsecureFileError):
        vault.open(link, PASS)
    with pytest.raises(vault.VaultExistsError):  # init never writes through a symlink, dangling or not
        vault.init(link, PASS, kdf=FAST)
    dangling = tmp_path / "dangling.cbkv"
    dangling.symlink_to(tmp_path / "target-that-does-not-exist")
    with pytest.raises(vault.VaultError):
        vault.init(dangling, PASS, kdf=FAST)
    assert not (tmp_path / "target-that-does-not-exist").exists()
    # A planted lock-file symlink could make us create or truncate a file elsewhere.
    other = tmp_path / "other.cbkv"
    vault.init(other, PASS, kdf=FAST).close()
    lock = tmp_path / "other.cbkv.lock"
    lock.unlink()
    lock.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(vault.InsecureFileError):
        vault.open(other, PASS)
    assert not (tmp_path / "elsewhere").exists()
    # Group- or world-writable vault files are refused too.
    other.chmod(0o622)
    lock.unlink()
    with pytest.raises(vault.InsecureFileError):
        vault.open(other, PASS)


def test_internal_objects_hide_their_secrets(tmp_path: Path) -> None:
    """Keys, key slots and stored entries can surface in a debugger or a locals-capturing traceback."""
    import pickle

    from vault import _crypto, _format

    keys = _crypto.Keys.from_data_key(b"K" * 32)
    assert repr(keys) == "Keys(<hidden>)"
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASS, kdf=FAST) as v:
        v.secret.create(name=NAME, value=VALUE)
        with pytest.raises(TypeError):
            pickle.dumps(v)
    data = path.read_bytes()
    slot = _format.decode_slot(data[72:328])
    assert slot is not None
    assert repr(slot).startswith("Slot(generation=1, kdf=KdfParams(") and slot.salt.hex() not in repr(slot)
    entry = _format.decode_entry(
        ["a" * 24, 1, 0, 0, NAME, DESC, "shared", "plain", "private", None, None, None, None, 0, None, {}]
    )
    assert repr(entry) == f"Entry(id={'a' * 24!r}, rev=1)"
    with pytest.raises(TypeError):
        pickle.dumps(entry)


def test_a_value_that_fails_to_decode_leaves_no_plaintext_in_the_exception_chain(tmp_path: Path) -> None:
    # A box that opens (ours) but holds one byte past the msgpack object: msgpack's ExtraData
    # error carries the decoded [vault id, record id, revision, value] in its repr.
    from vault import _crypto, _format
    from vault._vault import engine_of

    with vault.init(tmp_path / "x.cbkv", "pass phrase", kdf=FAST) as v:
        s = v.secret.create(name="k", value="placeholder")
        engine = engine_of(v)
        keys = engine.keys()
        plain = _format.packb([keys.vault_id, s.id, 1, "hunter2-TOPSECRET"]) + b"\0"
        with engine.reading() as index:
            index.entries[s.id].value_box = _crypto.seal(keys.keys.value, _format.pad(plain, _format.VALUE_PAD))
        with pytest.raises(vault.CorruptVaultError) as info:
            v.secret.fetch(s.id)
    chain = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(repr(error))
        error = error.__cause__ or error.__context__
    assert "TOPSECRET" not in " ".join(chain)
    assert "TOPSECRET" not in "".join(traceback.format_exception(info.value))
