"""Leak checks for the real ``cbk-vault`` command: a marker value and a marker passphrase never reach
stderr, nor stdout except where a value is asked for (``fetch --reveal``, ``export``, ``run``'s child).

Every command and every error path we can trigger runs in a subprocess, human and ``--json``,
and each error path again with ``--debug``, whose traceback shows code but must not show a
value: wrong passphrase (itself a marker), bad field, not found, ambiguous name, alias in
use, locked vault, corrupt and missing files, a wrong new-passphrase source, imports of
malformed files that carry the marker, an export that may not overwrite, ``run`` with a bad
reference or command, and ``sync`` with a wrong (marker) token against tests/fakecloud.py.
Streams are searched for the markers raw, hex, base64/32 at every alignment and UTF-16
(``tests.test_leaks.encodings``).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import vault
from tests._faults import record_figure
from tests.fakecloud import running
from tests.test_cli import CLI
from tests.test_leaks import encodings

FAST = vault.KdfParams(1, 8192)
VALUE = "CLILEAKVALUE-6d1f3a-sk_live_canary"
VALUE2 = "CLILEAKVALUE2-0be7c2-client_secret"
PASS = "CLILEAKPASS-91aa4e-passphrase"
WRONG = "CLILEAKWRONG-3c5d7e-not-the-passphrase"
NEWPASS = "CLILEAKNEWPASS-48f0b1-new-passphrase"
TOKEN = "CLILEAKTOKEN-77e1d0-api-token"
MARKERS = (VALUE, VALUE2, PASS, WRONG, NEWPASS, TOKEN)
_FORMS = {m: encodings(m) for m in MARKERS}


@dataclass
class Tally:
    runs: int = 0
    debug_tracebacks: int = 0
    checks: int = 0
    paths: set[str] = field(default_factory=set)


def _absent(text: str, where: str, tally: Tally) -> None:
    blob = text.encode()
    for marker, forms in _FORMS.items():
        for form in forms:
            assert form not in blob, f"{marker} in {where}"
            tally.checks += 1


def run(
    tally: Tally,
    path: Path,
    *args: str,
    status: int,
    passphrase: str | None = PASS,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    stdout_may_hold: tuple[str, ...] = (),
    debug: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI (and, for an error, again with --debug); check both streams of both runs."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("CBK_VAULT_", "CHATBOTKIT_"))}
    if passphrase is not None:
        base_env["CBK_VAULT_PASSPHRASE"] = passphrase
    base_env.update(env or {})
    first: subprocess.CompletedProcess[str] | None = None
    for extra in ([], ["--debug"]) if status and debug else ([],):
        proc = subprocess.run(
            [*CLI, "--path", str(path), *extra, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=base_env,
            timeout=60,
            start_new_session=True,  # no terminal: a prompt fails fast instead of hanging
        )
        label = " ".join([*extra, *args])
        # Under --debug the error propagates as an uncaught exception (Python's exit 1).
        want = 1 if extra else status
        assert proc.returncode == want, (label, proc.returncode, proc.stdout, proc.stderr)
        tally.runs += 1
        tally.paths.add(args[0] if args else "")
        _absent(proc.stderr, f"stderr of `{label}`", tally)
        out = proc.stdout
        for allowed in stdout_may_hold:
            assert allowed in out, f"`{label}` should print the value it was asked for"  # a live control
            out = out.replace(allowed, "")
        _absent(out, f"stdout of `{label}`", tally)
        if extra:
            # The traceback must really be there (else --debug proved nothing) and hold no value.
            assert "Traceback (most recent call last)" in proc.stderr, (label, proc.stderr)
            tally.debug_tracebacks += 1
        first = first or proc
    assert first is not None
    return first


@pytest.fixture
def vp(tmp_path: Path) -> Path:
    path = tmp_path / "leak.cbkv"
    with vault.init(path, PASS, kdf=FAST) as v:
        v.secret.create(name="Marked", alias="m", type="bearer", value=VALUE, meta={"env": "MARKED"})
        v.secret.create(name="Dup", value=VALUE + "-a")
        v.secret.create(name="Dup", value=VALUE + "-b", kind="shared")
        v.secret.create(
            name="OAuth", alias="o", type="oauth", config={"clientId": "cid", "clientSecret": VALUE2}, value=VALUE2
        )
    return path


def test_no_command_or_error_path_leaks_the_marker_value_or_passphrase(vp: Path, tmp_path: Path) -> None:
    t = Tally()
    # Success paths: metadata only, except where the value is the point.
    run(t, vp, "fetch", "@m", status=0)
    run(t, vp, "--json", "fetch", "@o", status=0)
    run(t, vp, "fetch", "@m", "--reveal", status=0, stdout_may_hold=(VALUE,))
    run(t, vp, "list", status=0)
    run(t, vp, "--json", "list", "--all", status=0)
    run(t, vp, "export", "--format", "json", status=0, stdout_may_hold=(VALUE2, VALUE))
    run(t, vp, "run", "--", "sh", "-c", 'test "$MARKED" = "$1"', "sh", VALUE, status=0)
    run(t, vp, "update", "@m", "--description", "rotated", status=0)

    # Lookups that fail.
    run(t, vp, "fetch", "nope", status=1)
    run(t, vp, "--json", "fetch", "@nope", "--reveal", status=1)
    run(t, vp, "fetch", "Dup", "--reveal", status=2)  # ambiguous bare name
    run(t, vp, "delete", "Dup", "--yes", status=2)
    run(t, vp, "export", "--format", "env", status=2)  # both Dups would export as $DUP
    run(t, vp, "run", "--env", "X=@nope", "--", "true", status=1)
    run(t, vp, "run", "--env", "X=@m", "--", str(tmp_path / "no-such-program"), status=127, debug=False)

    # Bad fields, with the marker value on its way in.
    run(t, vp, "create", "--name", "x", "--alias", "Not An Alias", "--value-stdin", status=2, stdin=VALUE)
    run(t, vp, "create", "--name", "x", "--alias", "m", "--value-stdin", status=2, stdin=VALUE2)  # alias in use
    run(t, vp, "create", "--name", "big", "--value-stdin", status=2, stdin=VALUE * 40_000)  # over 1 MiB
    run(t, vp, "--json", "update", "@m", "--meta-json", "{not json", "--value-stdin", status=2, stdin=VALUE2)
    config = tmp_path / "config.json"
    config.write_text('{"clientSecret": "' + VALUE2 + '", "x": ')  # malformed, with a secret inside
    run(t, vp, "update", "@o", "--config-file", str(config), status=2)
    value_file = tmp_path / "value.bin"
    value_file.write_bytes(b"\xff\xfe" + VALUE.encode())  # not UTF-8
    run(t, vp, "update", "@m", "--value-file", str(value_file), status=2)

    # Wrong, missing and refused passphrases; a wrong new one for passwd.
    run(t, vp, "fetch", "@m", "--reveal", status=3, passphrase=WRONG)
    run(t, vp, "--json", "list", status=3, passphrase=WRONG)
    wrong_file = tmp_path / "wrong.txt"
    wrong_file.write_text(WRONG + "\n")
    run(t, vp, "--passphrase-file", str(wrong_file), "export", status=3, passphrase=None)
    run(t, vp, "passwd", status=3, passphrase=WRONG, env={"CBK_VAULT_NEW_PASSPHRASE": NEWPASS})
    run(t, vp, "fetch", "@m", status=2, passphrase=None)  # no source and no terminal

    # Imports of malformed files that carry the marker: nothing imported, nothing shown.
    bad_imports = {
        "truncated.json": '{"items": [{"name": "a", "value": "' + VALUE + '"',
        "bad-type.json": json.dumps({"items": [{"value": VALUE, "type": "password"}]}),
        "bad-alias.json": json.dumps([{"value": VALUE, "alias": "NOT VALID"}]),
        "bad-id.json": json.dumps([{"id": "x", "value": VALUE}]),
        "masked.json": json.dumps([{"value": VALUE, "type": "oauth", "config": {"clientSecret": "********"}}]),
        "alias-taken.json": json.dumps([{"value": VALUE2, "alias": "m"}]),
        "too-long.json": json.dumps([{"value": VALUE * 40_000}]),
        "nested.json": json.dumps([{"value": VALUE, "meta": json.loads('{"a":' * 12 + "1" + "}" * 12)}]),
        "unclosed.env": f"A='{VALUE}\n",
        "unclosed-double.env": f'A="{VALUE}\n',
        "trailing.env": f"A='{VALUE}' {VALUE2}\n",
        "repeat.env": f"A={VALUE}\nA={VALUE2}\n",
        "not-utf8.env": "",
    }
    for name, text in bad_imports.items():
        f = tmp_path / name
        if name == "not-utf8.env":
            f.write_bytes(b"A=" + VALUE.encode() + b"\xff\n")
        else:
            f.write_text(text)
        fmt = name.rsplit(".", 1)[1]
        run(t, vp, "import", "--format", fmt, str(f), status=2)
    run(t, vp, "import", "--format", "json", "-", status=2, stdin='[{"value": "' + VALUE + '", "colour": 1}]')

    # export may not overwrite; the refusal says so without printing anything else.
    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    run(t, vp, "export", "--output", str(existing), status=2)

    # Sync with a wrong (marker) token against the fake cloud on 127.0.0.1.
    with running() as cloud:
        env = {"CHATBOTKIT_API_TOKEN": TOKEN}
        run(t, vp, "sync", "push", "--base-url", cloud.url, status=8, env=env)
        run(t, vp, "sync", "--json", "--dry-run", "--base-url", cloud.url, status=8, env=env)
        assert not cloud.writes()

    # A vault held by another process.
    with vault.open(vp, PASS) as held, held.batch():
        # (readers do not wait for a writer: only writes can meet the lock)
        run(t, vp, "--json", "--lock-timeout", "0.2", "create", "--value-stdin", status=5, stdin=VALUE)
        run(t, vp, "--lock-timeout", "0.2", "update", "@m", "--value-stdin", status=5, stdin=VALUE2)

    # Damaged and missing files.
    damaged = tmp_path / "damaged.cbkv"
    data = bytearray(vp.read_bytes())
    data[-60] ^= 0x01  # inside the last sealed frame
    damaged.write_bytes(bytes(data))
    damaged.chmod(0o600)
    run(t, damaged, "fetch", "@o", "--reveal", status=4)
    run(t, damaged, "--json", "export", status=4)
    header = tmp_path / "header.cbkv"
    header.write_bytes(b"CBKV" + bytes(data[4:40]) + b"\x00" * 16)
    header.chmod(0o600)
    run(t, header, "list", status=4)
    run(t, tmp_path / "missing.cbkv", "fetch", "@m", status=6)
    run(t, vp, "init", "--kdf", "interactive", status=6)

    # Finally the value really is still there, and delete shows no value either.
    run(t, vp, "delete", "@m", "--yes", status=0)
    run(t, vp, "--json", "delete", "@o", "--yes", status=0)
    run(t, vp, "update", "Dup", "--meta", "env=DUP_B", status=2)
    with vault.open(vp, PASS) as v:
        dup = v.secret.list(order="asc").items[0].id
    run(t, vp, "update", dup, "--meta", "env=DUP_B", status=0)
    run(t, vp, "export", "--format", "env", status=0, stdout_may_hold=(VALUE,))

    assert t.debug_tracebacks >= 30
    record_figure(
        "cli_leak_checks",
        t.checks,
        runs=t.runs,
        debug_tracebacks=t.debug_tracebacks,
        commands=len(t.paths),
        markers=len(MARKERS),
    )


def test_a_foreign_export_version_is_not_echoed(vp: Path, tmp_path: Path) -> None:
    f = tmp_path / "foreign.json"
    f.write_text(json.dumps({"version": VALUE, "items": []}))
    run(Tally(), vp, "import", str(f), status=2, debug=False)
