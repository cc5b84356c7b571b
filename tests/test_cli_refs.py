"""Issue 14, the CLI half: ``read``, ``inject``, ``run --env-file``, ``--clip``, ``generate``, ``find`` and the
did-you-mean hints, each through the real ``cbk-vault`` console script."""

from __future__ import annotations

import json
import os
import re
import stat
import string
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vault
from tests.conftest import PASSPHRASE
from tests.test_cli import GH, TOKEN, cli, error_line, ok, vp

__all__ = ["vp"]  # the fixture, imported for the tests below


# --- read ------------------------------------------------------------------------------------


def test_read_prints_exactly_one_field(vp: Path) -> None:
    assert ok(cli(vp, "read", "cbk://@openai")).stdout == TOKEN + "\n"
    assert ok(cli(vp, "read", "cbk://@openai", "-n")).stdout == TOKEN
    assert ok(cli(vp, "read", "cbk://@gh/value")).stdout == GH + "\n"
    assert ok(cli(vp, "read", "cbk://GitHub")).stdout == GH + "\n"  # a unique bare name
    assert ok(cli(vp, "read", "cbk://Google/clientId")).stdout == "cid\n"  # a config key
    assert ok(cli(vp, "read", "cbk://@openai/meta.env")).stdout == "OPENAI_API_KEY\n"
    assert ok(cli(vp, "read", "cbk://(Google)/meta.nested.a")).stdout == '[1,2,{"b":true}]\n'
    doc = json.loads(ok(cli(vp, "read", "cbk://@openai", "--json")).stdout)
    assert doc == {"reference": "cbk://@openai", "value": TOKEN}


def test_read_never_echoes_what_is_not_a_reference(vp: Path) -> None:
    pasted = "sk-pasted-by-mistake-0xC0FFEE"
    line = error_line(cli(vp, "read", pasted), 2)
    assert pasted not in line and "cbk://" in line
    line = error_line(cli(vp, "read", "cbk://a/" + pasted + "/x"), 2)
    assert pasted not in line and "malformed secret reference" in line
    # Neither needs the vault: no passphrase, no prompt.
    assert cli(vp, "read", pasted, passphrase=None).returncode == 2


def test_read_of_a_missing_secret_suggests_the_alias(vp: Path) -> None:
    line = error_line(cli(vp, "read", "cbk://openai"), 1)
    assert "did you mean cbk://@openai?" in line
    line = error_line(cli(vp, "read", "cbk://@opnai/token"), 1)
    assert "cbk://@openai" in line
    # The secret exists, the field does not: no suggestion, the field is named.
    line = error_line(cli(vp, "read", "cbk://@openai/meta.team"), 1)
    assert "meta.team" in line and "did you mean" not in line
    line = error_line(cli(vp, "read", "cbk://@gh/username"), 1)
    assert "basic" in line and "did you mean" not in line


# --- did you mean ------------------------------------------------------------------------------


def test_fetch_of_a_bare_word_suggests_the_alias(vp: Path) -> None:
    line = error_line(cli(vp, "fetch", "openai"), 1)
    assert "(did you mean @openai?)" in line
    line = error_line(cli(vp, "fetch", "@opnai"), 1)
    assert "@openai" in line
    line = error_line(cli(vp, "fetch", "Gogle"), 1)
    assert "Google" in line
    line = error_line(cli(vp, "fetch", "zzzzzzzz"), 1)
    assert "did you mean" not in line


def test_a_mistyped_command_or_option_suggests_the_right_one(vp: Path) -> None:
    line = error_line(cli(vp, "lsit"), 2)
    assert "unknown command 'lsit'; did you mean 'list'?" in line
    assert "'passwd'" not in line  # one suggestion, not the whole list
    line = error_line(cli(vp, "fetch", "@openai", "--revael"), 2)
    assert "did you mean --reveal?" in line
    line = error_line(cli(vp, "export", "--format", "jsno"), 2)
    assert "did you mean 'json'?" in line
    assert "did you mean" not in error_line(cli(vp, "xyzzy-plugh"), 2)


# --- inject ------------------------------------------------------------------------------------

TEMPLATE = (
    "api_key: {{ cbk://@openai }}\n"
    "github: {{cbk://@gh}}\r\n"
    "client: {{ cbk://Google/clientId }}\n"
    "other: {{ .Values.keep }} and {{ not-a-ref }}\n"
)
FILLED = f"api_key: {TOKEN}\ngithub: {GH}\r\nclient: cid\nother: {{{{ .Values.keep }}}} and {{{{ not-a-ref }}}}\n"


def test_inject_fills_placeholders_into_a_new_private_file(vp: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "config.tpl"
    tpl.write_bytes(TEMPLATE.encode())
    out = tmp_path / "config.yml"
    r = ok(cli(vp, "inject", "-i", str(tpl), "-o", str(out)))
    assert r.stdout == "" and "3 placeholder(s)" in r.stderr and TOKEN not in r.stderr
    assert out.read_bytes() == FILLED.encode()  # byte for byte, CRLF kept
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # Never overwritten unless asked, and refused before any passphrase is needed.
    out.write_text("mine\n")
    line = error_line(cli(vp, "inject", "-i", str(tpl), "-o", str(out), passphrase=None), 2)
    assert "already exists" in line and "--force" in line
    assert out.read_text() == "mine\n"
    doc = json.loads(ok(cli(vp, "inject", "-i", str(tpl), "-o", str(out), "--force", "--json")).stdout)
    assert doc == {"path": str(out), "placeholders": 3}
    assert out.read_bytes() == FILLED.encode() and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_inject_force_replaces_a_symlink_instead_of_writing_through_it(vp: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "t.tpl"
    tpl.write_text("k={{ cbk://@gh }}\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    link = tmp_path / "out.env"
    link.symlink_to(victim)
    assert "already exists" in error_line(cli(vp, "inject", "-i", str(tpl), "-o", str(link)), 2)
    ok(cli(vp, "inject", "-i", str(tpl), "-o", str(link), "-f"))
    assert victim.read_text() == "untouched\n"
    assert not link.is_symlink() and link.read_text() == f"k={GH}\n"
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cbk-vault-")]


def test_inject_reads_stdin_and_writes_stdout(vp: Path) -> None:
    r = ok(cli(vp, "inject", input="Authorization: Bearer {{ cbk://@openai/token }}\n"))
    assert r.stdout == f"Authorization: Bearer {TOKEN}\n"


def test_inject_without_placeholders_needs_no_vault(tmp_path: Path) -> None:
    r = ok(cli(tmp_path / "missing.cbkv", "inject", input="plain {{ x }}\n", passphrase=None))
    assert r.stdout == "plain {{ x }}\n"


def test_inject_writes_nothing_when_a_placeholder_fails(vp: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "t.tpl"
    tpl.write_text("a={{ cbk://@openai }}\nb={{ cbk://@nope }}\nc={{ cbk://@gh\n")
    out = tmp_path / "out"
    line = error_line(cli(vp, "inject", "-i", str(tpl), "-o", str(out)), 1)
    assert line.startswith("cbk-vault: error: line 2:") and not out.exists()
    tpl.write_text("a={{ cbk://@openai }}\nc={{ cbk://@gh\n")
    line = error_line(cli(vp, "inject", "-i", str(tpl), "-o", str(out)), 2)
    assert "line 2" in line and "not closed" in line and not out.exists()


# --- run --env-file ------------------------------------------------------------------------------


def _show_env(*names: str) -> list[str]:
    script = f"import os, json; print(json.dumps({{n: os.environ.get(n) for n in {list(names)!r}}}))"
    return ["--", "python3", "-c", script]


def test_run_env_file_resolves_references_into_the_child(vp: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.env"
    base.write_text(
        "# where each credential lives\n"
        "OPENAI_API_KEY=cbk://@openai\n"
        "export GH_TOKEN='cbk://@gh'\n"
        'CLIENT_ID="cbk://Google/clientId"\n'
        "LOG_LEVEL=debug\n"
        "PAGER=less\n"
        "EMPTY=\n"
        "BARE\n"
    )
    local = tmp_path / "local.env"
    local.write_text("LOG_LEVEL=info\nGH_TOKEN=override\n")
    r = ok(
        cli(
            vp,
            "run",
            "--env-file",
            str(base),
            "--env-file",
            str(local),
            "--env",
            "EXTRA=@gh",
            *_show_env("OPENAI_API_KEY", "GH_TOKEN", "CLIENT_ID", "LOG_LEVEL", "PAGER", "EMPTY", "BARE", "EXTRA"),
        )
    )
    assert json.loads(r.stdout) == {
        "OPENAI_API_KEY": TOKEN,
        "GH_TOKEN": "override",  # a later file wins
        "CLIENT_ID": "cid",
        "LOG_LEVEL": "info",
        "PAGER": "less",  # the file is the owner's choice, like --env: no denylist
        "EMPTY": "",
        "BARE": None,  # a name without "=" sets nothing, as in load_dotenv
        "EXTRA": GH,
    }
    # --env wins over the files; meta.env secrets are not added once variables are named.
    r = ok(cli(vp, "run", "--env-file", str(local), "--env", "GH_TOKEN=@gh", *_show_env("GH_TOKEN", "OPENAI_API_KEY")))
    assert json.loads(r.stdout) == {"GH_TOKEN": GH, "OPENAI_API_KEY": None}


def test_run_env_file_without_references_needs_no_vault(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nB=${A}-2\n")
    r = ok(cli(tmp_path / "none.cbkv", "run", "--env-file", str(env), *_show_env("A", "B"), passphrase=None))
    assert json.loads(r.stdout) == {"A": "1", "B": "1-2"}


def test_run_env_file_errors_name_the_file_and_variable_never_a_value(vp: Path, tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text("GOOD=cbk://@openai\nBAD=cbk://@missing\n")
    line = error_line(cli(vp, "run", "--env-file", str(env), "--", "true"), 1)
    assert "app.env" in line and "BAD" in line and TOKEN not in line
    env.write_text("BAD-NAME=x\n")
    line = error_line(cli(vp, "run", "--env-file", str(env), "--", "true"), 2)
    assert "not a valid environment variable name" in line
    line = error_line(cli(vp, "run", "--env-file", str(tmp_path / "nope.env"), "--", "true"), 2)
    assert "does not exist" in line


# --- clipboard ---------------------------------------------------------------------------------

_FAKE_CLIP = """#!/bin/sh
# A stand-in clipboard tool: reading options print the store, anything else replaces it.
for arg in "$@"; do
  case "$arg" in
    -o|--output|--no-newline) /bin/cat "$FAKE_CLIP_FILE" 2>/dev/null; exit 0 ;;
    --clear) : > "$FAKE_CLIP_FILE"; exit 0 ;;
  esac
done
/bin/cat > "$FAKE_CLIP_FILE"
"""


@pytest.fixture(params=["xclip", "xsel", "wl-copy"])
def clipboard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fake clipboard tool on PATH; yields (the file it stores into, the environment to run with)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    names = {"xclip": ["xclip"], "xsel": ["xsel"], "wl-copy": ["wl-copy", "wl-paste"]}[request.param]
    for name in names:
        tool = bindir / name
        tool.write_text(_FAKE_CLIP)
        tool.chmod(0o755)
    store = tmp_path / "clipboard"
    env = {
        "PATH": str(bindir),  # only the fake: the machine may have a real xclip or wl-copy
        "FAKE_CLIP_FILE": str(store),
        "CBK_VAULT_CLIP_TIME": "1",
        "DISPLAY": ":99" if request.param != "wl-copy" else "",
        "WAYLAND_DISPLAY": "wayland-9" if request.param == "wl-copy" else "",
    }
    yield store, env


def _wait_for(predicate: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_clip_copies_and_clears_only_what_it_copied(vp: Path, clipboard: tuple[Path, dict[str, str]]) -> None:
    store, env = clipboard
    r = ok(cli(vp, "fetch", "@openai", "--clip", env=env))
    assert TOKEN not in r.stdout + r.stderr and "cleared in 1 s" in r.stderr
    assert store.read_text() == TOKEN
    assert _wait_for(lambda: store.read_text() == ""), "the clipboard was not cleared"
    # Something copied in the meantime is left alone.
    ok(cli(vp, "read", "cbk://@gh", "--clip", env=env))
    assert store.read_text() == GH
    store.write_text("copied by someone else")
    time.sleep(2.5)
    assert store.read_text() == "copied by someone else"


def test_the_clearer_holds_no_value_in_argv_or_environment(vp: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "xclip").write_text(_FAKE_CLIP)
    (bindir / "xclip").chmod(0o755)
    store = tmp_path / "clipboard"
    env = {
        "PATH": str(bindir),
        "FAKE_CLIP_FILE": str(store),
        "CBK_VAULT_CLIP_TIME": "30",
        "DISPLAY": ":99",
        "WAYLAND_DISPLAY": "",
    }
    ok(cli(vp, "fetch", "@openai", "--clip", "--json", env=env))
    clearers = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        assert TOKEN.encode() not in argv
        if b"clearer_main" in argv and str(store).encode() in environ:
            clearers.append(int(proc.name))
            assert TOKEN.encode() not in environ
    assert clearers, "no clearer is waiting"
    for pid in clearers:
        os.kill(pid, 9)


def test_clip_without_a_clipboard_is_a_clear_error(vp: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    no_tool = {"PATH": str(empty), "DISPLAY": ":99", "WAYLAND_DISPLAY": ""}
    line = error_line(cli(vp, "fetch", "@openai", "--clip", env=no_tool), 2)
    assert "install xclip or xsel" in line
    headless = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    assert "neither WAYLAND_DISPLAY nor DISPLAY" in error_line(cli(vp, "read", "cbk://@gh", "--clip", env=headless), 2)
    bad_time = {"CBK_VAULT_CLIP_TIME": "soon", "DISPLAY": ":99"}
    assert "CBK_VAULT_CLIP_TIME" in error_line(cli(vp, "fetch", "@gh", "--clip", env=bad_time), 2)
    assert "not both" in error_line(cli(vp, "fetch", "@gh", "--clip", "--reveal"), 2)


def test_the_platform_picks_its_tool(tmp_path: Path) -> None:
    from vault.cli._clipboard import find_tool
    from vault.cli._terminal import UsageError

    for name in ("pbcopy", "pbpaste", "wl-copy", "wl-paste", "xsel"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    path = str(tmp_path)
    assert find_tool({"PATH": path}, platform="darwin").name == "pbcopy"
    # Wayland first when both displays are set (XWayland sets DISPLAY too); xsel when xclip is missing.
    assert find_tool({"PATH": path, "WAYLAND_DISPLAY": "w", "DISPLAY": ":0"}, platform="linux").name == "wl-copy"
    assert find_tool({"PATH": path, "DISPLAY": ":0"}, platform="linux").name == "xsel"
    with pytest.raises(UsageError, match="install pbcopy"):
        find_tool({"PATH": str(tmp_path / "nothing")}, platform="darwin")
    with pytest.raises(UsageError, match="install wl-clipboard"):
        find_tool({"PATH": str(tmp_path / "nothing"), "WAYLAND_DISPLAY": "w"}, platform="linux")


# --- generate ----------------------------------------------------------------------------------


def test_generate_prints_a_fresh_password_with_every_class(vp: Path) -> None:
    seen = set()
    for _ in range(3):
        password = ok(cli(None, "generate", passphrase=None)).stdout
        assert password.endswith("\n")
        password = password[:-1]
        assert len(password) == 24
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.digits for c in password)
        assert any(c in "!#$%&()*+,-./:;<=>?@[]^_{|}~" for c in password)
        assert not set(password) & set("'\"\\` ")
        seen.add(password)
    assert len(seen) == 3
    plain = ok(cli(None, "generate", "--length", "40", "--no-symbols", "-n", passphrase=None)).stdout
    assert len(plain) == 40 and plain.isalnum()
    doc = json.loads(ok(cli(None, "generate", "--json", "--length", "16", passphrase=None)).stdout)
    assert len(doc["value"]) == 16 and doc["entropyBits"] >= 100
    assert "from 8 to 1024" in error_line(cli(None, "generate", "--length", "7", passphrase=None), 2)


def test_create_generate_stores_a_value_that_is_never_printed(vp: Path) -> None:
    r = ok(cli(vp, "create", "--name", "DB", "--alias", "db", "--generate", "--length", "32"))
    with vault.open(vp, PASSPHRASE) as v:
        stored = v.secret.fetch("@db").value
    assert stored is not None and len(stored) == 32
    assert stored not in r.stdout + r.stderr and "generated value (32 characters) is stored" in r.stdout
    r = ok(cli(vp, "update", "@db", "--generate", "--no-symbols"))
    with vault.open(vp, PASSPHRASE) as v:
        rotated = v.secret.fetch("@db").value
    assert rotated is not None and rotated != stored and rotated.isalnum() and rotated not in r.stdout + r.stderr
    r = ok(cli(vp, "create", "--name", "J", "--generate", "--json"))
    assert "value" not in json.loads(r.stdout)
    line = error_line(cli(vp, "create", "--name", "X", "--generate", "--value-stdin", input="v"), 2)
    assert "--generate or --value-stdin" in line
    assert "add --generate" in error_line(cli(vp, "create", "--name", "X", "--length", "30", "--no-value"), 2)


# --- find --------------------------------------------------------------------------------------


def test_find_matches_names_aliases_descriptions_and_meta_in_any_case(vp: Path) -> None:
    def found(text: str) -> dict[str, list[str]]:
        doc = json.loads(ok(cli(vp, "find", text, "--json")).stdout)
        return {item["name"]: item["matched"] for item in doc["items"]}

    assert found("OPENAI") == {"OpenAI": ["name", "alias", "meta.env"]}
    assert found("Repo TOKEN") == {"GitHub": ["description"]}
    assert found("ml") == {"Google": ["meta.team"]}
    assert found("TRUE") == {"Google": ["meta.nested.a[2].b"]}
    assert found("@gh") == {} and found("GH") == {"GitHub": ["alias"]}
    # Values are never searched (nor decrypted).
    assert found(TOKEN) == {} and found(GH[:8]) == {}
    table = ok(cli(vp, "find", "git")).stdout
    assert re.search(r"GitHub\s+@gh\s+name", table)
    assert ok(cli(vp, "find", "nothing-like-it")).stdout == "No secret matches 'nothing-like-it'.\n"
