"""Adversarial tests, one class per trust boundary on the owner's own machine: every byte from outside
the owner is hostile.

Each test plays an attacker at one boundary through the real ``cbk-vault`` command and asserts
what SECURITY.md's trust-boundary table promises: the refusal is a one-line error (exit 2) that
names the variable and the secret's id but never a value, the vault still opens with every
acknowledged write intact, and what reaches the terminal cannot drive it.

* ``TestHostileImportFile``: an export, a ``.env`` or a KeePass file someone hands the owner.
* ``TestHostileEnvironment``: the environment and command line of ``run``'s child and of an env
  export, as chosen by a secret that anyone who can write a secret planted (a sync pull from a
  hostile cloud, an imported file, a client of the stand-in).
* ``TestHostileTerminal``: names, descriptions, meta, config and error text on their way to the
  owner's terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from tests.test_cli import SECRETS, cli, error_line, ok
from vault.cli import _formats as formats

EVIL_LIB = "/tmp/evil-preload-VALUE-4b1e.so"
OWNER = "sk_owner_VALUE_0c3a"


def _state(path: Path) -> dict[str, dict[str, Any]]:
    with vault.open(path, PASSPHRASE) as v:
        return {s.id: v.secret.fetch(s.id).to_dict(reveal=True) for s in v.secret.list(take=100)}


def _intact(path: Path, acknowledged: dict[str, dict[str, Any]]) -> None:
    """The vault opens with the owner's passphrase and holds exactly the acknowledged secrets."""
    assert _state(path) == acknowledged


def _plant(path: Path, **fields: Any) -> str:
    """What a sync pull, an import or a stand-in client can do: write any secret the field rules accept."""
    with vault.open(path, PASSPHRASE) as v:
        return v.secret.create(**fields).id


def _refusal(proc: Any, *needles: str) -> str:
    line = error_line(proc, 2)
    for needle in needles:
        assert needle in line, (needle, line)
    assert EVIL_LIB not in line and OWNER not in line
    assert proc.stdout == ""  # the command never ran; nothing was exported
    return line


@pytest.fixture
def owned(tmp_path: Path) -> Path:
    """The owner's vault: one secret that `run` injects by meta.env."""
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="OpenAI", alias="openai", value=OWNER, meta={"env": "OPENAI_API_KEY"})
    return path


# --- the environment / command line ------------------------------------------------------------

#: One name per group of the denylist, in the case the tools read (and some in another case).
DENIED = [
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "GCONV_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONWARNINGS",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "BASH_ENV",
    "ENV",
    "PS4",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "IFS",
    "BASH_FUNC_ls",
    "PATH",
    "path",
    "HOME",
    "SHELL",
    "TMPDIR",
    "HTTP_PROXY",
    "https_proxy",
    "All_Proxy",
    "no_proxy",
    "OPENAI_BASE_URL",
    "anthropic_base_url",
    "OPENAI_API_BASE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "SSLKEYLOGFILE",
    "GIT_SSH_COMMAND",
    "GIT_CONFIG_COUNT",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "GIT_PAGER",
    "LESSOPEN",
    "CBK_VAULT_PATH",
    "CBK_VAULT_PASSPHRASE",
]
#: Credentials a secret is meant to set: none of them is refused.
ALLOWED = ["OPENAI_API_KEY", "GITHUB_TOKEN", "LDAP_URL", "PATH_TO_NOTHING", "DB_URL", "AWS_SECRET_ACCESS_KEY", "_"]


class TestHostileEnvironment:
    """A planted secret chooses a variable name; only the owner, on the command line, may choose a dangerous one."""

    @pytest.mark.parametrize("name", DENIED)
    def test_the_denylist_covers_every_group(self, name: str) -> None:
        assert formats.env_denial(name), name

    @pytest.mark.parametrize("name", ALLOWED)
    def test_ordinary_credential_names_are_not_refused(self, name: str) -> None:
        assert formats.env_denial(name) is None

    def test_the_documented_list_is_the_enforced_list(self) -> None:
        docs = (Path(__file__).parent.parent / "docs" / "CLI.md").read_text()
        for group in formats.DENIED_ENV:
            assert group.reason
            for name in sorted(group.names):
                assert f"`{name}`" in docs, name
            for prefix in group.prefixes:
                assert f"`{prefix}*`" in docs, prefix
            for suffix in group.suffixes:
                assert f"`*{suffix}`" in docs, suffix

    def test_run_refuses_to_start_when_a_secret_sets_ld_preload(self, owned: Path) -> None:
        planted = _plant(owned, name="innocent", value=EVIL_LIB, meta={"env": "LD_PRELOAD"})
        acknowledged = _state(owned)
        proc = cli(owned, "run", "--", "sh", "-c", 'printf "ran %s" "${LD_PRELOAD-unset}"')
        line = _refusal(proc, "LD_PRELOAD", planted, "--allow-env LD_PRELOAD")
        assert "[USAGE]" in line
        _intact(owned, acknowledged)

    def test_allow_env_lets_exactly_the_named_variables_through(self, owned: Path) -> None:
        proxy = _plant(owned, name="proxy", value="http://127.0.0.1:9", meta={"env": "HTTPS_PROXY"})
        opts = _plant(owned, name="opts", value="--require /tmp/x.js", meta={"env": "NODE_OPTIONS"})
        show = 'printf "%s|%s" "$HTTPS_PROXY" "$OPENAI_API_KEY"'
        _refusal(cli(owned, "run", "--allow-env", "HTTPS_PROXY", "--", "sh", "-c", show), "NODE_OPTIONS", opts)
        both = ("--allow-env", "HTTPS_PROXY", "--allow-env", "NODE_OPTIONS")
        proc = ok(cli(owned, "run", *both, "--", "sh", "-c", show))
        assert proc.stdout == f"http://127.0.0.1:9|{OWNER}"
        assert proxy not in proc.stderr
        assert "not a valid" in error_line(cli(owned, "run", "--allow-env", "A=B", "--", "true"), 2)
        # Allowed exactly as typed: a second planted secret in another case is not let through.
        other = _plant(owned, name="other", value="http://127.0.0.1:8", meta={"env": "Https_Proxy"})
        acknowledged = _state(owned)
        _refusal(cli(owned, "run", *both, "--", "true"), "Https_Proxy", other)
        _intact(owned, acknowledged)

    def test_a_variable_named_by_env_on_the_command_line_is_the_owners_choice(self, owned: Path) -> None:
        _plant(owned, name="proxy", alias="proxy", value="http://127.0.0.1:9", meta={"env": "HTTPS_PROXY"})
        proc = ok(cli(owned, "run", "--env", "HTTPS_PROXY=@proxy", "--", "sh", "-c", 'printf %s "$HTTPS_PROXY"'))
        assert proc.stdout == "http://127.0.0.1:9"

    @pytest.mark.parametrize("bad", ["A=B", "X Y", "1X", "ÄB", "BASH_FUNC_f%%", "A\nB", ""])
    def test_run_refuses_a_meta_env_that_is_not_a_shell_identifier_and_names_the_secret(
        self, owned: Path, bad: str
    ) -> None:
        planted = _plant(owned, name="odd", value="v", meta={"env": bad})
        _refusal(cli(owned, "run", "--", "true"), planted, "not a valid")

    @pytest.mark.parametrize(
        ("fields", "variable"),
        [
            ({"meta": {"env": "LD_PRELOAD"}}, "LD_PRELOAD"),
            ({"alias": "ld_preload"}, "LD_PRELOAD"),
            ({"name": "bash env"}, "BASH_ENV"),
            ({"name": "http_proxy"}, "HTTP_PROXY"),
        ],
    )
    def test_export_env_refuses_a_dangerous_name_from_meta_alias_or_name(
        self, owned: Path, tmp_path: Path, fields: dict[str, Any], variable: str
    ) -> None:
        planted = _plant(owned, value=EVIL_LIB, **fields)
        acknowledged = _state(owned)
        out = tmp_path / "out.env"
        _refusal(cli(owned, "export", "--format", "env", "--output", str(out)), variable, planted)
        assert not out.exists()
        _refusal(cli(owned, "export", "--format", "env"), variable, planted)
        _intact(owned, acknowledged)
        ok(cli(owned, "export", "--format", "env", "--allow-env", variable, "--output", str(out)))
        assert f"{variable}='{EVIL_LIB}'\n" in out.read_text()

    def test_json_export_carries_the_name_as_data(self, owned: Path) -> None:
        # JSON is a backup of every field: the name travels, and `run` and `export --format env` judge it at use.
        _plant(owned, name="innocent", value=EVIL_LIB, meta={"env": "LD_PRELOAD"})
        doc = json.loads(ok(cli(owned, "export", "--format", "json")).stdout)
        assert {"env": "LD_PRELOAD"} in [item["meta"] for item in doc["items"]]


# --- a hostile import file -----------------------------------------------------------------------


class TestHostileImportFile:
    """A file someone hands the owner: every field passes the API's own checks, or nothing is written."""

    def _import(self, path: Path, tmp_path: Path, content: bytes, *options: str) -> Any:
        src = tmp_path / "hostile"
        src.write_bytes(content)
        return cli(path, "import", *options, str(src))

    def _refused(self, path: Path, tmp_path: Path, content: bytes, *options: str) -> str:
        acknowledged = _state(path)
        before = path.read_bytes()
        line = error_line(self._import(path, tmp_path, content, *options), 2)
        assert path.read_bytes() == before
        _intact(path, acknowledged)
        return line

    def test_an_export_that_plants_ld_preload_imports_but_run_refuses_it(self, owned: Path, tmp_path: Path) -> None:
        item = {"id": "m2q1x0c3v4b5n6m7a8s9d0f1", "name": "helper", "value": EVIL_LIB, "meta": {"env": "LD_PRELOAD"}}
        proc = ok(self._import(owned, tmp_path, json.dumps({"items": [item]}).encode()))
        assert "LD_PRELOAD" in proc.stderr and "--allow-env" in proc.stderr  # the owner is told at once
        _refusal(cli(owned, "run", "--", "true"), "LD_PRELOAD", item["id"])

    def test_a_dotenv_that_sets_ld_preload_imports_but_run_and_export_refuse_it(
        self, owned: Path, tmp_path: Path
    ) -> None:
        content = f"OK_TOKEN=fine\nexport LD_PRELOAD={EVIL_LIB}\nPATH=/tmp/evil:/usr/bin\n".encode()
        proc = ok(self._import(owned, tmp_path, content, "--format", "env"))
        assert "LD_PRELOAD" in proc.stderr and "PATH" in proc.stderr and EVIL_LIB not in proc.stderr
        _refusal(cli(owned, "run", "--", "true"), "LD_PRELOAD")
        _refusal(cli(owned, "export", "--format", "env"), "LD_PRELOAD")

    def test_a_keepass_entry_titled_like_a_loader_variable_cannot_export_as_one(
        self, owned: Path, tmp_path: Path
    ) -> None:
        pykeepass = pytest.importorskip("pykeepass")
        kdbx = tmp_path / "hostile.kdbx"
        db = pykeepass.create_database(str(kdbx), password="kp")
        db.add_entry(db.root_group, "LD PRELOAD", "", EVIL_LIB)
        db.add_entry(db.root_group, "\u202eevil\x9b2J\u200b", "", "x")  # KeePass's XML carries no C0 control
        db.save()
        pw = tmp_path / "kp.txt"
        pw.write_text("kp")
        ok(cli(owned, "import", "--format", "kdbx", str(kdbx), "--kdbx-password-file", str(pw)))
        _refusal(cli(owned, "export", "--format", "env"), "LD_PRELOAD")
        listing = ok(cli(owned, "list")).stdout
        _no_terminal_controls(listing)

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"[" * 100_000, "nested too deeply"),
            (json.dumps({"items": [{"meta": {"a": [[[[[[[[[["deep"]]]]]]]]]]}}]}).encode(), "nested at most"),
            (b'{"items": [{"name": "x", "meta": {"n": 1e400}}]}', "NaN and Infinity"),
            (b'{"items": [{"name": "x", "meta": {"n": NaN}}]}', "NaN and Infinity"),
            (b'{"items": [{"name": "x", "meta": {"n": -Infinity}}]}', "NaN and Infinity"),
            (b'{"items": [{"name": "x", "meta": {"n": ' + b"9" * 5000 + b"}}]}", "too many digits"),
            (b'{"items": [{"name": "x", "meta": {"n": 18446744073709551616}}]}', "meta must be JSON"),
            (b'{"items": [{"name": "x", "createdAt": 1e30}]}', "epoch milliseconds"),
            (b'{"items": [{"name": "x", "value": 12}]}', "value must be a string"),
            (b'{"items": [{"name": "a", "name": "b"}]}', "repeats a key"),
            (
                b'{"items": [{"id": "m2q1x0c3v4b5n6m7a8s9d0f1", "name": "a"},'
                b' {"id": "m2q1x0c3v4b5n6m7a8s9d0f1", "name": "b"}]}',
                "repeats item 1",
            ),
            (b'{"items": [{"id": "../../etc/passwd"}]}', "id has the wrong form"),
            (b'{"items": [{"name": "x", "sneaky": 1}]}', "unknown field"),
        ],
    )
    def test_malformed_or_oversized_json_is_refused_and_changes_nothing(
        self, owned: Path, tmp_path: Path, content: bytes, message: str
    ) -> None:
        assert message in self._refused(owned, tmp_path, content)

    def test_control_characters_are_stored_as_data_and_never_reach_the_terminal(
        self, owned: Path, tmp_path: Path
    ) -> None:
        name = "pay\x9b2J\u202eMENTS\u200b\x1b]8;;http://evil\x07"
        item = {"name": name, "description": "\u2066hidden\u2069\x85", "value": "v\x9b", "meta": {"k": "\u202e"}}
        ok(self._import(owned, tmp_path, json.dumps([item]).encode()))
        stored = next(s for s in _state(owned).values() if s["name"] == name)
        assert stored["description"] == item["description"] and stored["value"] == "v\x9b"  # exact, as data
        for args in (("list",), ("fetch", stored["id"]), ("list", "--json"), ("fetch", stored["id"], "--json")):
            proc = ok(cli(owned, *args))
            _no_terminal_controls(proc.stdout + proc.stderr)


# --- the terminal -------------------------------------------------------------------------------

#: What a planted field can hold that a terminal would act on, or that hides or reorders text.
TERMINAL_HOSTILE = (
    "\x1b[2J",  # ESC CSI: clear the screen
    "\x9b31m",  # C1 CSI (one character): a colour change in terminals that read C1 controls
    "\x9d0;title\x9c",  # C1 OSC ... ST: set the window title
    "\x85",  # C1 NEL: a line break
    "\x7f",  # DEL
    "\u202e",  # right-to-left override: "txt.exe" shows as "exe.txt"
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200b",  # zero-width space: "OpenAI" and "Open\u200bAI" look the same
    "\u200d",  # zero-width joiner
    "\ufeff",  # zero-width no-break space
    "\u2028",  # line separator
    "\u3164",  # Hangul filler: a blank letter (category Lo, not a control)
    "\ufe0f",  # a variation selector after a letter: invisible
    "\U000e0041",  # a tag character: invisible
)
_HOSTILE_CHARS = frozenset("".join(TERMINAL_HOSTILE)) - frozenset("[2J31m0;title")


def _no_terminal_controls(text: str) -> None:
    raw = sorted({f"U+{ord(ch):04X}" for ch in text if ch in _HOSTILE_CHARS or (ch < " " and ch != "\n")})
    assert not raw, f"reached the terminal raw: {raw}"


class TestHostileTerminal:
    """Every human-readable line is escaped; --json is exact JSON with those characters escaped; values stay exact."""

    @pytest.fixture
    def planted(self, owned: Path) -> tuple[Path, str, str]:
        evil = "".join(TERMINAL_HOSTILE)
        sid = _plant(
            owned,
            name="Open" + evil + "AI",
            description="desc" + evil,
            blueprint_id="bp" + evil,
            meta={"note" + evil: "m" + evil},
            config={"clientId": "c" + evil},
            value="value" + evil,
        )
        return owned, sid, evil

    def test_fetch_and_list_escape_every_field(self, planted: tuple[Path, str, str]) -> None:
        path, sid, _ = planted
        described = ok(cli(path, "fetch", sid)).stdout
        _no_terminal_controls(described)
        assert "\\x9b31m" in described and "\\u202e" in described  # shown, not hidden: the owner sees the trick
        for args in (("list",), ("list", "--all"), ("delete", sid, "--yes")):
            proc = ok(cli(path, *args))
            _no_terminal_controls(proc.stdout + proc.stderr)

    def test_json_output_escapes_them_and_decodes_to_the_exact_strings(self, planted: tuple[Path, str, str]) -> None:
        path, sid, evil = planted
        for args in (("fetch", sid, "--json"), ("list", "--json"), ("fetch", sid, "--json", "--reveal")):
            out = ok(cli(path, *args)).stdout
            _no_terminal_controls(out)
            doc = json.loads(out)
            item = doc["items"][0] if "items" in doc else doc
            if item["id"] == sid:
                assert item["name"] == "Open" + evil + "AI" and item["meta"] == {"note" + evil: "m" + evil}
        assert json.loads(ok(cli(path, "fetch", sid, "--json", "--reveal")).stdout)["value"] == "value" + evil

    def test_a_revealed_value_is_the_owners_explicit_request_and_stays_byte_exact(
        self, planted: tuple[Path, str, str]
    ) -> None:
        path, sid, evil = planted
        assert ok(cli(path, "fetch", sid, "--reveal", "-n")).stdout == "value" + evil
        got = ok(cli(path, "run", "--env", f"V={sid}", "--", "sh", "-c", 'printf %s "$V"')).stdout
        assert got == "value" + evil

    def test_error_lines_are_escaped(self, tmp_path: Path) -> None:
        hostile = str(tmp_path / "vault\u202egpj.exe\x9b2J")
        for json_flag in ((), ("--json",)):
            proc = cli(None, "--path", hostile, *json_flag, "list")
            assert proc.returncode == 6
            _no_terminal_controls(proc.stderr)

    def test_sync_report_lines_are_escaped(self) -> None:
        from vault.cli._sync import format_report
        from vault.sync import Change, SyncReport

        evil = "".join(TERMINAL_HOSTILE)
        report = SyncReport(direction="pull", dry_run=True, pulled=(Change(local_id=None, remote_id="r1", name=evil),))
        _no_terminal_controls(format_report(report))


def test_no_secret_in_this_module_is_a_real_one() -> None:
    # The leak checks of tests/test_cli.py search stderr for these; ours must not collide with them.
    assert not {EVIL_LIB, OWNER} & set(SECRETS)
