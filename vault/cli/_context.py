"""What every command shares: the :class:`Context` (global options, streams, opening the vault) and secret references.

Every command imports this module, so it imports nothing heavy at the top: the engine (and
PyNaCl, msgpack) comes in only when a vault is opened in this process, and a vault the
unlock agent holds can be used through the light client (``_agent_client``) without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from .._agent_client import AgentConnection, resolve_path
from ..errors import NotFoundError, NotUnlockedError, VaultNotFoundError, WrongPassphraseError
from ._terminal import PassphraseSource, UsageError, check_vault_path, dump_json, for_terminal

if TYPE_CHECKING:
    import argparse

    from .._records import Secret
    from .._vault import Vault

__all__ = ["TRIES", "Context", "all_secrets", "resolve", "resolve_ref", "when"]

#: Passphrase attempts at a prompt.
TRIES: Final = 3


class Context:
    """What every command needs: the parsed global options, the streams, and the secrets read from the env."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: TextIO | None = None,
        err: TextIO | None = None,
        env_passphrase: str | None = None,
        env_new_passphrase: str | None = None,
    ) -> None:
        self.args = args
        # Looked up when a Context is made, not when this module is imported: redirect_stdout and
        # test harnesses replace sys.stdout later.
        self.out: TextIO = sys.stdout if out is None else out
        self.err: TextIO = sys.stderr if err is None else err
        self.env_passphrase = env_passphrase
        self.env_new_passphrase = env_new_passphrase
        self.opened: list[Vault] = []
        self._connections: list[AgentConnection] = []

    @property
    def json(self) -> bool:
        """Whether --json was given (before or after the command name)."""
        return bool(getattr(self.args, "json", False))

    @property
    def path(self) -> Path:
        """The vault file: --path, else $CBK_VAULT_PATH, else the default; never a directory."""
        raw = getattr(self.args, "path", None)
        if raw == "":
            # `--path "$UNSET_VAR"` must not fall back to the default vault behind the user's back.
            raise UsageError("--path must not be empty")
        path = resolve_path(raw)
        check_vault_path(path)
        return path

    @property
    def lock_timeout(self) -> float:
        """Seconds to wait for another process's lock (--lock-timeout, default 10)."""
        return float(getattr(self.args, "lock_timeout", 10.0))

    def say(self, text: str = "") -> None:
        """Print a line of the command's result to stdout, escaped for the terminal (never a value)."""
        print(for_terminal(text), file=self.out)

    def note(self, text: str) -> None:
        """Print a line for the person at the terminal to stderr, escaped (never a secret)."""
        print(for_terminal(text), file=self.err)

    def emit(self, obj: Any) -> None:
        """Print ``obj`` as one line of JSON to stdout."""
        print(dump_json(obj), file=self.out)

    def passphrase_source(self) -> PassphraseSource:
        """Where the passphrase comes from: --passphrase-file, --passphrase-fd, the environment, a prompt."""
        file = getattr(self.args, "passphrase_file", None)
        fd = getattr(self.args, "passphrase_fd", None)
        if file is not None and fd is not None:
            raise UsageError("give either --passphrase-file or --passphrase-fd, not both")
        if file is None and fd is None and self.env_passphrase:
            return PassphraseSource(env=self.env_passphrase, err=self.err)
        return PassphraseSource(file=file, fd=fd, err=self.err)

    def _existing_path(self) -> Path:
        path = self.path
        if not path.exists():
            raise VaultNotFoundError(f"no vault at {path} (create one with: cbk-vault init)")
        return path

    def agent_connection(self) -> AgentConnection | None:
        """A connection to the unlock agent about this vault, when :meth:`open_vault` would try the agent.

        The light way to a vault the agent holds: no engine, no PyNaCl, no msgpack in this
        process (``fetch --reveal`` uses it). None when a passphrase is named or no agent runs.
        Whether the agent holds *this* vault is its first call's answer: a
        :class:`~vault.NotUnlockedError` before any answer (``conn.answered`` false) means it
        does not, and the command then opens the vault with ``open_vault(local=True)``, asking
        for the passphrase exactly as :meth:`open_vault` would have.
        """
        path = self._existing_path()
        if not self.passphrase_source().interactive:
            return None
        try:
            conn = AgentConnection(path)
        except NotUnlockedError:
            return None
        self._connections.append(conn)
        return conn

    def open_vault(self, *, local: bool = False) -> Vault:
        """Resolve the path and the passphrase exactly as every command does, and unlock.

        With no passphrase named (no file, descriptor or variable), a vault the unlock agent
        holds is used through it: no prompt, no key derivation. ``local`` always asks.
        """
        from .. import _session
        from .._vault import open as vault_open

        path = self._existing_path()
        source = self.passphrase_source()
        if source.interactive and not local:
            try:
                v = _session.open_unlocked(path)
            except NotUnlockedError:
                pass
            else:
                self.opened.append(v)
                return v
        if not source.interactive:
            v = vault_open(path, source.read(""), lock_timeout=self.lock_timeout)
        else:
            for attempt in range(1, TRIES + 1):
                phrase = source.ask(f"Passphrase for {path}: ")
                try:
                    v = vault_open(path, phrase, lock_timeout=self.lock_timeout)
                    break
                except WrongPassphraseError:
                    if attempt == TRIES:
                        raise WrongPassphraseError(f"wrong passphrase ({TRIES} tries)") from None
                    self.note("Wrong passphrase; try again.")
        self.opened.append(v)
        return v

    def close_all(self) -> None:
        """Close every vault this command opened (the data keys leave memory)."""
        for v in self.opened:
            v.close()
        self.opened.clear()
        for conn in self._connections:
            conn.close()
        self._connections.clear()


# --- references -----------------------------------------------------------------------------


def when(ms: int) -> str:
    """A timestamp in milliseconds as local ``YYYY-MM-DD HH:MM``."""
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def all_secrets(
    v: Vault,
    *,
    meta: dict[str, str] | None = None,
    order: str = "asc",
    take: int = 100,
    cursor: str | None = None,
) -> Iterator[Secret]:
    """Every secret's metadata (after ``cursor``), page by page (values are never decrypted)."""
    while True:
        page = v.secret.list(order=order, take=take, cursor=cursor, meta=meta)
        if not page.items:
            return
        yield from page.items
        cursor = page.cursor


def resolve(ref: str, lookup_id: Callable[[str], str], ids_and_names: Callable[[], Iterable[tuple[str, str]]]) -> str:
    """An identifier the API understands: ``@alias`` and ``(name)`` as they are, else an id or a unique name.

    ``lookup_id`` is the id of the record with exactly that id (NotFoundError if none);
    ``ids_and_names`` every secret's (id, name), oldest first. Both are asked only as needed.
    """
    if not ref:
        raise UsageError("a secret reference must not be empty")
    if ref.startswith("@") or (len(ref) >= 2 and ref[0] == "(" and ref[-1] == ")"):
        return ref
    try:
        return lookup_id(ref)  # an exact id: one dict lookup, so `run` over n secrets is not n scans
    except NotFoundError:
        pass
    by_name: list[str] = []
    for sid, name in ids_and_names():
        if sid == ref:
            return ref  # an id wins over a name that happens to look like it
        if name == ref:
            by_name.append(sid)
    if len(by_name) == 1:
        return by_name[0]
    shown = ref if len(ref) <= 80 else ref[:77] + "..."
    if not by_name:
        raise NotFoundError(f"no secret has the id, or the name, {shown!r}")
    listed = ", ".join(by_name[:10]) + (", ..." if len(by_name) > 10 else "")
    raise UsageError(f"the name {shown!r} matches {len(by_name)} secrets ({listed}); address one by its id")


def resolve_ref(v: Vault, ref: str) -> str:
    """:func:`resolve` on an open vault; a missing secret's error suggests a close alias or name."""
    from .._vault import raw_records

    try:
        resolved = resolve(
            ref,
            lambda r: raw_records(v).lookup(r).id,
            lambda: ((s.id, s.name) for s in all_secrets(v)),
        )
        if resolved == ref and (ref.startswith("@") or ref.startswith("(")):
            raw_records(v).lookup(ref)  # metadata only: a missing one gets its did-you-mean here
        return resolved
    except NotFoundError as exc:
        from ._suggest import secret_hint

        items = [s for s, _, _ in raw_records(v).all()]
        hint = secret_hint(ref, (s.alias or "" for s in items), (s.name for s in items))
        raise NotFoundError(exc.message + hint) from None
