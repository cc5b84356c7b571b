"""Run every format test vector in tests/vectors/cases/ and assert its exact outcome.

Each file states what opening it must do (see tests/vectors/generate.py): succeed with
exact contents, or fail with exactly one error class (not a parent, not a subclass) whose
message names the reason, at ``open`` or, for sealed values, at ``fetch``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import vault
from tests._faults import record_figure

VECTORS = Path(__file__).resolve().parent / "vectors"
CASES = sorted((VECTORS / "cases").glob("*.vec"))

EXPECT: dict[str, type[vault.VaultError] | None] = {
    "success": None,
    "wrong_passphrase": vault.WrongPassphraseError,
    "corrupt": vault.CorruptVaultError,
    "unsupported_version": vault.UnsupportedVersionError,
    "kdf_params": vault.KdfParamsError,
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cbkv_vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def parse(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, data = raw.partition(b"\n\n")
    assert sep, "no blank line after the header"
    lines = head.decode().split("\n")
    assert lines[0] == "cbkv-vector 1"
    return dict(line.split(": ", 1) for line in lines[1:]), data


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cbkv-vec-") as d:
        yield Path(d)


def _content(v: vault.Vault) -> list[list[Any]]:
    out = []
    for item in v.secret.list(order="asc", take=100).items:
        s = v.secret.fetch(item.id)
        out.append([s.name, s.value, s.description])
    return sorted(out)


def run_vector(fields: dict[str, str], data: bytes, where: Path) -> tuple[str, str]:
    """Open the vector's bytes; return (stage reached or failed at, error class name or 'success')."""
    path = where / "vector.cbkv"
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    expected_class = EXPECT[fields["expect"]]
    stage = "open"
    try:
        with vault.open(path, fields["passphrase"]) as v:
            stage = "fetch"
            content = _content(v)
    except vault.VaultError as exc:
        assert expected_class is not None, f"unexpected {exc!r}"
        assert type(exc) is expected_class, f"{type(exc).__name__} ({exc}), expected {expected_class.__name__}"
        assert fields.get("error-contains", "") in exc.message, exc.message
        assert stage == fields["stage"], f"failed at {stage}, expected at {fields['stage']}"
        return stage, type(exc).__name__
    assert expected_class is None, f"opened, expected {expected_class.__name__}"
    assert content == json.loads(fields["content"])
    return stage, "success"


def test_there_are_enough_vectors_of_every_kind() -> None:
    kinds: dict[str, int] = {}
    for case in CASES:
        fields, _ = parse(case.read_bytes())
        kinds[fields["expect"]] = kinds.get(fields["expect"], 0) + 1
    assert len(CASES) >= 80
    assert set(kinds) == set(EXPECT), kinds


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_vector(case: Path, scratch: Path) -> None:
    fields, data = parse(case.read_bytes())
    run_vector(fields, data, scratch)


def test_all_vectors_in_one_pass_and_record_the_figure(scratch: Path) -> None:
    outcomes: dict[str, int] = {}
    for case in CASES:
        fields, data = parse(case.read_bytes())
        _, outcome = run_vector(fields, data, scratch)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    record_figure("vectors", len(CASES), outcomes=outcomes)


def test_generator_reproduces_the_committed_vectors() -> None:
    """The vectors are data, but not hand-edited: the generator must give the same bytes."""
    files = _generator().generate(VECTORS / "cases")
    committed = {case.name: case.read_bytes() for case in CASES}
    assert sorted(files) == sorted(committed)
    changed = [name for name in files if files[name] != committed[name]]
    assert not changed, f"regenerate with python tests/vectors/generate.py: {changed[:5]}"
