"""Peer stores for bench/run.py: pykeepass (KDBX) and keyrings.cryptfile, each at its lowest KDF cost.

Both are optional (the ``bench`` extra). Each adapter fills a store with N secrets the
fast way (one write at the end, so filling 10k takes seconds, not the ~15-30 minutes
that N separate adds would), then times the calls a user makes one at a time:
pykeepass ``add_entry()`` + ``save()`` and ``find_entries()``; cryptfile
``set_password()`` and ``get_password()``. Neither library calls fsync, so their
"durable" add is page-cache only: they are flattered, never handicapped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Timer = Callable[[], float]


def available() -> dict[str, str]:
    """Installed peers and their versions."""
    found: dict[str, str] = {}
    try:
        from importlib.metadata import version

        import pykeepass  # noqa: F401

        found["pykeepass"] = version("pykeepass")
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        import keyrings.cryptfile.cryptfile  # noqa: F401

        found["cryptfile"] = version("keyrings.cryptfile")
    except ImportError:
        pass
    return found


def _value(i: int) -> str:
    return f"sk_live_{i:032x}"


class KeePassPeer:
    """pykeepass 4.x on a KDBX4 file, KDF lowered to Argon2id t=1, 8 KiB, p=1; saves reuse transformed_key."""

    name = "pykeepass"

    def __init__(self, directory: Path) -> None:
        from pykeepass import PyKeePass, create_database
        from pykeepass.kdbx_parsing.kdbx4 import kdf_uuids

        self.path = str(directory / "peer.kdbx")
        # create_database() runs the shipped KDF (Argon2d, t=14, 64 MiB) once; lower it, then save.
        kp = create_database(self.path, password="bench-pass")
        params = kp.kdbx.header.value.dynamic_header.kdf_parameters.data.dict
        params["$UUID"].value = kdf_uuids["argon2id"]
        params["I"].value = 1
        params["M"].value = 8192
        params["P"].value = 1
        kp.save()
        self._open: Callable[[], Any] = lambda: PyKeePass(self.path, password="bench-pass")
        self.kp: Any = self._open()
        # The derived key, reused by every save: without it, save() re-salts and re-runs the KDF.
        self.key: bytes = self.kp.transformed_key
        self.count = 0

    def kdf_seconds(self) -> float:
        """One derivation at the lowered parameters, timed apart (it is excluded from the per-op figures)."""
        import argon2.low_level as a2

        t = time.perf_counter()
        a2.hash_secret_raw(b"bench-pass", os.urandom(32), 1, 8, 1, 32, a2.Type.ID)
        return time.perf_counter() - t

    def fill(self, n: int) -> None:
        from pykeepass.entry import Entry

        group = self.kp.root_group
        # Entry + append skips add_entry's XPath duplicate check, which alone makes a 10k fill take minutes.
        while self.count < n:
            i = self.count
            group.append(Entry(f"svc-{i}", "default", _value(i), notes=f"API key for service {i}", kp=self.kp))
            self.count += 1
        self.kp.save(transformed_key=self.key)
        self.kp = self._open()

    def add(self, i: int) -> None:
        # What a user runs to store one secret durably-ish (no fsync): add, then save the whole file.
        self.kp.add_entry(self.kp.root_group, f"new-{i}", "default", _value(i), force_creation=True)
        self.kp.save(transformed_key=self.key)
        self.count += 1

    def fetch(self, i: int) -> str:
        entry = self.kp.find_entries(title=f"svc-{i}", first=True)
        value: str = entry.password
        return value

    def size(self) -> int:
        return os.path.getsize(self.path)


class CryptFilePeer:
    """keyrings.cryptfile's CryptFileKeyring, Argon2id lowered to its minimum (t=1, 8 KiB, p=1)."""

    name = "cryptfile"

    def __init__(self, directory: Path) -> None:
        from keyrings.cryptfile.cryptfile import CryptFileKeyring

        path = str(directory / "cryptfile_pass.cfg")

        class _Ring(CryptFileKeyring):  # type: ignore[misc]
            time_cost = 1
            memory_cost = 8  # KiB: argon2-cffi's minimum for p=1
            parallelism = 1

            @property
            def file_path(self) -> str:
                return path

        self.path = path
        self.ring: Any = _Ring()
        self.ring.keyring_key = "bench-pass"  # creates the file with its password reference
        self.count = 0

    def kdf_seconds(self) -> float:
        import argon2.low_level as a2

        t = time.perf_counter()
        a2.hash_secret_raw(b"bench-pass", os.urandom(16), 1, 8, 1, 16, a2.Type.ID)
        return time.perf_counter() - t

    def fill(self, n: int) -> None:
        import configparser

        from keyrings.cryptfile.escape import escape
        from keyrings.cryptfile.file_base import encodebytes

        ring = self.ring
        config = configparser.RawConfigParser()
        config.read(self.path)
        ring._check_version(config)
        # The same bytes set_password writes, but one file write for the whole fill.
        while self.count < n:
            i = self.count
            service = f"svc-{i}"
            assoc = ring._generate_assoc(service, "default")
            sealed = ring.encrypt(_value(i).encode(), assoc)
            section = escape(service)
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, escape("default"), "\n" + encodebytes(sealed).decode())
            self.count += 1
        with open(self.path, "w") as fh:
            config.write(fh)

    def add(self, i: int) -> None:
        self.ring.set_password(f"new-{i}", "default", _value(i))
        self.count += 1

    def fetch(self, i: int) -> str:
        value: str = self.ring.get_password(f"svc-{i}", "default")
        return value

    def size(self) -> int:
        return os.path.getsize(self.path)


PEERS: dict[str, Callable[[Path], Any]] = {"pykeepass": KeePassPeer, "cryptfile": CryptFilePeer}
