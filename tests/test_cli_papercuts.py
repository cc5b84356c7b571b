"""Issue 14's papercuts, each through the real ``cbk-vault`` console script (sync against the fake cloud)."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from tests.fakecloud import FakeCloud, running
from tests.test_cli import GH, TOKEN, cli, error_line, ok, vp
from vault.cli._parser import COMMANDS, build_parser
from vault.cli._passwords import estimate

__all__ = ["vp"]  # the fixture, imported for the tests below


# --- run and secrets without a value ------------------------------------------------------------


def test_run_leaves_out_a_meta_env_secret_without_a_value(vp: Path) -> None:
    with vault.open(vp, PASSPHRASE) as v:
        pulled = v.secret.create(name="Pulled", meta={"env": "PULLED_KEY"})  # what sync leaves behind
    show = ["--", "sh", "-c", 'printf "%s|%s" "$OPENAI_API_KEY" "${PULLED_KEY-unset}"']
    r = ok(cli(vp, "run", *show))
    assert r.stdout == f"{TOKEN}|unset"
    assert "warning: PULLED_KEY is not set" in r.stderr and pulled.id in r.stderr
    assert f"cbk-vault update {pulled.id} --value-prompt" in r.stderr and "--strict" in r.stderr
    line = error_line(cli(vp, "run", "--strict", *show), 1)
    assert pulled.id in line and "PULLED_KEY" in line and "--value-prompt" in line


# --- meta values and filters ---------------------------------------------------------------------


def test_cli_meta_values_and_list_filters_agree(vp: Path) -> None:
    ok(cli(vp, "update", "@openai", "--meta", "rotated=true", "--meta", "tier=2"))
    ok(cli(vp, "create", "--name", "Old", "--meta", "rotated=false", "--meta", "tier=02", "--no-value"))
    with vault.open(vp, PASSPHRASE) as v:
        assert v.secret.fetch("@openai").meta == {"env": "OPENAI_API_KEY", "rotated": True, "tier": "2"}
        assert v.secret.fetch("(Old)").meta == {"rotated": False, "tier": "02"}  # numbers stay as typed

    def names(*meta: str) -> list[str]:
        args = [a for m in meta for a in ("--meta", m)]
        return [i["name"] for i in json.loads(ok(cli(vp, "list", *args, "--json")).stdout)["items"]]

    assert names("rotated=true") == ["OpenAI"]
    assert names("rotated=false") == ["Old"]
    assert names("tier=2") == ["OpenAI"] and names("tier=02") == ["Old"]


# --- list's next-page hint -------------------------------------------------------------------------


def test_list_next_page_hint_keeps_order_take_meta_and_path(tmp_path: Path) -> None:
    path = tmp_path / "many.cbkv"
    ticks = iter(range(1_767_225_600_000, 1_767_225_900_000, 1000))
    with vault.init(path, PASSPHRASE, kdf=FAST, clock=ticks.__next__) as v:
        for i in range(5):
            v.secret.create(name=f"team-{i}", meta={"team": "ml"})
            v.secret.create(name=f"other-{i}", meta={"team": "web"})
    r = ok(cli(path, "list", "--order", "asc", "--take", "2", "--meta", "team=ml"))
    assert [line.split()[1] for line in r.stdout.splitlines()[1:]] == ["team-0", "team-1"]
    hint = r.stderr.strip()
    assert hint.startswith("(more may follow: cbk-vault ") and hint.endswith(", or --all)")
    suggested = shlex.split(hint.removeprefix("(more may follow: ").removesuffix(", or --all)"))
    assert suggested[:3] == ["cbk-vault", "--path", str(path)]
    for option in ("--order asc", "--take 2", "--meta team=ml", "--cursor"):
        assert option in shlex.join(suggested), option
    # Running the suggested command gives the next page: no item repeats, nothing from another team.
    nxt = ok(cli(None, *suggested[1:]))
    assert [line.split()[1] for line in nxt.stdout.splitlines()[1:]] == ["team-2", "team-3"]


# --- import ------------------------------------------------------------------------------------


def test_import_guesses_the_format_or_says_which_to_give(vp: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("APP_TOKEN=abc\n")
    r = ok(cli(vp, "import", str(env_file)))
    assert "Imported 1 secret(s)" in r.stdout
    dotenv = tmp_path / ".env.local"
    dotenv.write_text("LOCAL_ONE=1\n")
    ok(cli(vp, "import", str(dotenv)))
    sniffed = tmp_path / "settings"
    sniffed.write_text("# no extension\nexport SNIFFED=2\n")
    ok(cli(vp, "import", str(sniffed)))
    with vault.open(vp, PASSPHRASE) as v:
        for name in ("APP_TOKEN", "LOCAL_ONE", "SNIFFED"):
            assert v.secret.fetch(f"({name})").meta == {"env": name}
    line = error_line(cli(vp, "import", "--format", "json", str(env_file)), 2)
    assert "--format env" in line
    odd = tmp_path / "notes.txt"
    odd.write_text("just some words\n")
    assert "pass --format json, --format env or --format kdbx" in error_line(cli(vp, "import", str(odd)), 2)


def test_import_new_ids_on_conflict_skip_or_replace(vp: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.json"
    ok(cli(vp, "export", "--output", str(backup)))
    with vault.open(vp, PASSPHRASE) as v:
        v.secret.update("@openai", value="rotated-since-the-backup")
        openai_id = v.secret.fetch("@openai").id
    before = ok(cli(vp, "list", "--json")).stdout
    line = error_line(cli(vp, "import", "--new-ids", str(backup)), 2)
    assert "alias 'openai' is already in use" in line and "--on-conflict skip|replace" in line
    assert ok(cli(vp, "list", "--json")).stdout == before  # all or nothing
    doc = json.loads(ok(cli(vp, "import", "--new-ids", "--on-conflict", "skip", str(backup), "--json")).stdout)
    assert (doc["imported"], doc["skipped"], doc["replaced"]) == (1, 2, 0)  # Google has no alias: a copy
    with vault.open(vp, PASSPHRASE) as v:
        assert v.secret.fetch("@openai").value == "rotated-since-the-backup"
    r = ok(cli(vp, "import", "--on-conflict", "replace", str(backup)))
    assert "3 replaced" in r.stdout
    with vault.open(vp, PASSPHRASE) as v:
        s = v.secret.fetch("@openai")
        assert (s.id, s.value) == (openai_id, TOKEN)  # the backup's value, under the same id
        assert v.secret.fetch("@gh").value == GH


# --- output and warnings ----------------------------------------------------------------------------


def test_create_says_the_value_is_stored(vp: Path) -> None:
    r = ok(cli(vp, "create", "--name", "K", "--value-stdin", input="v-123"))
    assert "its value is stored" in r.stdout and "v-123" not in r.stdout
    assert "without a value" in ok(cli(vp, "create", "--name", "L", "--no-value")).stdout


@pytest.mark.parametrize(
    ("phrase", "weak"),
    [
        ("password123", True),
        ("P@ssw0rd!", True),
        ("Summer2024", True),
        ("aaaaaaaaaaaaaaaaaaaa", True),
        ("abcdef123456", True),
        ("Dragon", True),
        ("x7#Kq9", True),
        ("x7#Kq9!mZ2vR", False),
        ("correct horse battery staple", False),
        ("q8V#t2mL9!xR4wPz", False),
    ],
)
def test_passphrase_strength_is_estimated_not_counted(phrase: str, weak: bool) -> None:
    assert estimate(phrase).weak is weak, estimate(phrase)


def test_init_and_passwd_warn_on_a_weak_passphrase(tmp_path: Path) -> None:
    weak = tmp_path / "weak.cbkv"
    r = ok(cli(weak, "init", "--kdf", "interactive", passphrase="Password123!"))
    assert "warning: this passphrase is weak" in r.stderr and "common password" in r.stderr
    assert "Password123!" not in r.stderr
    strong = tmp_path / "strong.cbkv"
    assert "weak" not in ok(cli(strong, "init", "--kdf", "interactive", passphrase="q8V#t2mL9!xR4wPz")).stderr
    r = ok(
        cli(
            strong,
            "passwd",
            passphrase="q8V#t2mL9!xR4wPz",
            env={"CBK_VAULT_NEW_PASSPHRASE": "letmein"},
            check_stderr=False,
        )
    )
    assert "passphrase is weak" in r.stderr and "letmein" not in r.stderr


def test_export_refuses_an_existing_output_before_asking_for_the_passphrase(vp: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.json"
    out.write_text("keep me\n")
    # No passphrase source and no terminal: had it asked first, this would be a passphrase error.
    line = error_line(cli(vp, "export", "--output", str(out), passphrase=None), 2)
    assert "already exists" in line and out.read_text() == "keep me\n"


def test_every_help_example_parses() -> None:
    """serve --help and sync --help (and every other page) show commands that really run as written."""
    parser = build_parser()
    for command in COMMANDS:
        if command.name in ("serve", "sync"):
            assert command.examples.count("cbk-vault ") >= 3, command.name
        own = 0
        for raw in command.examples.splitlines():
            line = raw.split("  #", 1)[0]  # an example's trailing comment
            line = line[line.index("cbk-vault ") :]  # what comes before (export X="$(, source <() is the shell's
            for stop in (" | ", " > ", *((")",) if "$(" in raw or "<(" in raw else ())):
                line = line.split(stop, 1)[0]
            words = shlex.split(line)
            assert words, raw
            try:
                args = parser.parse_args(words[1:])
            except SystemExit as exc:
                pytest.fail(f"{command.name} example does not parse ({exc.code}): {raw}")
            own += args.command == command.name
        assert own, f"no example of {command.name} runs {command.name}"


# --- sync ------------------------------------------------------------------------------------


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with running() as c:
        yield c


def sync(path: Path, cloud: FakeCloud, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(path, "sync", "--base-url", cloud.url, *args, env={"CHATBOTKIT_API_TOKEN": cloud.token})


def test_sync_lists_pulled_secrets_without_a_value_and_how_to_set_one(tmp_path: Path, cloud: FakeCloud) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    rid = cloud.add(name="Stripe", alias="stripe", meta={"env": "STRIPE_KEY"})
    plan = ok(sync(path, cloud, "--dry-run")).stdout
    assert "without a value: 1 (would arrive" in plan and "Stripe" in plan
    r = ok(sync(path, cloud))
    with vault.open(path, PASSPHRASE) as v:
        lid = v.secret.fetch("@stripe").id
    assert "without a value: 1" in r.stdout and f"cbk-vault update {lid} --value-prompt" in r.stdout
    doc = json.loads(ok(sync(path, cloud, "--json")).stdout)
    assert doc["pulledWithoutValue"] == []  # nothing pulled this time
    assert rid in cloud.secrets


def _conflict(tmp_path: Path, cloud: FakeCloud) -> tuple[Path, str]:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        s = v.secret.create(name="Shared", alias="shared", value="1", meta={"team": "a"})
    ok(sync(path, cloud))
    (rid,) = cloud.secrets
    with vault.open(path, PASSPHRASE) as v:
        v.secret.update(s.id, description="here", meta={"team": "b"})
    cloud.edit(rid, description="there", meta={**cloud.secrets[rid]["meta"], "team": "c"})
    return path, s.id


def test_sync_conflicts_name_the_fields_that_differ(tmp_path: Path, cloud: FakeCloud) -> None:
    path, _ = _conflict(tmp_path, cloud)
    r = sync(path, cloud)
    assert r.returncode == 9
    assert "differs in: description, meta" in r.stdout
    assert "--prefer-for SECRET=local|remote" in r.stdout
    doc = json.loads(sync(path, cloud, "--json").stdout)
    assert doc["conflicts"][0]["fields"] == ["description", "meta"]


def test_sync_prefer_for_settles_one_secret(tmp_path: Path, cloud: FakeCloud) -> None:
    path, lid = _conflict(tmp_path, cloud)
    r = ok(sync(path, cloud, "--prefer-for", "@shared=remote", "--prefer-for", "@gh=local"))
    assert "settled: remote wins" in r.stdout
    assert "--prefer-for @gh" in r.stderr and "no conflict" in r.stderr
    with vault.open(path, PASSPHRASE) as v:
        assert v.secret.fetch(lid).description == "there"
    assert "SECRET=local or SECRET=remote" in error_line(sync(path, cloud, "--prefer-for", "@shared"), 2)


def test_sync_push_explains_why_the_cloud_cannot_win(tmp_path: Path, cloud: FakeCloud) -> None:
    path, _ = _conflict(tmp_path, cloud)
    r = sync(path, cloud, "push", "--prefer", "remote")
    assert r.returncode == 9
    assert "sync push never writes to the vault" in r.stderr
    assert "cbk-vault sync --prefer remote" in r.stderr
    r = sync(path, cloud, "pull", "--prefer", "local")
    assert "sync pull never writes to the cloud" in r.stderr


def test_sync_errors_name_cli_options_not_python_arguments(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    line = error_line(cli(path, "sync", "--base-url", "ftp://example.com", env={"CHATBOTKIT_API_TOKEN": "t"}), 2)
    assert line.startswith("cbk-vault: error: --base-url must") and "base_url" not in line
    line = error_line(cli(path, "sync", env={"CHATBOTKIT_BASE_URL": "http://example.com"}), 2)
    assert "$CHATBOTKIT_BASE_URL must" in line
    line = error_line(cli(path, "sync", "--base-url", "http://127.0.0.1:9"), 8)
    assert "token=" not in line and "$CHATBOTKIT_API_TOKEN" in line and "--alias chatbotkit-api-token" in line


def test_sync_says_it_is_retrying_an_unreachable_host(tmp_path: Path) -> None:
    path = tmp_path / "v.cbkv"
    vault.init(path, PASSPHRASE, kdf=FAST).close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    r = cli(path, "sync", "--base-url", f"http://127.0.0.1:{port}", env={"CHATBOTKIT_API_TOKEN": "t0k"}, timeout=60)
    assert r.returncode == 8
    lines = r.stderr.strip().splitlines()
    assert sum("retrying in" in line for line in lines) == 4 and f"127.0.0.1:{port}" in lines[0]
    assert "unreachable after 5 attempts" in lines[-1]
