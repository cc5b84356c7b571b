"""Fuzz target: ``cbk-vault import``'s JSON and dotenv parsers, and the import into a vault.

The first byte picks the parser (even: JSON, odd: dotenv); the rest is the file. An input
that parses is then taken the rest of the way ``cmd_import`` takes it: every record goes
through ``_import_one`` inside one ``batch()`` of a real (fast-KDF, tmpfs) vault, which
is where the cross-field rules (alias uniqueness, personal secrets, exact ids) are
checked, and the batch is rolled back so the vault stays empty for the next input.

Invariants checked on every input:

* only ``UsageError`` (the CLI's bad-input error, exit 2) or documented ``VaultError``
  subclasses escape; anything else (RecursionError, KeyError, TypeError...) is a crash;
* what was imported reads back field for field, value included;
* a round trip holds: the imported secrets exported as JSON (``render_json``) parse back
  to the same fields, and the dotenv records rendered as dotenv (``render_env``) parse
  back to the same names and values.

Run: ``python fuzz/fuzz_import.py -max_total_time=60`` (see fuzz/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris
from _common import main, scratch_dir, write_seeds

with atheris.instrument_imports():
    import vault
    from vault.cli import _commands, _formats
    from vault.cli._terminal import UsageError

_DIR = scratch_dir()
_VAULT = vault.init(_DIR / "import.cbkv", "fuzz passphrase", kdf=vault.KdfParams(1, 8192))


class _Rollback(Exception):
    """Raised inside the batch to undo the import: every input starts from the same empty vault."""


def _parse(data: bytes) -> tuple[str, list[_formats.Record]] | None:
    if not data:
        return None
    fmt = "env" if data[0] & 1 else "json"
    body = data[1:]
    try:
        return fmt, (_formats.parse_env(body) if fmt == "env" else _formats.parse_json(body))
    except (UsageError, vault.VaultError):
        return None


def _check_read_back(v: vault.Vault, sid: str, rec: _formats.Record) -> None:
    got = v.secret.fetch(sid)
    for key, want in rec.fields.items():
        assert getattr(got, key) == want, f"imported {key} reads back different"
    if rec.created_at is not None:
        assert got.created_at == rec.created_at
    if rec.updated_at is not None:
        assert got.updated_at == rec.updated_at


def _check_json_round_trip(v: vault.Vault, ids: list[str]) -> None:
    secrets = [v.secret.fetch(sid) for sid in ids]
    again = _formats.parse_json(_formats.render_json(secrets, 0).encode())
    assert len(again) == len(secrets)
    for rec, s in zip(again, secrets, strict=True):
        assert rec.id == s.id and rec.created_at == s.created_at and rec.updated_at == s.updated_at
        for key, want in rec.fields.items():
            assert getattr(s, key) == want, f"exported {key} parses back different"


def _check_env_round_trip(records: list[_formats.Record]) -> None:
    pairs = [(r.fields["name"], r.fields["value"]) for r in records if isinstance(r.fields.get("value"), str)]
    again = _formats.parse_env(_formats.render_env(pairs).encode())
    assert [(r.fields["name"], r.fields.get("value")) for r in again] == pairs, "render_env does not parse back"


def one_input(data: bytes) -> None:
    parsed = _parse(data)
    if parsed is None:
        return
    fmt, records = parsed
    if fmt == "env":
        _check_env_round_trip(records)
    v = _VAULT
    try:
        with v.batch():
            existing: set[str] = set()
            ids: list[str] = []
            for rec in records:
                try:
                    # No policy: a clash is a ConflictError (a VaultError), as `import` without --on-conflict.
                    sid, _ = _commands._import_one(v, rec, existing, new_ids=False, policy=None)
                    assert sid is not None  # only the skip policy yields no id
                    ids.append(sid)
                except vault.VaultError:
                    raise _Rollback from None
            for sid, rec in zip(ids, records, strict=True):
                _check_read_back(v, sid, rec)
            _check_json_round_trip(v, ids)
            raise _Rollback
    except _Rollback:
        pass
    assert len(v) == 0, "a rolled-back import left secrets behind"


def seeds() -> dict[str, bytes]:
    """Seeds from real files: an export written by ``cbk-vault export``'s renderer and dotenv files."""
    ex: dict[str, Any] = {}
    with vault.init(_DIR / "seed.cbkv", "seed", kdf=vault.KdfParams(1, 8192)) as v:
        v.secret.create(name="OpenAI", alias="openai", type="bearer", value="sk-x", meta={"env": "OPENAI_API_KEY"})
        v.secret.create(name="GitHub", alias="gh", value="ghp_1\n'2\"$x", description="repo token")
        v.secret.create(name="Google", type="oauth", kind="personal", config={"clientId": "cid", "clientSecret": "cs"})
        v.secret.create(name="Empty", visibility="protected", blueprint_id="bp1")
        secrets = v.secret.list(order="asc").items
        ex["export"] = _formats.render_json(secrets, 1_700_000_000_000).encode()
        ex["cloud-list"] = (
            b'{"items": [{"id": "' + secrets[0].id.encode() + b'", "name": "X", "config": {"clientSecret": null}}]}'
        )
        ex["bare-list"] = b'[{"name": "A", "value": "1", "createdAt": 5.0}, {"alias": "b"}]'
        ex["env-rendered"] = _formats.render_env([("OPENAI_API_KEY", "sk-x"), ("GH", "ghp_1\n'2\"$x")]).encode()
    ex["env-file"] = (
        b'\xef\xbb\xbf# comment\nexport A=1\nB = \'two words\' # note\nC="multi\nline \\"quoted\\" \\$HOME"\n'
        b'D=unquoted value # trailing\nE=\nexport\tF="\\t\\n\\\\"\n'
    )
    out = {}
    for key, blob in ex.items():
        out[key] = (b"\1" if key.startswith("env") else b"\0") + blob
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-seeds"]:
        print(f"fuzz_import: {write_seeds('fuzz_import', seeds())} seeds")
    else:
        main("fuzz_import", one_input)
