"""Regression tests for what the fuzz targets found, one test per find (all fixed).

Each input is also committed as ``fuzz/corpus/<target>/crash-*`` and replayed by every fuzz
run. A new find lands here first as ``xfail(strict=True)`` with its reason; the fix removes
the mark (and any tolerance the target had for it).
"""

from __future__ import annotations

import json

import pytest

from tests.test_sync_plan import REF, World
from vault.cli import _formats
from vault.cli._terminal import UsageError
from vault.sync._plan import RemoteRecord


def test_deeply_nested_json_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        _formats.parse_json(b"[" * 5000)


@pytest.mark.parametrize("value", ["it's\x0cok", "a\u2028b", "x\x85y", "tab\x0bbed"])
def test_every_value_render_env_writes_parses_back_unchanged(value: str) -> None:
    text = _formats.render_env([("A", value)])
    (rec,) = _formats.parse_env(text.encode())
    assert rec.fields["value"] == value


def test_pulling_a_secret_whose_id_an_orphan_marker_names_settles_in_one_plan() -> None:
    marked = RemoteRecord("b", "f1", 1, None, "B", f"{REF}:x")  # pushed from local x, link never saved
    w = World({}, {"b": marked, "x": RemoteRecord("x", "f1", 1, None, "X")}, {})
    first = w.plan("pull")
    assert [c.reason for c in first.conflicts] == ["deleted-locally"]
    w.apply(first)
    assert w.plan("pull").actions == ()


@pytest.mark.parametrize("field", [6, 7, 8])  # kind, type, visibility
def test_an_unhashable_enum_field_in_an_authenticated_record_is_corruption(field: int) -> None:
    # fuzz_open crash-a0a2a4dc...: a list where the visibility string belongs reached a dict
    # lookup (TypeError: unhashable type) instead of the record check.
    from vault import VaultError, _format

    record: list[object] = [
        "pr0xz073zicukmzoecyj5cs1",
        1,
        1,
        1,
        "n",
        "",
        "shared",
        "plain",
        "private",
        None,
        None,
        None,
        None,
        0,
        None,
        {},
    ]
    record[field] = ["not", "a", "string"]
    with pytest.raises(VaultError):
        _format.decode_entry(record)


@pytest.mark.parametrize("cursor", ["\ud800", "a\x00b", "\n", "x" * 5000, 7, ["a"]])
def test_a_list_cursor_the_client_cannot_send_back_is_a_protocol_error(cursor: object) -> None:
    # fuzz_cloud crash-3a0a606d...: a cursor holding a lone surrogate went into the next page's
    # query string and UnicodeEncodeError escaped sync().
    httpx = pytest.importorskip("httpx")
    from vault.sync import ChatBotKitRemote, RemoteProtocolError

    item = {"id": "aaaaaaaaaaaaaaaaaaaaaaaa", "createdAt": 1, "updatedAt": 1}
    first = json.dumps({"items": [item], "cursor": cursor}).encode()  # "\ud800" travels as JSON escapes it
    pages = [httpx.Response(200, content=first), httpx.Response(200, json={"items": []})]
    transport = httpx.MockTransport(lambda request: pages.pop(0))
    with ChatBotKitRemote("sk-t", "https://api.chatbotkit.com", transport=transport) as remote:
        if isinstance(cursor, str):
            with pytest.raises(RemoteProtocolError):
                remote.list_all()
        else:
            assert [i["id"] for i in remote.list_all()] == [item["id"]]  # no cursor: the last id, as before
