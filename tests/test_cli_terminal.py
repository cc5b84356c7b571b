"""``cbk-vault`` under a pseudo-terminal (pexpect): the prompts a person sees, and that typed secrets are not echoed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from tests.test_cli import CLI

pexpect = pytest.importorskip("pexpect")

TYPED_VALUE = "sk_typed_VALUE_91c2"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def spawn(path: Path, *args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    env["TERM"] = "dumb"
    child = pexpect.spawn(
        CLI[0], [*CLI[1:], "--path", str(path), *args], env=env, encoding="utf-8", timeout=20, dimensions=(40, 200)
    )
    return child


def finish(child: pexpect.spawn) -> tuple[str, int]:
    """Everything left on the screen, and the exit status."""
    rest = child.read()
    child.close()
    return _ANSI.sub("", rest), child.exitstatus


def test_init_then_create_at_the_prompts(tmp_path: Path) -> None:
    path = tmp_path / "tty.cbkv"
    screen = ""
    child = spawn(path, "init", "--kdf", "interactive")
    child.expect_exact("New vault passphrase: ")
    child.sendline(PASSPHRASE)
    child.expect_exact("Repeat new vault passphrase: ")
    screen += child.before + child.after
    child.sendline("not the same")
    child.expect_exact("The two entries differ; try again.")
    screen += child.before + child.after
    child.expect_exact("New vault passphrase: ")
    child.sendline(PASSPHRASE)
    child.expect_exact("Repeat new vault passphrase: ")
    child.sendline(PASSPHRASE)
    rest, status = finish(child)
    screen += rest
    assert status == 0
    assert f"Created an empty vault at {path}" in rest and "Argon2id 'interactive'" in rest
    assert PASSPHRASE not in screen and "not the same" not in screen  # getpass turned echo off

    child = spawn(path, "create", "--name", "PaymentAPIKey", "--alias", "payments", "--type", "bearer")
    child.expect_exact(f"Passphrase for {path}: ")
    child.sendline("wrong guess")
    child.expect_exact("Wrong passphrase; try again.")
    screen = child.before + child.after
    child.expect_exact(f"Passphrase for {path}: ")
    child.sendline(PASSPHRASE)
    child.expect_exact("Secret value (hidden): ")
    screen += child.before + child.after
    child.sendline(TYPED_VALUE)
    rest, status = finish(child)
    screen += rest
    assert status == 0
    assert re.search(r"Created secret [a-z][a-z0-9]{23} \(PaymentAPIKey\)", rest)
    assert TYPED_VALUE not in screen and PASSPHRASE not in screen and "wrong guess" not in screen
    with vault.open(path, PASSPHRASE) as v:
        assert v.secret.fetch("@payments").value == TYPED_VALUE


@pytest.fixture
def vp(tmp_path: Path) -> Path:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="Token", alias="tok", value=TYPED_VALUE, meta={"env": "TOKEN"})
    return path


def test_three_wrong_passphrases_exit_3(vp: Path) -> None:
    child = spawn(vp, "list")
    for _ in range(3):
        child.expect_exact(f"Passphrase for {vp}: ")
        child.sendline("nope")
    rest, status = finish(child)
    assert status == 3
    assert "wrong passphrase (3 tries) [WRONG_PASSPHRASE]" in rest and "nope" not in rest


def test_export_refuses_to_print_plaintext_on_a_terminal(vp: Path) -> None:
    child = spawn(vp, "export", "--format", "env")
    rest, status = finish(child)
    assert status == 2 and "refusing to print plaintext secrets on a terminal" in rest
    assert TYPED_VALUE not in rest


def test_delete_asks_for_confirmation_on_a_terminal(vp: Path) -> None:
    child = spawn(vp, "delete", "@tok")
    child.expect_exact(f"Passphrase for {vp}: ")
    child.sendline(PASSPHRASE)
    child.expect(r"Delete secret [a-z0-9]{24} \(Token\)\? \[y/N\] ")
    child.sendline("n")
    rest, status = finish(child)
    assert status == 0 and "Not deleted." in rest  # a choice, not an error; 1 means "not found"
    with vault.open(vp, PASSPHRASE) as v:
        assert len(v) == 1


def test_delete_json_still_asks_on_a_terminal(vp: Path) -> None:
    child = spawn(vp, "delete", "@tok", "--json")
    child.expect_exact(f"Passphrase for {vp}: ")
    child.sendline(PASSPHRASE)
    child.expect(r"Delete secret ([a-z0-9]{24}) \(Token\)\? \[y/N\] ")
    sid = child.match.group(1)
    child.sendline("")
    rest, status = finish(child)
    assert status == 0 and json.dumps({"id": sid, "deleted": False}) in rest
    with vault.open(vp, PASSPHRASE) as v:
        assert len(v) == 1
    child = spawn(vp, "delete", "@tok", "--json")
    child.expect_exact(f"Passphrase for {vp}: ")
    child.sendline(PASSPHRASE)
    child.expect(r"\[y/N\] ")
    child.sendline("yes")
    rest, status = finish(child)
    assert status == 0 and f'"id": "{sid}"' in rest
    with vault.open(vp, PASSPHRASE) as v:
        assert len(v) == 0


def test_large_import_shows_progress_and_a_summary(vp: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "many.env"
    env_file.write_text("".join(f"VAR_{n}=value{n}\n" for n in range(120)))
    child = spawn(vp, "import", "--format", "env", str(env_file))
    child.expect_exact(f"Passphrase for {vp}: ")
    child.sendline(PASSPHRASE)
    child.expect_exact("importing [")
    rest, status = finish(child)
    assert status == 0
    assert "120/120" in rest and f"Imported 120 secret(s) from {env_file} (120 with a value)" in rest
    with vault.open(vp, PASSPHRASE) as v:
        assert len(v) == 121


def test_end_of_input_at_a_prompt_is_a_usage_error(vp: Path) -> None:
    child = spawn(vp, "list")
    child.expect_exact(f"Passphrase for {vp}: ")
    child.sendeof()
    rest, status = finish(child)
    assert status == 2 and "no input at the prompt [USAGE]" in rest and "internal" not in rest
