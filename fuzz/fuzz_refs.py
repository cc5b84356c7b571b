"""Fuzz target: secret references (``vault._refs``): the parser, the printer, the template filler, resolution.

The first byte picks what the rest feeds (as UTF-8, undecodable bytes replaced):

* 0 mod 4: ``parse_ref`` of the text as it is (mostly refused at the scheme);
* 1 mod 4: ``parse_ref`` of ``"cbk://" + text``, so the fuzzer works on SECRET and FIELD;
* 2 mod 4: ``inject_refs`` of the text as a template, over a pure stand-in resolver;
* 3 mod 4: a ``RefResolver`` over a small real vault (fast KDF, tmpfs) whose values are
  sentinels, for ``"cbk://" + text``: the id/alias/name lookup, every field rule, reference
  secrets and the ambiguous-name error.

Invariants checked on every input:

* only documented ``VaultError`` subclasses escape: ``InvalidRequestError`` from parsing and
  filling, plus ``NotFoundError`` and ``MintRefusedError`` from resolution;
* a parsed reference prints (``str``) to a form that parses back to an equal reference, and
  that printed form is canonical (printing it again gives the same text);
* a template with no ``{{ cbk://`` opening comes back unchanged, and every placeholder
  filled by the stand-in resolver shows in the output;
* no error message holds a sentinel value that the input did not itself contain, and a
  resolved string is one the vault holds (a value, a credential part, a meta or config leaf).

Run: ``python fuzz/fuzz_refs.py -max_total_time=60`` (see fuzz/README.md).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris
from _common import main, scratch_dir, write_seeds

with atheris.instrument_imports():
    import vault
    from vault import _refs

ALLOWED = (vault.InvalidRequestError, vault.NotFoundError, vault.MintRefusedError)
SENTINELS = ("SENTINEL-plain", "SENTINEL-bearer", "SENTINEL-user", "SENTINEL-pass", "SENTINEL-cfg", "SENTINEL-own")

_DIR = scratch_dir()
_VAULT = vault.init(_DIR / "refs.cbkv", "fuzz passphrase", kdf=vault.KdfParams(1, 8192))
with _VAULT.batch():
    _VAULT.secret.create(name="a", alias="a", value="SENTINEL-plain", meta={"env": "A", "n": {"k": 1}})
    _VAULT.secret.create(name="b", alias="b", type="bearer", value="SENTINEL-bearer")
    _VAULT.secret.create(
        name="c d", alias="c", type="basic", value='{"username": "SENTINEL-user", "password": "SENTINEL-pass"}'
    )
    _VAULT.secret.create(
        name="x/y", alias="o", type="oauth", config={"clientId": "cid", "clientSecret": "SENTINEL-cfg", "l": [1]}
    )
    _VAULT.secret.create(name="r", alias="r", type="reference", config={"reference": "@c"}, meta={"m": "v"})
    _VAULT.secret.create(name="twin", value="SENTINEL-plain")
    _VAULT.secret.create(name="twin", type="template", value="SENTINEL-own")
    _VAULT.secret.create(name="none", type="basic")
#: Every string a reference may resolve to in that vault.
HELD = {
    *SENTINELS,
    '{"username": "SENTINEL-user", "password": "SENTINEL-pass"}',
    "A", "1", '{"k":1}', "cid", "[1]", "c d", "@c", "v",
}  # fmt: skip


def _stand_in(ref: str) -> str:
    parsed = _refs.parse_ref(ref)
    if parsed.secret == "missing":
        raise vault.NotFoundError("secret 'missing' not found")
    return "<filled>"


def _check_parse(text: str) -> None:
    try:
        ref = _refs.parse_ref(text)
    except vault.InvalidRequestError:
        return
    printed = str(ref)
    again = _refs.parse_ref(printed)
    assert again == ref, "the printed form parses to another reference"
    assert str(again) == printed, "the printed form is not canonical"


def _check_inject(text: str) -> None:
    try:
        out = _refs.inject_refs(text, _stand_in)
    except ALLOWED:
        return
    if not re.search(r"\{\{[ \t]*cbk://", text, re.IGNORECASE | re.ASCII):
        assert out == text, "a template without placeholders changed"
    else:
        assert "<filled>" in out, "a placeholder was not filled"


def _check_resolve(text: str) -> None:
    ref = "cbk://" + text
    try:
        got = _refs.RefResolver(_VAULT)(ref)
    except ALLOWED as exc:
        leaked = [s for s in SENTINELS if s in exc.message and s not in text]
        assert not leaked, f"an error message holds a value: {type(exc).__name__}"
        return
    assert got in HELD, "resolved to a string the vault does not hold"


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, text = data[0] % 4, data[1:].decode("utf-8", "replace")
    try:
        if mode == 0:
            _check_parse(text)
        elif mode == 1:
            _check_parse("cbk://" + text)
        elif mode == 2:
            _check_inject(text)
        else:
            _check_resolve(text)
    except vault.VaultError as exc:
        if not isinstance(exc, ALLOWED):
            raise


SEEDS = {
    "scheme": b"\x00cbk://@a",
    "fields": b"\x01@c/password",
    "escapes": b"\x01x%2Fy/config.clientId",
    "meta": b"\x01a/meta.n.k",
    "unicode": b"\x01f\xc3\xbcr %C3%BC/meta.a%2Eb",
    "template": b"\x02user={{ cbk://c/username }}\npw={{cbk://missing}} {{ other }} {{ cbk://x",
    "resolve-alias": b"\x03@c/username",
    "resolve-name": b"\x03c d/password",
    "resolve-twin": b"\x03twin",
    "resolve-ref": b"\x03r/password",
    "resolve-token": b"\x03@o/token",
    "resolve-none": b"\x03none/username",
}

if __name__ == "__main__":
    if sys.argv[1:] == ["--write-seeds"]:
        print(f"fuzz_refs: {write_seeds('fuzz_refs', SEEDS)} seeds")
    else:
        main("fuzz_refs", one_input)
