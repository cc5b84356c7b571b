"""Start-up cost as behaviour: which modules a command line imports, and which parsers it builds (no timing).

``cbk-vault --version`` imports nothing but the two package ``__init__`` modules; ``--help``
builds the top-level parser and no command; ``fetch REF --reveal`` on a vault the unlock
agent holds builds only fetch's parser and imports no cryptography, no msgpack, no engine
and no other command. Each case runs in a fresh interpreter that reports ``sys.modules``
and the argparse parsers that were initialised. The figures are bench/run.py's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vault
from tests.conftest import FAST, PASSPHRASE
from vault import _agent_client, _crypto, _session, _store
from vault.cli import _parser

#: Never on the agent-served path nor in --help: the engine's stack, the other commands, the servers.
HEAVY = frozenset(
    {
        "nacl",
        "msgpack",
        "platformdirs",
        "vault._crypto",
        "vault._format",
        "vault._keys",
        "vault._engine",
        "vault._index",
        "vault._records",
        "vault._rules",
        "vault._vault",
        "vault._session",
        "vault._store",
        "vault.cli._commands",
        "vault.cli._formats",
        "vault.cli._completion",
        "vault.cli._demo",
        "vault.cli._serve",
        "vault.cli._sync",
        "vault.sync",
        "httpx",
        "uvicorn",
        "http.server",
        "shutil",
    }
)

# The probe: run vault.cli.main in this fresh interpreter, then report what was imported (taken
# before json is) and the prog of every ArgumentParser whose __init__ ran (only with "parsers").
_PROBE = """
import sys
out, mode, *argv = sys.argv[1:]
inits = []
if mode == "parsers":
    import argparse
    real_init = argparse.ArgumentParser.__init__
    def init(self, *args, **kwargs):
        inits.append(kwargs.get("prog"))
        real_init(self, *args, **kwargs)
    argparse.ArgumentParser.__init__ = init
from vault.cli import main
try:
    status = main(argv)
except SystemExit as exc:
    status = exc.code
modules = sorted(sys.modules)
sys.stdout.flush()
import json
with open(out, "w") as fh:
    json.dump({"status": status, "modules": modules, "parsers": inits}, fh)
"""


def _probe(tmp_path: Path, mode: str, *argv: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    out = tmp_path / f"probe-{mode}.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), mode, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        start_new_session=True,  # no terminal: a prompt fails fast instead of waiting
    )
    assert out.exists(), proc.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return report, proc.stdout


def _vault_modules(report: dict[str, Any]) -> set[str]:
    return {m for m in report["modules"] if m == "vault" or m.startswith("vault.")}


def _loaded(report: dict[str, Any], names: frozenset[str]) -> set[str]:
    modules = set(report["modules"])
    return {n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)}


def test_import_vault_imports_nothing_until_a_name_is_used(tmp_path: Path) -> None:
    code = (
        "import sys, vault\n"
        "before = sorted(m for m in sys.modules if m.startswith(('vault', 'nacl', 'msgpack')))\n"
        "names = set(dir(vault))\n"
        "from vault import NotFoundError, Vault\n"
        "after = 'nacl' in sys.modules and 'vault._vault' in sys.modules\n"
        "print(before, set(vault.__all__) <= names, after, Vault.__name__, NotFoundError.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "['vault'] True True Vault vault.errors", out.stderr


def test_every_public_name_is_imported_on_first_use() -> None:
    # A name added to __all__ must be added to the lazy table too (and to its TYPE_CHECKING import).
    assert set(vault._LAZY) == set(vault.__all__) - {"__version__"}


def test_a_public_name_brings_the_whole_api_at_once() -> None:
    public = {n for n in vault.__all__ if n != "__version__"}
    vault.Secret  # noqa: B018 - the access is the test
    assert public <= set(vars(vault))
    with pytest.raises(AttributeError):
        vault.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_version_imports_neither_argparse_nor_the_grammar(tmp_path: Path) -> None:
    report, stdout = _probe(tmp_path, "plain", "--version")
    assert report["status"] == 0
    assert stdout == f"cbk-vault {vault.__version__}\n"
    assert _vault_modules(report) == {"vault", "vault.cli"}
    assert "argparse" not in report["modules"]
    assert not _loaded(report, HEAVY | {"ctypes", "typing", "json", "socket"})


def test_version_prints_what_argparse_prints(capsys: pytest.CaptureFixture[str]) -> None:
    # The fast path answers exactly `--version`; argparse still answers it with other options.
    with pytest.raises(SystemExit) as exc:
        _parser.build_parser().parse_args(["--json", "--version"])
    assert exc.value.code == 0
    argparse_says = capsys.readouterr().out
    from vault.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == argparse_says == f"cbk-vault {vault.__version__}\n"


def test_help_builds_no_command_parser_and_imports_no_command(tmp_path: Path) -> None:
    report, stdout = _probe(tmp_path, "parsers", "--help")
    assert report["status"] == 0 and "COMMAND" in stdout and "fetch" in stdout
    assert report["parsers"] == ["cbk-vault"]
    assert not _loaded(report, HEAVY | {"vault.cli._fetch", "vault.cli._context", "vault._agent_client"})


def test_a_commands_help_builds_only_that_commands_parser(tmp_path: Path) -> None:
    report, stdout = _probe(tmp_path, "parsers", "list", "--help")
    assert report["status"] == 0 and "--take N" in stdout
    assert report["parsers"] == ["cbk-vault", "cbk-vault list"]
    assert not _loaded(report, HEAVY)


@pytest.fixture
def agent_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    sock = run / "agent.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBK_VAULT_")}
    env[_session.AGENT_SOCKET_ENV] = str(sock)
    yield env
    with contextlib.suppress(vault.VaultError, OSError):
        os.kill(_session.request("hello", sock_path=sock)["pid"], signal.SIGKILL)


def test_a_fetch_the_agent_serves_imports_no_engine_and_no_other_command(
    tmp_path: Path, agent_env: dict[str, str]
) -> None:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        sid = v.secret.create(name="OpenAI", alias="openai", type="bearer", value="sk-live-1").id
    _session.unlock(path, PASSPHRASE, sock_path=Path(agent_env[_session.AGENT_SOCKET_ENV]))
    for ref in ("@openai", "OpenAI", sid):
        report, stdout = _probe(tmp_path, "parsers", "--path", str(path), "fetch", ref, "--reveal", env=agent_env)
        assert report["status"] == 0 and stdout == "sk-live-1\n"
        assert report["parsers"] == ["cbk-vault", "cbk-vault fetch"]
        assert not _loaded(report, HEAVY), ref
        assert "vault._agent_client" in report["modules"]


def test_a_fetch_the_agent_does_not_serve_falls_back_to_the_passphrase(
    tmp_path: Path, agent_env: dict[str, str]
) -> None:
    path = tmp_path / "v.cbkv"
    with vault.init(path, PASSPHRASE, kdf=FAST) as v:
        v.secret.create(name="OpenAI", alias="openai", value="sk-live-1")
    other = tmp_path / "other.cbkv"
    vault.init(other, PASSPHRASE, kdf=FAST).close()
    _session.unlock(other, PASSPHRASE, sock_path=Path(agent_env[_session.AGENT_SOCKET_ENV]))
    # An agent runs but holds another vault: no prompt possible here, so the usual usage error.
    report, _ = _probe(tmp_path, "plain", "--path", str(path), "fetch", "@openai", "--reveal", env=agent_env)
    assert report["status"] == 2
    # With the passphrase named, the vault is opened here, engine and all.
    env = dict(agent_env, CBK_VAULT_PASSPHRASE=PASSPHRASE)
    report, stdout = _probe(tmp_path, "plain", "--path", str(path), "fetch", "@openai", "--reveal", env=env)
    assert report["status"] == 0 and stdout == "sk-live-1\n"
    assert {"nacl", "vault._engine"} <= set(report["modules"])


def test_lazy_subparsers_parse_and_print_help_as_eager_ones_would() -> None:
    lazy = _parser.build_parser()
    eager = _parser.build_parser()
    subparsers = eager._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for sub in subparsers.values():
        sub.fill()
    argvs = [
        ["--path", "x", "fetch", "@a", "--reveal", "-n"],
        ["--json", "list", "--take", "5", "--meta", "env=X", "--all"],
        ["create", "--name", "n", "--meta", "a=b", "--value-stdin", "--passphrase-fd", "3"],
        ["update", "id", "--unset-meta", "k", "--no-value"],
        ["unlock", "--timeout", "1h30m", "--max", "2d"],
        ["run", "--env", "A=@b", "--", "sh", "-c", "x"],
        ["demo"],
        ["--path", "p", "demo", "--path", "q"],
        ["sync", "pull", "--dry-run"],
        ["import", "--format", "env", "f"],
    ]
    for argv in argvs:
        assert vars(lazy.parse_args(argv)) == vars(eager.parse_args(argv)), argv
    lazy_subparsers = lazy._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in subparsers.items():
        assert lazy_subparsers[name].format_help() == sub.format_help(), name
    assert lazy.format_help() == eager.format_help()


def test_usage_errors_from_a_lazy_subparser_keep_their_form() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        _parser.build_parser().parse_args(["fetch", "x", "--zzqqxx"])
    assert exc.value.code == 2
    assert err.getvalue() == "cbk-vault: error: unrecognized arguments: --zzqqxx (see: cbk-vault --help) [USAGE]\n"


def test_the_grammar_names_the_kdf_presets_cheapest_first() -> None:
    # _parser names them so that building the grammar does not import the cryptography.
    assert _parser._KDF_NAMES == tuple(sorted(_crypto.KDF_PRESETS, key=lambda n: _crypto.KDF_PRESETS[n].memlimit))


@pytest.mark.parametrize("raw", [None, "v.cbkv", "~/v.cbkv", Path("/tmp/x.cbkv")])
def test_the_light_client_resolves_paths_as_the_store_does(raw: str | Path | None) -> None:
    assert _agent_client.resolve_path(raw) == _store.resolve_path(raw)
