"""The README's command-line examples for references (``read``, ``inject``, ``run --env-file``), run verbatim.

Each ``<!-- readme-test: cli-... -->`` console block is read from README.md at test time. Its
``$ `` lines run in one bash session, in a fresh directory, against the vault the README
describes (unlocked in an agent, as the README's own set-up); everything the commands print,
stdout and stderr as a terminal shows them, must equal the block's other lines.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.test_readme_refs import Setup, blocks, setup
from vault import _session

__all__ = ["setup"]  # the module's vault and agent, imported for the tests below


def transcript(name: str) -> tuple[str, str]:
    """The block's commands as one script, and the output it shows."""
    commands: list[str] = []
    expected: list[str] = []
    for line in blocks()[name].splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
        else:
            expected.append(line + "\n")
    return "set -e\n" + "\n".join(commands) + "\n", "".join(expected)


def run_block(name: str, setup: Setup, cwd: Path, *, after: str = "") -> str:
    script, expected = transcript(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    env.update(
        {
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
            "CBK_VAULT_PATH": str(setup.path),
            _session.AGENT_SOCKET_ENV: str(setup.sock),
        }
    )
    r = subprocess.run(
        ["bash", "-c", script + after],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: a prompt would fail rather than wait
    )
    assert r.returncode == 0, r.stdout
    assert r.stdout == expected
    return r.stdout


def test_read(setup: Setup, tmp_path: Path) -> None:
    run_block("cli-read", setup, tmp_path, after='printf %s "$DB_PASSWORD" > db_password.txt\n')
    assert (tmp_path / "db_password.txt").read_text() == "db-pw"


def test_inject(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / "config.tpl.yml").write_text(blocks()["cli-inject-template"], encoding="utf-8")
    run_block("cli-inject", setup, tmp_path)
    assert stat.S_IMODE((tmp_path / "config.yml").stat().st_mode) == 0o600


def test_run_env_file(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(blocks()["dotenv-file"], encoding="utf-8")
    run_block("cli-run-env-file", setup, tmp_path)


def test_the_blocks_exist() -> None:
    assert {"cli-read", "cli-inject-template", "cli-inject", "cli-run-env-file"} <= set(blocks())
