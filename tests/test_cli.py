"""The real ``cbk-vault`` console script, driven in subprocesses: every command, human and --json output,
exit codes, and that no secret or passphrase reaches stderr, argv or a child's environment by accident."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vault
from tests.conftest import CLOUD_ITEM_KEYS, FAST, PASSPHRASE

_SCRIPT = Path(sys.executable).with_name("cbk-vault")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "vault"]

TOKEN = "sk_live_TOKEN_4f9a1c"
GH = "ghp_GH_VALUE_77a1"
CLIENT_SECRET = "cs_CLIENT_SECRET_0b2"
#: Every string that must never show up on stderr, in an error line, or on a command line.
SECRETS = (TOKEN, GH, CLIENT_SECRET, PASSPHRASE)


def cli(
    path: Path | None,
    *args: str,
    input: str | None = None,
    passphrase: str | None = PASSPHRASE,
    env: dict[str, str] | None = None,
    check_stderr: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    if passphrase is not None:
        full_env["CBK_VAULT_PASSPHRASE"] = passphrase
    full_env.update(env or {})
    argv = [*CLI, *(["--path", str(path)] if path is not None else []), *args]
    # A new session has no controlling terminal: a prompt would fail fast instead of hanging the test run.
    proc = subprocess.run(
        argv, input=input, capture_output=True, text=True, env=full_env, timeout=timeout, start_new_session=True
    )
    if check_stderr:
        for secret in SECRETS:
            assert secret not in proc.stderr, f"a secret reached stderr of {args}"
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str], status: int) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cbk-vault: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def vp(tmp_path: Path) -> Path:
    """A fast-KDF vault with three secrets: @openai (meta env), @gh, and an oauth one with a clientSecret."""
    path = tmp_path / "v.cbkv"
    # One second apart: secrets created in the same millisecond sort by (random) id, not by name.
    ticks = iter(range(1_767_225_600_000, 1_767_225_700_000, 1000))
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=ticks.__next__) as v:
        v.secret.create(name="OpenAI", alias="openai", type="bearer", value=TOKEN, meta={"env": "OPENAI_API_KEY"})
        v.secret.create(name="GitHub", alias="gh", value=GH, description="repo token")
        v.secret.create(
            name="Google",
            type="oauth",
            kind="personal",
            visibility="protected",
            blueprint_id="bp_1",
            config={"clientId": "cid", "clientSecret": CLIENT_SECRET, "scope": "email"},
            meta={"team": "ml", "nested": {"a": [1, 2, {"b": True}]}},
        )
    return path


def snapshot(path: Path) -> list[dict[str, Any]]:
    with vault.open(path, PASSPHRASE) as v:
        out = []
        cursor = None
        while True:
            page = v.secret.list(order="asc", cursor=cursor)
            if not page.items:
                return out
            out += [v.secret.fetch(s.id).to_dict(reveal=True) for s in page.items]
            cursor = page.cursor


# --- help, version ----------------------------------------------------------------------------


def test_version_help_and_examples_on_every_command() -> None:
    assert ok(cli(None, "--version")).stdout.strip() == f"cbk-vault {vault.__version__}"
    top = ok(cli(None, "--help")).stdout
    for needle in ("exit status:", "3    wrong passphrase", "CBK_VAULT_PASSPHRASE", "examples:"):
        assert needle in top
    for command in (
        "init",
        "passwd",
        "create",
        "fetch",
        "list",
        "update",
        "delete",
        "run",
        "export",
        "import",
        "completion",
        "serve",
        "sync",
        "demo",
    ):
        assert "examples:" in ok(cli(None, command, "--help")).stdout, command
    assert cli(None).returncode == 2  # no command: usage on stderr


def test_no_option_takes_a_value_or_passphrase_from_argv() -> None:
    for command in ("create", "update"):
        text = ok(cli(None, command, "--help")).stdout
        assert "--value " not in text and "--value=" not in text
    assert "--passphrase " not in ok(cli(None, "--help")).stdout
    assert cli(None, "create", "--value", "x").returncode == 2


# --- init, passwd ----------------------------------------------------------------------------


def test_init_then_exists_and_passwd(tmp_path: Path) -> None:
    path = tmp_path / "new.cbkv"
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSPHRASE + "\n")
    pw.chmod(0o600)
    out = json.loads(
        ok(cli(path, "init", "--json", "--kdf", "interactive", "--passphrase-file", str(pw), passphrase=None)).stdout
    )
    assert out["path"] == str(path) and out["kdf"]["preset"] == "interactive"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with vault.open(path, PASSPHRASE) as v:  # one trailing newline of the file is not part of the passphrase
        assert len(v) == 0
    assert "VAULT_EXISTS" in error_line(cli(path, "init", "--kdf", "interactive"), 6)

    new = tmp_path / "new.txt"
    new.write_text("a brand new passphrase\n")
    assert "Passphrase changed" in ok(cli(path, "passwd", "--new-passphrase-file", str(new))).stdout
    assert "WRONG_PASSPHRASE" in error_line(cli(path, "list"), 3)
    assert json.loads(
        ok(
            cli(
                path,
                "passwd",
                "--json",
                env={"CBK_VAULT_NEW_PASSPHRASE": PASSPHRASE},
                passphrase="a brand new passphrase",
            )
        ).stdout
    ) == {"path": str(path), "changed": True, "rekeyed": False}
    ok(cli(path, "list"))


def test_init_human_output_and_passphrase_fd(tmp_path: Path) -> None:
    path = tmp_path / "fd.cbkv"
    read, write = os.pipe()
    os.write(write, PASSPHRASE.encode() + b"\nrest of the pipe\n")
    os.close(write)
    try:
        proc = subprocess.run(
            [*CLI, "--path", str(path), "init", "--kdf", "interactive", "--passphrase-fd", str(read)],
            capture_output=True,
            text=True,
            pass_fds=(read,),
            timeout=30,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")},
        )
    finally:
        os.close(read)
    assert proc.returncode == 0, proc.stderr
    assert "Created an empty vault at" in proc.stdout and PASSPHRASE not in proc.stdout + proc.stderr
    vault.open(path, PASSPHRASE).close()


def test_no_passphrase_source_without_a_terminal(vp: Path) -> None:
    line = error_line(cli(vp, "list", passphrase=None), 2)
    assert "CBK_VAULT_PASSPHRASE" in line


# --- create, fetch, list, update, delete ------------------------------------------------------


def test_create_human_and_json_with_values_from_stdin_and_file(vp: Path, tmp_path: Path) -> None:
    proc = ok(
        cli(
            vp,
            "create",
            "--name",
            "Stripe",
            "--alias",
            "stripe",
            "--type",
            "bearer",
            "--meta",
            "env=STRIPE",
            "--value-stdin",
            input="sk_stripe_1\n",
        )
    )
    assert proc.stdout.startswith("Created secret ") and "(Stripe)" in proc.stdout
    value_file = tmp_path / "value.txt"
    value_file.write_text("line1\nline2\n")
    d = json.loads(
        ok(
            cli(
                vp,
                "create",
                "--json",
                "--name",
                "Multi",
                "--value-file",
                str(value_file),
                "--config-json",
                '{"schema": "Token"}',
                "--visibility",
                "public",
            )
        ).stdout
    )
    assert set(d) == CLOUD_ITEM_KEYS
    assert "value" not in d and d["config"] == {"schema": "Token"} and d["visibility"] == "public"
    none = json.loads(ok(cli(vp, "create", "--json", "--name", "Empty", "--no-value")).stdout)
    with vault.open(vp, PASSPHRASE) as v:
        assert v.secret.fetch("@stripe").value == "sk_stripe_1"  # one trailing newline dropped
        assert v.secret.fetch(d["id"]).value == "line1\nline2"
        assert v.secret.fetch(none["id"]).value is None
        assert v.secret.fetch("@stripe").meta == {"env": "STRIPE"}
    # No value source and no terminal: a clear usage error, nothing created.
    assert "--value-stdin" in error_line(cli(vp, "create", "--name", "X"), 2)
    assert "alias" in error_line(cli(vp, "create", "--alias", "Bad Alias", "--no-value"), 2).lower()
    assert "CONFLICT" in error_line(cli(vp, "create", "--alias", "gh", "--no-value"), 2)
    assert "--config-json" in error_line(cli(vp, "create", "--no-value", "--config-json", "{nope"), 2)
    assert len(snapshot(vp)) == 6


def test_fetch_by_every_address_and_reveal_prints_only_the_value(vp: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        sid = v.secret.fetch("@openai").id
    for ref in (sid, "@openai", "(OpenAI)", "OpenAI"):
        assert ok(cli(vp, "fetch", ref, "--reveal")).stdout == TOKEN + "\n"
    assert ok(cli(vp, "fetch", "@openai", "--reveal", "-n")).stdout == TOKEN
    human = ok(cli(vp, "fetch", "@openai")).stdout
    assert TOKEN not in human and sid in human and "set (hidden" in human and "OPENAI_API_KEY" in human
    d = json.loads(ok(cli(vp, "fetch", "@openai", "--json")).stdout)
    assert d["id"] == sid and "value" not in d and d["meta"] == {"env": "OPENAI_API_KEY"}
    google = json.loads(ok(cli(vp, "fetch", "Google", "--json")).stdout)
    assert google["config"]["clientSecret"] == "********"  # masked as the cloud masks it
    assert CLIENT_SECRET not in ok(cli(vp, "fetch", "Google")).stdout
    revealed = json.loads(ok(cli(vp, "fetch", "@openai", "--json", "--reveal")).stdout)
    assert revealed["value"] == TOKEN
    assert "has no value" in error_line(cli(vp, "fetch", "Google", "--reveal"), 1)
    assert "NOT_FOUND" in error_line(cli(vp, "fetch", "@nobody"), 1)
    assert "NOT_FOUND" in error_line(cli(vp, "fetch", "Nobody"), 1)


def test_bare_name_ambiguity_lists_the_candidates(vp: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        a = v.secret.create(name="Twin", value=TOKEN)
        b = v.secret.create(name="Twin", value=GH)
    line = error_line(cli(vp, "fetch", "Twin", "--reveal"), 2)
    assert a.id in line and b.id in line and "2 secrets" in line
    assert ok(cli(vp, "fetch", a.id, "--reveal")).stdout == TOKEN + "\n"


def test_list_table_json_paging_meta_and_all(vp: Path) -> None:
    table = ok(cli(vp, "list")).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "TYPE", "KIND", "ALIAS", "UPDATED"]
    assert [row.split()[1] for row in table[1:]] == ["Google", "GitHub", "OpenAI"]  # newest first
    assert "@openai" in table[3] and TOKEN not in "\n".join(table)
    with vault.open(vp, PASSPHRASE) as v:
        assert json.loads(ok(cli(vp, "list", "--json")).stdout) == v.secret.list().to_dict()
        first = json.loads(ok(cli(vp, "list", "--json", "--order", "asc", "--take", "2")).stdout)
        assert first == v.secret.list(order="asc", take=2).to_dict()
        rest = json.loads(ok(cli(vp, "list", "--json", "--order", "asc", "--cursor", first["cursor"])).stdout)
        assert [i["name"] for i in rest["items"]] == ["Google"]
    assert json.loads(ok(cli(vp, "list", "--json", "--cursor", "zzzzzzzzzzzzzzzzzzzzzzzz")).stdout) == {"items": []}
    only = json.loads(ok(cli(vp, "list", "--json", "--meta", "team=ml")).stdout)
    assert [i["name"] for i in only["items"]] == ["Google"]
    with vault.open(vp, PASSPHRASE) as v, v.batch():
        for n in range(150):
            v.secret.create(name=f"bulk{n}")
    everything = json.loads(ok(cli(vp, "list", "--all", "--json", "--order", "asc")).stdout)
    assert len(everything["items"]) == 153
    assert {i["name"] for i in everything["items"]} >= {f"bulk{n}" for n in range(150)}
    page = cli(vp, "list", "--take", "5")
    assert len(page.stdout.splitlines()) == 6 and "--cursor" in page.stderr
    assert "--take" in error_line(cli(vp, "list", "--take", "0"), 2)  # usage errors are one line too


def test_update_fields_meta_and_value(vp: Path) -> None:
    d = json.loads(
        ok(
            cli(
                vp,
                "update",
                "OpenAI",
                "--json",
                "--description",
                "rotated",
                "--meta",
                "owner=me",
                "--value-stdin",
                input="sk_new_value",
            )
        ).stdout
    )
    assert d["description"] == "rotated" and d["meta"] == {"env": "OPENAI_API_KEY", "owner": "me"}
    human = ok(cli(vp, "update", "@openai", "--unset-meta", "owner", "--alias", "oai")).stdout
    assert human.startswith("Updated secret ") and "(OpenAI)" in human
    with vault.open(vp, PASSPHRASE) as v:
        s = v.secret.fetch("@oai")
        assert s.value == "sk_new_value" and s.meta == {"env": "OPENAI_API_KEY"} and s.description == "rotated"
    ok(cli(vp, "update", "@oai", "--no-value", "--meta-json", '{"k": 1}'))
    with vault.open(vp, PASSPHRASE) as v:
        s = v.secret.fetch("@oai")
        assert s.value is None and s.meta == {"k": 1}
    assert "nothing to update" in error_line(cli(vp, "update", "@oai"), 2)
    assert "only one of" in error_line(cli(vp, "update", "@oai", "--no-value", "--value-stdin"), 2)
    assert "NOT_FOUND" in error_line(cli(vp, "update", "@nope", "--description", "x"), 1)


def test_delete_human_and_json(vp: Path) -> None:
    d = json.loads(ok(cli(vp, "delete", "@gh", "--json")).stdout)
    assert d["name"] == "GitHub" and "value" not in d
    assert ok(cli(vp, "delete", "(OpenAI)")).stdout.startswith("Deleted secret ")
    assert "NOT_FOUND" in error_line(cli(vp, "delete", "@gh"), 1)
    assert [s["name"] for s in snapshot(vp)] == ["Google"]


# --- run ---------------------------------------------------------------------------------------


def test_run_injects_meta_env_secrets_and_returns_the_exit_code(vp: Path) -> None:
    proc = cli(vp, "run", "--", "sh", "-c", 'printf "%s|%s" "$OPENAI_API_KEY" "${CBK_VAULT_PASSPHRASE-unset}"; exit 7')
    assert proc.returncode == 7
    assert proc.stdout == f"{TOKEN}|unset"  # the vault passphrase is not handed to the child
    proc = ok(cli(vp, "run", "--env", "A=@gh", "--env", "B=(OpenAI)", "--", "sh", "-c", 'printf "%s %s" "$A" "$B"'))
    assert proc.stdout == f"{GH} {TOKEN}"
    assert "no value" in error_line(cli(vp, "run", "--env", "G=Google", "--", "true"), 1)
    assert "not a valid" in error_line(cli(vp, "run", "--env", "1X=@gh", "--", "true"), 2)
    assert "no command" in error_line(cli(vp, "run", "--env", "A=@gh"), 2)
    assert cli(vp, "run", "--env", "A=@gh", "--", "/nonexistent/cmd").returncode == 127


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from the parent links in /proc/PID/stat.

    Only the parent link of other processes is read: what the checks below look at is confined
    to processes this test started, so an unrelated process on the machine can never fail them.
    """
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        # The name (field 2) may hold spaces and parentheses: the parent pid is the 2nd field after the last ")".
        parents[int(entry.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    tree = [root]
    for pid in tree:
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def test_run_child_command_line_and_ps_never_show_the_value(vp: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    env["CBK_VAULT_PASSPHRASE"] = PASSPHRASE
    child = subprocess.Popen(
        [
            *CLI,
            "--path",
            str(vp),
            "run",
            "--env",
            "TOKEN=@openai",
            "--",
            "sh",
            "-c",
            # Blocks on stdin until the test ends it, however slowly it is scheduled (and ends with the test).
            f'touch {ready}; read _line; test -n "$TOKEN"',
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        # run execs the command: the pid we started is now `sh`, holding the value only in its environment.
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
        assert b"sh\x00-c\x00" in cmdline and TOKEN.encode() not in cmdline
        tree = _process_tree(child.pid)
        for pid in tree:
            try:
                assert TOKEN.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                pass  # it exited meanwhile
        if shutil.which("ps"):
            pids = ",".join(map(str, tree))
            ps = subprocess.run(
                ["ps", "-ww", "-o", "pid=,args=", "-p", pids], capture_output=True, text=True, timeout=60
            ).stdout
            assert str(child.pid) in ps and TOKEN not in ps and PASSPHRASE not in ps
        assert TOKEN.encode() in Path(f"/proc/{child.pid}/environ").read_bytes()  # it did get there
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()


def test_core_dumps_are_disabled_and_given_back_to_the_run_child(vp: Path) -> None:
    probe = (
        "import ctypes, resource; from vault.cli._terminal import harden_process; harden_process();"
        "print(resource.getrlimit(resource.RLIMIT_CORE)[0], ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30).stdout.split()
    assert out[0] == "0"
    if sys.platform.startswith("linux"):
        assert out[1] == "0"  # PR_GET_DUMPABLE
    import resource

    soft = resource.getrlimit(resource.RLIMIT_CORE)[0]
    proc = ok(cli(vp, "run", "--env", "A=@gh", "--", "sh", "-c", "ulimit -c"))
    assert proc.stdout.strip() == ("unlimited" if soft == resource.RLIM_INFINITY else str(soft // 512))


# --- export / import -----------------------------------------------------------------------------


def test_export_json_file_is_private_and_never_overwritten(vp: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.json"
    proc = ok(cli(vp, "export", "--format", "json", "--output", str(out)))
    assert "PLAINTEXT" in proc.stderr and "Exported 3 secret(s)" in proc.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text())
    assert doc["format"] == "cbk-vault-export" and len(doc["items"]) == 3
    before = out.read_bytes()
    assert "already exists" in error_line(cli(vp, "export", "--output", str(out)), 2)
    assert out.read_bytes() == before
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    assert cli(vp, "export", "--output", str(link)).returncode == 2
    assert not (tmp_path / "elsewhere.json").exists()
    summary = json.loads(ok(cli(vp, "export", "--json", "--format", "env", "--output", str(tmp_path / "e"))).stdout)
    assert summary["exported"] == 2 and summary["format"] == "env"


def test_export_env_to_a_pipe_and_import_it_back(vp: Path, tmp_path: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        v.secret.create(name="Tricky", meta={"env": "TRICKY"}, value='it\'s a "quote"\nnew line $HOME \\ end')
    proc = ok(cli(vp, "export", "--format", "env"))
    assert f"OPENAI_API_KEY='{TOKEN}'" in proc.stdout and f"GH='{GH}'" in proc.stdout
    assert "left out" in proc.stderr  # Google has no value
    env_file = tmp_path / "x.env"
    env_file.write_text("# a comment\nexport PLAIN=abc # trailing\n" + proc.stdout)
    target = tmp_path / "t.cbkv"
    vault.init(target, PASSPHRASE, kdf=FAST).close()
    summary = json.loads(ok(cli(target, "import", "--json", "--format", "env", str(env_file))).stdout)
    assert summary["imported"] == 4
    with vault.open(target, PASSPHRASE) as v:
        assert v.secret.fetch("(TRICKY)").value == 'it\'s a "quote"\nnew line $HOME \\ end'
        assert v.secret.fetch("(PLAIN)").value == "abc"
        assert v.secret.fetch("(OPENAI_API_KEY)").meta == {"env": "OPENAI_API_KEY"}
    proc = ok(cli(target, "run", "--", "sh", "-c", 'printf %s "$TRICKY"'))
    assert proc.stdout == 'it\'s a "quote"\nnew line $HOME \\ end'


def test_export_then_import_round_trips_every_field(vp: Path, tmp_path: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        s = v.secret.create(name="Later", value="", description="updated later", type="jwt")
        time.sleep(0.01)
        v.secret.update(s.id, description="changed")
    original = snapshot(vp)
    assert any(item["createdAt"] != item["updatedAt"] for item in original)
    dump = tmp_path / "dump.json"
    ok(cli(vp, "export", "--output", str(dump)))
    target = tmp_path / "copy.cbkv"
    vault.init(target, "other passphrase", kdf=FAST).close()
    proc = ok(cli(target, "import", str(dump), passphrase="other passphrase"))
    assert "Imported 4 secret(s)" in proc.stdout
    with vault.open(target, "other passphrase") as v:
        copied = [v.secret.fetch(item["id"]).to_dict(reveal=True) for item in original]
    assert copied == original  # ids, timestamps, value, unmasked config, meta: everything

    fresh = tmp_path / "fresh.cbkv"
    vault.init(fresh, PASSPHRASE, kdf=FAST).close()
    ids = json.loads(ok(cli(fresh, "import", "--new-ids", "--json", str(dump))).stdout)["ids"]
    assert not set(ids) & {item["id"] for item in original}
    again = snapshot(fresh)

    def without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # New ids change the order of secrets created in the same millisecond (ties sort by id).
        stripped = [{k: v for k, v in item.items() if k != "id"} for item in items]
        return sorted(stripped, key=lambda item: (item["createdAt"], item["name"]))

    assert without_ids(again) == without_ids(original)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"items": "nope"}', "items"),
        (b'{"format": "other", "items": []}', "not a cbk-vault export"),
        (b'[{"name": "ok", "value": "v"}, {"name": 5}]', "item 2"),
        (b'[{"name": "a", "colour": "red"}]', "unknown field"),
        (b'[{"id": "BAD", "name": "a"}]', "id has the wrong form"),
        (b'[{"alias": "dup"}, {"alias": "dup"}]', "repeats item 1"),
        (b'[{"createdAt": "yesterday"}]', "createdAt"),
        (b'[{"config": {"clientSecret": "********"}}]', "masked"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_import_of_a_malformed_json_file_changes_nothing(
    vp: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    before = vp.read_bytes()
    line = error_line(cli(vp, "import", str(bad)), 2)
    assert message in line
    assert vp.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"NOEQUALS\n", "line 1"), (b"A=1\nA=2\n", "already set"), (b"A='open\n", "unclosed"), (b'B="x\n', "unclosed")],
)
def test_import_of_a_malformed_env_file_changes_nothing(vp: Path, tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.env"
    bad.write_bytes(content)
    before = vp.read_bytes()
    assert message in error_line(cli(vp, "import", "--format", "env", str(bad)), 2)
    assert vp.read_bytes() == before


def test_import_failing_halfway_is_rolled_back(vp: Path, tmp_path: Path) -> None:
    items = [{"name": f"n{i}", "value": f"v{i}"} for i in range(5)] + [{"name": "clash", "alias": "gh"}]
    src = tmp_path / "clash.json"
    src.write_text(json.dumps(items))
    before = vp.read_bytes()
    line = error_line(cli(vp, "import", str(src)), 2)
    assert "item 6" in line and "CONFLICT" in line
    assert vp.read_bytes() == before
    dump = tmp_path / "self.json"
    ok(cli(vp, "export", "--output", str(dump)))
    assert "already in this vault" in error_line(cli(vp, "import", str(dump)), 2)  # same ids
    assert vp.read_bytes() == before


def test_import_kdbx(vp: Path, tmp_path: Path) -> None:
    pykeepass = pytest.importorskip("pykeepass")
    db_path = tmp_path / "kp.kdbx"
    db = pykeepass.create_database(str(db_path), password="kp-pass")
    group = db.add_group(db.root_group, "Work")
    db.add_entry(group, "Jira", "alice", "jira-password", url="https://jira.example", notes="work login")
    db.add_entry(db.root_group, "API token", "", "tok-from-keepass")
    db.save()
    pw = tmp_path / "kp.txt"
    pw.write_text("kp-pass\n")
    pw.chmod(0o600)
    proc = ok(cli(vp, "import", "--format", "kdbx", str(db_path), "--kdbx-password-file", str(pw)))
    assert "Imported 2 secret(s)" in proc.stdout and "jira-password" not in proc.stdout + proc.stderr
    with vault.open(vp, PASSPHRASE) as v:
        jira = v.secret.fetch("(Jira)")
        assert jira.type == "basic" and json.loads(jira.value or "") == {
            "username": "alice",
            "password": "jira-password",
        }
        assert jira.description == "work login"
        assert jira.meta is not None and jira.meta["keepass"]["group"] == "Work"
        assert jira.meta["keepass"]["url"] == "https://jira.example"
        assert v.secret.fetch("(API token)").value == "tok-from-keepass"
    pw.write_text("wrong\n")
    before = vp.read_bytes()
    assert "KeePass" in error_line(
        cli(vp, "import", "--format", "kdbx", str(db_path), "--kdbx-password-file", str(pw)), 3
    )
    assert vp.read_bytes() == before


def test_import_kdbx_without_pykeepass_is_a_clear_error(vp: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pykeepass.py").write_text("raise ImportError('not installed here')\n")
    db = tmp_path / "x.kdbx"
    db.write_bytes(b"\x03\xd9\xa2\x9a")
    line = error_line(cli(vp, "import", "--format", "kdbx", str(db), env={"PYTHONPATH": str(shadow)}), 2)
    assert "pip install 'cbk-vault[kdbx]'" in line


# --- errors and exit codes -----------------------------------------------------------------------


def test_exit_codes_for_vault_states(vp: Path, tmp_path: Path) -> None:
    assert "WRONG_PASSPHRASE" in error_line(cli(vp, "list", passphrase="not it"), 3)
    assert "VAULT_NOT_FOUND" in error_line(cli(tmp_path / "missing.cbkv", "list"), 6)
    with vault.open(vp, PASSPHRASE) as v, v.batch():  # holds the writer lock
        line = error_line(cli(vp, "create", "--no-value", "--lock-timeout", "0.2"), 5)
        assert "LOCKED" in line
    damaged = tmp_path / "damaged.cbkv"
    data = bytearray(vp.read_bytes())
    data[-20] ^= 0xFF
    damaged.write_bytes(bytes(data))
    damaged.chmod(0o600)
    assert "VAULT_CORRUPT" in error_line(cli(damaged, "list"), 4)
    vp.chmod(0o666)
    try:
        assert "INSECURE_FILE" in error_line(cli(vp, "list"), 7)
    finally:
        vp.chmod(0o600)


def test_json_errors_are_one_json_line_and_debug_shows_a_traceback(vp: Path) -> None:
    proc = cli(vp, "fetch", "@nobody", "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert json.loads(proc.stderr) == {"message": "secret '@nobody' not found", "code": "NOT_FOUND", "exitCode": 1}
    debug = cli(vp, "--debug", "fetch", "@nobody")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "NotFoundError" in debug.stderr


def test_serve_and_sync_hooks_get_their_options_and_open_vault(
    vp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vault import cli as cli_module

    calls: dict[str, Any] = {}

    # The options come from the CLI's grammar; the module brings only the code that runs.
    def serve_command(args: argparse.Namespace, open_vault: Callable[[], vault.Vault]) -> int:
        with open_vault() as v:
            calls.update(secrets=len(v), port=args.port)
        return 42

    fake = types.ModuleType("vault.cli._serve")
    fake.serve_command = serve_command  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vault.cli._serve", fake)
    monkeypatch.setattr(cli_module, "harden_process", lambda: None)
    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    assert cli_module.main(["--path", str(vp), "serve", "--port", "8080"]) == 42
    assert calls == {"secrets": 3, "port": 8080}

    # The module is not there yet: one clear line, exit 2, whatever options follow.
    monkeypatch.setitem(sys.modules, "vault.cli._sync", None)
    assert cli_module.main(["sync", "--remote", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "cbk-vault: error: `sync` is not available in this build of cbk-vault (vault.cli._sync is missing) [USAGE]"
    ]

    # The module is there but its optional dependency is not: say which extra to install.
    real_import = cli_module.importlib.import_module

    def missing_httpx(name: str, package: str | None = None) -> Any:
        if name == "vault.cli._sync":
            raise ModuleNotFoundError("No module named 'httpx'", name="httpx")
        return real_import(name, package)

    monkeypatch.setattr(cli_module.importlib, "import_module", missing_httpx)
    assert cli_module.main(["sync"]) == 2
    assert "pip install 'cbk-vault[sync]'" in capsys.readouterr().err


def test_importing_the_cli_loads_neither_http_server_nor_httpx() -> None:
    # serve and sync are described in the grammar, but their code is imported only when they run.
    code = (
        "import sys, vault.cli\n"
        "from vault.cli import _completion, _parser\n"
        "_completion.render('bash'); _parser.build_parser().parse_args(['sync'])\n"
        "loaded = {'http.server', 'httpx', 'vault._http', 'vault._api', 'vault.sync'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_serve_and_sync_help_names_the_variables_their_commands_read() -> None:
    pytest.importorskip("httpx")
    from vault.cli import _serve
    from vault.cli._parser import COMMANDS
    from vault.cli._sync import BASE_URL_ENV
    from vault.sync import _client

    text = {c.name: " ".join([c.description, *(a.help for a in c.args)]) for c in COMMANDS}
    assert f"${_serve.SERVE_TOKEN_ENV}" in text["serve"]
    assert f"${_client.TOKEN_ENV}" in text["sync"] and f"@{_client.TOKEN_ALIAS}" in text["sync"]
    assert f"${BASE_URL_ENV}" in text["sync"] and _client.DEFAULT_BASE_URL in text["sync"]


def test_sync_concurrency_option_agrees_with_the_library() -> None:
    pytest.importorskip("httpx")
    from vault.cli._parser import COMMANDS
    from vault.sync import _client, _run

    arg = next(a for c in COMMANDS if c.name == "sync" for a in c.args if a.names == ("--concurrency",))
    assert arg.default == _run.DEFAULT_CONCURRENCY
    assert f"default {_run.DEFAULT_CONCURRENCY}" in arg.help and f"1..{_client.MAX_CONCURRENCY}" in arg.help


def test_demo_still_runs() -> None:
    proc = ok(cli(None, "demo"))
    assert "1. init" in proc.stdout and "sk_live_12345" not in proc.stdout


# --- completion -----------------------------------------------------------------------------------


def _bash_complete(script: str, words: list[str]) -> list[str]:
    program = (
        script
        + f"\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        + '_cbk_vault; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_completes_commands_options_and_choices() -> None:
    script = ok(cli(None, "completion", "bash")).stdout
    assert subprocess.run(["bash", "-n"], input=script, text=True, timeout=10).returncode == 0
    assert _bash_complete(script, ["cbk-vault", "ex"]) == ["export"]
    assert set(_bash_complete(script, ["cbk-vault", "export", "--format", ""])) == {"json", "env"}
    assert set(_bash_complete(script, ["cbk-vault", "import", "--format", ""])) == {"json", "env", "kdbx"}
    assert "--reveal" in _bash_complete(script, ["cbk-vault", "fetch", "--re"])
    assert "--kdf" in _bash_complete(script, ["cbk-vault", "--path", "x", "init", "--"])


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse(shell: str) -> None:
    script = ok(cli(None, "completion", shell)).stdout
    assert "export" in script and "--reveal" in script.replace("-l reveal", "--reveal")
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} not installed")
    assert subprocess.run([exe, "-n"], input=script, text=True, timeout=10).returncode == 0


def test_every_subcommand_is_in_the_completion_scripts() -> None:
    scripts = {shell: ok(cli(None, "completion", shell)).stdout for shell in ("bash", "zsh", "fish")}
    for command in ("init", "passwd", "create", "fetch", "list", "update", "delete", "run", "export", "import"):
        for text in scripts.values():
            assert command in text


def test_every_vault_error_code_has_a_documented_exit_status() -> None:
    from vault import cli as cli_module

    codes = {cls.code for cls in vars(vault).values() if isinstance(cls, type) and issubclass(cls, vault.VaultError)}
    assert codes - {"VAULT_ERROR"} <= set(cli_module.EXIT_CODES)
    help_text = ok(cli(None, "--help")).stdout
    for status in {*cli_module.EXIT_CODES.values(), 8, 130, 141}:
        assert f"\n  {status} " in help_text
    assert cli_module.exit_code_for(vault.VaultError("from elsewhere", code="REMOTE_ERROR")) == 8


# --- review fixes ---------------------------------------------------------------------------


def test_sourcing_an_env_export_runs_no_command(vp: Path, tmp_path: Path) -> None:
    # A backtick inside double quotes is command substitution in every POSIX shell.
    nasty = f'it\'s `touch {tmp_path}/x` and $(touch {tmp_path}/y) \\ "q"'
    with vault.open(vp, PASSPHRASE) as v:
        v.secret.create(name="T", meta={"env": "TOK"}, value=nasty)
    env_file = tmp_path / "f.env"
    ok(cli(vp, "export", "--format", "env", "--output", str(env_file)))
    sourced = subprocess.run(
        ["sh", "-c", 'set -a; . ./f.env; printf %s "$TOK"'], cwd=tmp_path, capture_output=True, text=True, timeout=10
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert sourced.stdout == nasty
    target = tmp_path / "t.cbkv"
    vault.init(target, PASSPHRASE, kdf=FAST).close()
    ok(cli(target, "import", "--format", "env", str(env_file)))  # our own dotenv parser reads it back
    with vault.open(target, PASSPHRASE) as v:
        assert v.secret.fetch("(TOK)").value == nasty


def test_run_does_not_hand_the_passphrase_descriptor_to_the_command(vp: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "pass.txt"
    secret_file.write_text(PASSPHRASE + "\n")
    secret_file.chmod(0o600)
    fd = os.open(secret_file, os.O_RDONLY)
    # The command rewinds the inherited descriptor and reads: it must find it closed.
    probe = f"import os\ntry:\n os.lseek({fd}, 0, 0); print(os.read({fd}, 99))\nexcept OSError:\n print('closed')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    try:
        proc = subprocess.run(
            [*CLI, "--path", str(vp), "--passphrase-fd", str(fd), "run", "--", sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            pass_fds=(fd,),
            start_new_session=True,
        )
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "closed" and PASSPHRASE not in proc.stdout


@pytest.mark.parametrize(
    ("option", "text", "message"),
    [
        ("--meta-json", "[" * 100_000, "nested too deeply"),
        ("--config-json", '{"a": NaN}', "NaN"),
        ("--meta-json", '{"a": -Infinity}', "NaN"),
        ("--meta-json", '{"a": 1e400}', "NaN"),
        ("--config-file", "[" * 100_000, "nested too deeply"),
        ("--config-file", '{"clientSecret": "SEKRET-in-a-bad-file", "x": Infinity}', "NaN"),
        ("--config-file", '{"clientSecret": "SEKRET-in-a-bad-file",', "not valid JSON"),
        ("import", '[{"name": "n", "meta": {"a": NaN}, "value": "SEKRET-in-a-bad-file"}]', "NaN"),
        ("import", "[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_json_arguments_are_usage_errors_that_quote_nothing(
    vp: Path, tmp_path: Path, option: str, text: str, message: str
) -> None:
    source = tmp_path / "in.json"
    source.write_text(text)
    if option == "import":
        args = ["import", str(source)]
    elif option == "--config-file":
        args = ["create", "--name", "n", "--no-value", option, str(source)]
    else:
        args = ["create", "--name", "n", "--no-value", option, text]
    before = vp.read_bytes()
    for extra in ([], ["--json"]):
        proc = cli(vp, *args, *extra)
        if extra:
            assert proc.returncode == 2, proc.stderr
            assert json.loads(proc.stderr)["exitCode"] == 2
        else:
            line = error_line(proc, 2)
            assert message in line and len(line) < 300 and "SEKRET" not in line
    assert vp.read_bytes() == before


def test_json_output_never_carries_nan() -> None:
    # The core refuses NaN on write, but a file written by an older version may hold one: the output
    # must stay valid JSON all the same.
    from vault.cli._terminal import dump_json

    assert dump_json({"a": [1.5]}) == '{"a": [1.5]}'
    with pytest.raises(vault.InvalidRequestError):
        dump_json({"meta": {"a": float("nan")}})


def test_a_value_with_a_nul_byte_cannot_be_injected(vp: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        sid = v.secret.create(name="Nul", value="a\x00b").id
    line = error_line(cli(vp, "run", "--env", "X=(Nul)", "--", "true"), 2)
    assert f"secret {sid} cannot be injected as X: its value contains a NUL byte" in line


def test_an_empty_path_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = cli(None, "--path", "", "list", env={"XDG_DATA_HOME": str(home), "HOME": str(home)})
    assert "--path must not be empty" in error_line(proc, 2)


def test_update_meta_keeps_stored_underscore_keys(vp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"id": "k" * 24, "name": "K", "meta": {"_origin": "x", "team": "a"}}]))
    ok(cli(vp, "import", str(src)))
    ok(cli(vp, "update", "k" * 24, "--meta", "env=K_TOKEN"))
    with vault.open(vp, PASSPHRASE) as v:
        assert v.secret.fetch("k" * 24).meta == {"_origin": "x", "team": "a", "env": "K_TOKEN"}


def test_import_with_and_without_ids_validates_alike(vp: Path, tmp_path: Path) -> None:
    items = [{"id": "m" * 24, "name": "A", "meta": {"_origin": "x"}}, {"name": "B", "meta": {"_origin": "y"}}]
    src = tmp_path / "in.json"
    src.write_text(json.dumps(items))
    summary = json.loads(ok(cli(vp, "import", "--json", "--new-ids", str(src))).stdout)
    with vault.open(vp, PASSPHRASE) as v:
        assert [v.secret.fetch(i).meta for i in summary["ids"]] == [{"_origin": "x"}, {"_origin": "y"}]
        assert "m" * 24 not in summary["ids"]


def test_messages_name_the_right_option(vp: Path, tmp_path: Path) -> None:
    line = error_line(cli(vp, "passwd"), 2)
    assert "no new passphrase" in line
    assert "--new-passphrase-file, --new-passphrase-fd or CBK_VAULT_NEW_PASSPHRASE" in line
    db = tmp_path / "db.kdbx"
    db.write_bytes(b"not read")
    line = error_line(cli(vp, "import", "--format", "kdbx", str(db), "--kdbx-keyfile", str(tmp_path / "no.key")), 2)
    assert f"key file {str(tmp_path / 'no.key')!r} does not exist" in line
    new = tmp_path / "new.txt"
    new.write_text("a new passphrase\n")
    new.chmod(0o644)
    proc = ok(cli(vp, "passwd", "--new-passphrase-file", str(new)))
    assert f"--new-passphrase-file {str(new)!r} is readable by other users" in proc.stderr


def test_main_writes_to_the_streams_of_the_moment(vp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import io

    from vault.cli import main

    monkeypatch.setenv("CBK_VAULT_PASSPHRASE", PASSPHRASE)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--path", str(vp), "list", "--json"]) == 0
    assert len(json.loads(out.getvalue())["items"]) == 3


def test_usage_errors_are_json_with_json(vp: Path) -> None:
    proc = cli(vp, "list", "--json", "--take", "0")
    assert proc.returncode == 2
    error = json.loads(proc.stderr)
    assert error["code"] == "USAGE" and error["exitCode"] == 2 and "--take" in error["message"]
    assert "--take" in error_line(cli(vp, "list", "--take", "0"), 2)


def test_control_characters_in_names_are_not_printed_raw(vp: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        v.secret.create(name="evil\x1b[2J\u202ename", value="x")
    for args in (["list"], ["fetch", "(evil\x1b[2J\u202ename)"]):
        out = ok(cli(vp, *args)).stdout
        # Shown as visible escapes: the owner sees that something is hidden in the name, and what.
        assert "\x1b" not in out and "\u202e" not in out and "evil\\x1b[2J\\u202ename" in out
    listed = ok(cli(vp, "list", "--json")).stdout
    assert "\u202e" not in listed  # written as a \u escape: exact JSON, and harmless on a terminal
    names = [item["name"] for item in json.loads(listed)["items"]]
    assert "evil\x1b[2J\u202ename" in names  # --json is for programs: the name as stored


@pytest.mark.parametrize("before", [True, False])
def test_demo_honours_path_before_or_after_the_command(tmp_path: Path, before: bool) -> None:
    target = tmp_path / "d.cbkv"
    args = ["--path", str(target), "demo"] if before else ["demo", "--path", str(target)]
    out = ok(cli(None, *args)).stdout
    assert f"new vault at {target}" in out
    with vault.open(target, PASSPHRASE) as v:
        assert len(v) == 0
    assert "--path must not be empty" in error_line(cli(None, "demo", "--path", ""), 2)
