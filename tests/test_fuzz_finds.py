"""Finds of the fuzz targets that are not fixed yet, one failing test each (xfail, strict).

Each input is also committed as ``fuzz/corpus/<target>/crash-*`` and replayed by every fuzz
run; the targets tolerate exactly these known shapes (see their ``_known_*`` notes) so they
keep searching. When a fix lands, the test here passes, strict xfail turns that into a
failure, and whoever fixed it removes the mark and the target's tolerance.
"""

from __future__ import annotations

import pytest

from tests.test_sync_plan import REF, World
from vault import _cli_import
from vault._cli_io import UsageError
from vault.sync._plan import RemoteRecord


@pytest.mark.xfail(
    strict=True,
    raises=RecursionError,
    reason="parse_json lets json.loads' RecursionError escape on deeply nested input: "
    "`cbk-vault import` exits 70 (internal error) instead of 2 (fuzz_import crash-5bcef374...)",
)
def test_deeply_nested_json_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        _cli_import.parse_json(b"[" * 5000)


@pytest.mark.xfail(
    strict=True,
    reason="parse_env splits lines with str.splitlines(), which also breaks at \\x0b \\x0c \\x1c-\\x1e \\x85 "
    "\\u2028 \\u2029: an exported value holding one is refused (single quotes) or silently altered to \\n "
    "(double quotes) on import",
)
@pytest.mark.parametrize("value", ["it's\x0cok", "a\u2028b", "x\x85y", "tab\x0bbed"])
def test_every_value_render_env_writes_parses_back_unchanged(value: str) -> None:
    text = _cli_import.render_env([("A", value)])
    (rec,) = _cli_import.parse_env(text.encode())
    assert rec.fields["value"] == value


@pytest.mark.xfail(
    strict=True,
    reason="a cloud secret pulled under its own id as local id becomes the owner of one of this vault's "
    "markers on another cloud secret: the deleted-locally conflict of the first plan turns into a "
    "PullNew in the next (the plan after applying the plan is not empty; fuzz_plan crash-2594a84f...)",
)
def test_pulling_a_secret_whose_id_an_orphan_marker_names_settles_in_one_plan() -> None:
    marked = RemoteRecord("b", "f1", 1, None, "B", f"{REF}:x")  # pushed from local x, link never saved
    w = World({}, {"b": marked, "x": RemoteRecord("x", "f1", 1, None, "X")}, {})
    first = w.plan("pull")
    assert [c.reason for c in first.conflicts] == ["deleted-locally"]
    w.apply(first)
    assert w.plan("pull").actions == ()
