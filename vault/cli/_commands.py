"""The subcommands of ``cbk-vault``, each a function of (context, parsed arguments) -> exit status.

Every command goes through the public vault API (``vault.init``/``open``, ``v.secret.*``,
``v.batch()``, ``v.change_passphrase``); import, and lookups that need no value, use the
records seam (``raw_records``) so exported ids and timestamps come back exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, Final

from .. import _agent_client
from .._accesslog import AccessRecord, access_context
from .._agent_client import resolve_path
from .._dotenv import dotenv_file_values
from .._records import Secret
from .._refs import SecretRef, inject_refs, is_ref, parse_ref, ref_resolver
from .._vault import Vault, raw_records
from .._vault import init as vault_init
from ..errors import (
    ConflictError,
    NotFoundError,
    StorageError,
    VaultError,
    VaultExistsError,
    VaultNotFoundError,
    WrongPassphraseError,
)
from . import _formats
from ._clipboard import copy_value
from ._context import TRIES, Context, all_secrets, resolve_ref, when
from ._passwords import DEFAULT_LENGTH, estimate, generate_password, generated_bits
from ._suggest import secret_hint
from ._terminal import (
    ENV_NEW_PASSPHRASE,
    ENV_PASSPHRASE,
    PassphraseSource,
    Progress,
    UsageError,
    for_terminal,
    load_json,
    open_private_output,
    prompt_new_passphrase,
    read_bytes,
    read_value,
    remove_quietly,
    restore_core_limit,
)

# Context and resolve_ref live in _context (every command, fetch included, imports them without
# this module's engine imports); they are re-exported here for the commands' old import path.
__all__ = ["Context", "resolve_ref"]


# --- helpers -------------------------------------------------------------------------------


def _hint_for(v: Vault, wanted: str, *, as_ref: bool = False) -> str:
    """`` (did you mean @openai?)`` when ``wanted`` found nothing but an alias or a name is close."""
    items = [s for s, _, _ in raw_records(v).all()]
    return secret_hint(wanted, (s.alias or "" for s in items), (s.name for s in items), as_ref=as_ref)


def _secret_exists(v: Vault, wanted: str) -> bool:
    """Whether a reference's SECRET part names something (so a NOT_FOUND is about the field)."""
    try:
        resolve_ref(v, wanted)
    except (NotFoundError, UsageError):
        return False
    return True


class _LazyResolver:
    """Resolves references, opening the vault at the first one (a template or a .env file without any
    needs no passphrase), and adds a did-you-mean when the secret itself is missing."""

    def __init__(self, open_vault: Callable[[], Vault]) -> None:
        self._open_vault = open_vault
        self._vault: Vault | None = None
        self._resolve: Callable[[str], str] | None = None
        #: How many references were resolved.
        self.count = 0

    def __call__(self, text: str) -> str:
        if self._vault is None or self._resolve is None:
            self._vault = self._open_vault()
            self._resolve = ref_resolver(self._vault)
        try:
            value = self._resolve(text)
        except NotFoundError as exc:
            wanted = parse_ref(text).secret
            if not _secret_exists(self._vault, wanted):
                hint = _hint_for(self._vault, wanted, as_ref=True)
                if hint:
                    exc.message += hint
                    exc.args = (exc.message,)
            raise
        self.count += 1
        return value


def _meta_value(text: str) -> Any:
    """A ``--meta KEY=VALUE`` value as stored: the cloud's list filter reads ``true``/``false`` as booleans,
    so they are stored as booleans and ``list --meta KEY=true`` finds them. Everything else, numbers
    included, stays the text as typed (the filter compares numbers as text, so both match)."""
    return {"true": True, "false": False}.get(text, text)


def _key_values(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must be KEY=VALUE")
        out[key] = value
    return out


def _json_arg(text: str | None, what: str) -> Any:
    return None if text is None else load_json(text, what)


def _config_from(args: argparse.Namespace) -> tuple[bool, Any]:
    """(given, config) from --config-json or --config-file (a file keeps a clientSecret out of argv)."""
    text = getattr(args, "config_json", None)
    file = getattr(args, "config_file", None)
    if text is not None and file is not None:
        raise UsageError("give either --config-json or --config-file, not both")
    if file is not None:
        return True, load_json(read_bytes(file, "config file"), f"config file {file!r}")
    if text is not None:
        return True, _json_arg(text, "--config-json")
    return False, None


def _common_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("name", "type", "kind", "description", "alias", "visibility", "blueprint_id"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    given, config = _config_from(args)
    if given:
        fields["config"] = config
    return fields


def _value_source(args: argparse.Namespace) -> str:
    chosen = [
        flag
        for flag, on in (
            ("--value-stdin", args.value_stdin),
            ("--value-file", args.value_file is not None),
            ("--value-prompt", args.value_prompt),
            ("--no-value", args.no_value),
        )
        if on
    ]
    if len(chosen) > 1:
        raise UsageError(f"give only one of {', '.join(chosen)}")
    if args.value_stdin and getattr(args, "passphrase_fd", None) == 0:
        raise UsageError("--value-stdin and --passphrase-fd 0 both want standard input")
    return chosen[0] if chosen else ""


def _read_value_for(args: argparse.Namespace, source: str) -> str:
    return read_value(
        stdin=source == "--value-stdin",
        file=args.value_file if source == "--value-file" else None,
        prompt="Secret value (hidden): " if source in ("", "--value-prompt") else None,
    )


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(ctx: Context, items: list[Secret]) -> None:
    rows = [["ID", "NAME", "TYPE", "KIND", "ALIAS", "UPDATED"]]
    for s in items:
        rows.append(
            [
                s.id,
                # Escaped before it is cut and padded, so the columns line up with what is shown.
                _short(for_terminal(s.name), 40) or "-",
                s.type,
                s.kind,
                "@" + s.alias if s.alias else "-",
                when(s.updated_at),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        ctx.say("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


# --- commands ------------------------------------------------------------------------------


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault init``: create a new, empty vault and set its passphrase."""
    path = ctx.path
    if path.exists():
        raise VaultExistsError(f"a vault already exists at {path}")
    phrase = prompt_new_passphrase(ctx.passphrase_source(), "New vault passphrase")
    _warn_if_weak(ctx, phrase)
    started = time.perf_counter()
    with vault_init(path, phrase, kdf=args.kdf, lock_timeout=ctx.lock_timeout) as v:
        kdf = v.kdf
    took = time.perf_counter() - started
    if ctx.json:
        ctx.emit({"path": str(path), "kdf": {"preset": args.kdf, "opslimit": kdf.opslimit, "memlimit": kdf.memlimit}})
    else:
        ctx.say(f"Created an empty vault at {path}")
        ctx.say(f"Key derivation: Argon2id '{args.kdf}' ({kdf.memlimit >> 20} MiB, {took:.2f} s to unlock)")
        ctx.say("Keep the passphrase safe: without it the vault cannot be opened.")
    return 0


def _warn_if_weak(ctx: Context, phrase: str) -> None:
    """A warning (never a refusal) for a passphrase a guesser would find soon; it names no character of it."""
    strength = estimate(phrase)
    if strength.weak:
        ctx.note(
            f"cbk-vault: warning: this passphrase is weak ({strength.reason}; about {strength.bits:.0f} bits). "
            "Anyone with a copy of the vault file can try guesses offline. Prefer four or more random words, "
            "or 16 or more random characters (cbk-vault generate)."
        )


def cmd_passwd(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault passwd``: rewrap the vault key (or, with --rekey, draw a new one) under a new passphrase."""
    # Always the current passphrase, never the agent's session: whoever changes it must know it.
    with ctx.open_vault(local=True) as v:
        file, fd = args.new_passphrase_file, args.new_passphrase_fd
        if file is not None and fd is not None:
            raise UsageError("give either --new-passphrase-file or --new-passphrase-fd, not both")
        env = ctx.env_new_passphrase if file is None and fd is None else None
        source = PassphraseSource(
            file=file,
            fd=fd,
            env=env or None,
            what="new passphrase",
            hint=f"--new-passphrase-file, --new-passphrase-fd or {ENV_NEW_PASSPHRASE} (for CI)",
            file_option="--new-passphrase-file",
            err=ctx.err,
        )
        new = prompt_new_passphrase(source, "New passphrase")
        _warn_if_weak(ctx, new)
        v.change_passphrase(new, kdf=args.kdf, rekey=args.rekey)
        path = v.path
    if ctx.json:
        ctx.emit({"path": str(path), "changed": True, "rekeyed": bool(args.rekey)})
    elif args.rekey:
        ctx.say(f"Passphrase changed and data key replaced for {path} (every value sealed again)")
    else:
        ctx.say(f"Passphrase changed for {path}")
    return 0


def cmd_unlock(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault unlock``: hand the vault to the per-user agent, which keeps its key until it locks."""
    path = ctx.path
    if not path.exists():
        raise VaultNotFoundError(f"no vault at {path} (create one with: cbk-vault init)")
    source = ctx.passphrase_source()
    for attempt in range(1, TRIES + 1):
        phrase = source.read("") if not source.interactive else source.ask(f"Passphrase for {path}: ")
        try:
            held = _agent_client.unlock(path, phrase, idle=args.timeout, hard=args.max)
            break
        except WrongPassphraseError:
            if not source.interactive or attempt == TRIES:
                raise
            ctx.note("Wrong passphrase; try again.")
    if ctx.json:
        ctx.emit(held)
    else:
        idle, hard = _span(held["idleTimeout"]), _span(held["hardLocksIn"])
        ctx.say(f"Unlocked {held['path']}: locks after {idle} unused, in {hard} at most")
    return 0


def cmd_lock(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault lock``: the agent forgets the vault's key (``--all``: every vault's)."""
    if args.all and args.vault is not None:
        raise UsageError("give a vault path or --all, not both")
    target = None if args.all else (resolve_path(args.vault) if args.vault is not None else ctx.path)
    gone = _agent_client.lock(target, everything=args.all)
    if ctx.json:
        ctx.emit({"locked": gone})
    elif gone:
        for name in gone:
            ctx.say(f"Locked {name}")
    else:
        ctx.say("Nothing to lock" if args.all else f"{target} was not unlocked")
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault status``: what the agent holds, and when each vault locks."""
    held = _agent_client.status()
    if ctx.json:
        ctx.emit({"unlocked": held})
    elif not held:
        ctx.say("No vault is unlocked")
    else:
        for item in held:
            ctx.say(f"{item['path']}: locks in {_span(item['locksIn'])} (at most {_span(item['hardLocksIn'])})")
    return 0


def _span(seconds: float) -> str:
    whole = int(seconds + 0.5)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault create``: create a secret, its value from a prompt, stdin or a file."""
    fields = _common_fields(args)
    meta: dict[str, Any] = {k: _meta_value(v) for k, v in _key_values(args.meta, "--meta").items()}
    meta_json = _json_arg(args.meta_json, "--meta-json")
    if meta_json is not None:
        if not isinstance(meta_json, dict):
            raise UsageError("--meta-json must be a JSON object")
        meta = {**meta_json, **meta}
    if meta:
        fields["meta"] = meta
    source = _value_source(args)
    generated = _generated_value(args, source)
    # Unlock first, so a wrong passphrase is reported before the value is typed.
    with ctx.open_vault() as v:
        # A personal secret holds no value in the cloud, so nothing is asked for unless a source is named.
        if generated is not None:
            value: str | None = generated
            fields["value"] = value
        elif source == "--no-value" or (source == "" and fields.get("kind") == "personal"):
            value = None
        else:
            value = _read_value_for(args, source)
            fields["value"] = value
        created = v.secret.create(**fields)
    if ctx.json:
        ctx.emit(created.to_dict())
    else:
        # The returned Secret carries no value (as the cloud's create answer), so say what was stored.
        label = f" ({created.name})" if created.name else ""
        ctx.say(f"Created secret {created.id}{label}" + _stored_note(value, generated is not None))
    return 0


def _stored_note(value: str | None, generated: bool) -> str:
    if value is None:
        return " without a value"
    if generated:
        return f"; a generated value ({len(value)} characters) is stored, never printed"
    return "; its value is stored"


def _generated_value(args: argparse.Namespace, source: str) -> str | None:
    """A new random value when --generate is given (and no other value source); None otherwise."""
    if not args.generate:
        if args.length is not None or args.no_symbols:
            raise UsageError("--length and --no-symbols shape a --generate value: add --generate")
        return None
    if source:
        raise UsageError(f"give either --generate or {source}, not both")
    return generate_password(args.length or DEFAULT_LENGTH, symbols=not args.no_symbols)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault list``: one page (or --all) of secrets, as a table or JSON; never values."""
    meta = _key_values(args.meta, "--meta") or None
    with ctx.open_vault() as v:
        if args.all:
            items: list[Secret] = list(
                all_secrets(v, meta=meta, order=args.order, take=args.take or 100, cursor=args.cursor)
            )
            result: dict[str, Any] = {"items": [s.to_dict() for s in items]}
            next_cursor = None
        else:
            page = v.secret.list(order=args.order, take=args.take, cursor=args.cursor, meta=meta)
            items = page.items
            result = page.to_dict()
            next_cursor = page.cursor
    if ctx.json:
        ctx.emit(result)
        return 0
    if not items:
        ctx.say("No secrets." if args.cursor is None else "No more secrets.")
        return 0
    _table(ctx, items)
    if next_cursor is not None and len(items) >= (args.take or 100):
        ctx.note(f"(more may follow: {_next_page_command(args, next_cursor)}, or --all)")
    return 0


def _next_page_command(args: argparse.Namespace, cursor: str) -> str:
    """The ``list`` command for the next page: the same order, size, filters and vault, after ``cursor``."""
    words = ["cbk-vault"]
    if getattr(args, "path", None):
        words += ["--path", args.path]
    words.append("list")
    if args.order != "desc":
        words += ["--order", args.order]
    if args.take is not None:
        words += ["--take", str(args.take)]
    for item in args.meta or []:
        words += ["--meta", item]
    words += ["--cursor", cursor]
    return shlex.join(words)


def cmd_update(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault update``: change the given fields (and the value only with a --value-* option)."""
    fields = _common_fields(args)
    set_meta = {k: _meta_value(v) for k, v in _key_values(args.meta, "--meta").items()}
    meta_json = _json_arg(args.meta_json, "--meta-json")
    if meta_json is not None and not isinstance(meta_json, dict):
        raise UsageError("--meta-json must be a JSON object")
    source = _value_source(args)
    generated = _generated_value(args, source)
    v = ctx.open_vault()  # unlocked first, so a wrong passphrase is reported before the value is typed
    value = _read_value_for(args, source) if source and source != "--no-value" else generated
    if generated is not None:
        source = "--generate"
    with v, v.batch():
        # One batch holds the writer lock: the meta read-modify-write cannot lose a concurrent change.
        ref = resolve_ref(v, args.ref)
        if set_meta and meta_json is None and not args.unset_meta:
            # A merge, not the whole dict: the core's update drops sent keys that begin with "_",
            # so sending the stored meta back would silently lose them.
            fields["meta"] = {"$update": set_meta}
        elif meta_json is not None or set_meta or args.unset_meta:
            stored = raw_records(v).lookup(ref).meta if meta_json is None else meta_json
            meta: dict[str, Any] = dict(stored or {})
            meta.update(set_meta)
            for key in args.unset_meta or []:
                meta.pop(key, None)
            fields["meta"] = meta or None
        if source == "--no-value":
            fields["value"] = None
        elif source:
            fields["value"] = value
        if not fields:
            raise UsageError("nothing to update: give at least one field option")
        updated = v.secret.update(ref, **fields)
    if ctx.json:
        ctx.emit(updated.to_dict())
    else:
        label = f" ({updated.name})" if updated.name else ""
        ctx.say(f"Updated secret {updated.id}{label}" + (_stored_note(value, True) if generated is not None else ""))
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault delete``: delete a secret, asking first on a terminal unless --yes."""
    with ctx.open_vault() as v:
        ref = resolve_ref(v, args.ref)
        # --json says how to print, not that no one is there: a person at a terminal is still asked.
        if not args.yes and sys.stdin.isatty():
            s = raw_records(v).lookup(ref)  # the question needs the name, not the value
            label = for_terminal(f"{s.id} ({s.name})" if s.name else s.id)
            # The question goes to stderr, so stdout stays the command's result (and valid JSON).
            ctx.err.write(f"Delete secret {label}? [y/N] ")
            ctx.err.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                # Declining is a successful answer, not an error: exit 1 is kept for "not found".
                if ctx.json:
                    ctx.emit({"id": s.id, "deleted": False})
                else:
                    ctx.note("Not deleted.")
                return 0
        deleted = v.secret.delete(ref)
    if ctx.json:
        ctx.emit(deleted.to_dict())
    else:
        ctx.say(f"Deleted secret {deleted.id}" + (f" ({deleted.name})" if deleted.name else ""))
    return 0


def _allowed_env(args: argparse.Namespace) -> frozenset[str]:
    """The names the owner allowed with --allow-env, exactly as typed (``HTTPS_PROXY`` allows no ``Https_Proxy``)."""
    names = getattr(args, "allow_env", None) or []
    for name in names:
        if not _formats.ENV_NAME.fullmatch(name):
            raise UsageError(f"--allow-env {name[:64]!r} is not a valid environment variable name")
    return frozenset(names)


def _check_chosen_names(chosen: list[tuple[str, str]], allowed: frozenset[str], *, how: str, run: bool) -> None:
    """Refuse variable names that secrets chose (not the owner): not an identifier, or on the denylist.

    ``chosen`` is (name, secret id) pairs. Every refused name is listed at once, so one rerun
    with the right --allow-env options is enough. The message names ids and variables, never
    a value: the value is what a planted secret wants run.
    """
    refused: list[tuple[str, str, str]] = []
    for name, sid in chosen:
        if not _formats.ENV_NAME.fullmatch(name):
            raise UsageError(
                f"secret {sid} {how} {name[:64]!r}, which is not a valid environment variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        reason = _formats.env_denial(name)
        if reason is not None and name not in allowed:
            refused.append((name, sid, reason))
    if not refused:
        return
    allow = " ".join(f"--allow-env {name}" for name in dict.fromkeys(name for name, _, _ in refused))
    if len(refused) == 1:
        name, sid, reason = refused[0]
        alternative = f" (or --env {name}={sid})" if run else ""
        raise UsageError(
            f"secret {sid} {how} {name}, which a secret may not choose ({reason}); "
            f"if you mean it, allow it yourself: {allow}{alternative}"
        )
    listed = ", ".join(f"{name} (secret {sid})" for name, sid, _ in refused)
    raise UsageError(
        f"secrets {how} variables a secret may not choose (they change what runs, or whom it trusts): "
        f"{listed}; if you mean it, allow them yourself: {allow}"
    )


def _injections(ctx: Context, v: Vault, args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    allowed = _allowed_env(args)
    wanted: list[tuple[str, str]] = []
    if args.env:
        # Named on the command line: the owner chose these variables, the denylist is not asked.
        for item in args.env:
            name, sep, ref = item.partition("=")
            if not sep or not ref:
                raise UsageError("--env must be NAME=REF (REF: an id, @alias, (name) or a unique name)")
            if not _formats.ENV_NAME.fullmatch(name):
                raise UsageError(f"{name[:64]!r} is not a valid environment variable name")
            wanted.append((name, ref))
    else:
        # Chosen by the secrets themselves: every name is checked before any value is decrypted.
        valueless: dict[str, str] = {}
        for s, _ext, has_value in raw_records(v).all():
            env_name = (s.meta or {}).get("env")
            if isinstance(env_name, str):
                wanted.append((env_name, s.id))
                if not has_value:
                    valueless[s.id] = s.name
        _check_chosen_names(wanted, allowed, how="sets meta.env to", run=True)
        if not wanted:
            raise UsageError("no secrets to inject: pass --env NAME=@alias, or set meta env=NAME on secrets")
        wanted = _without_valueless(ctx, wanted, valueless, strict=bool(getattr(args, "strict", False)))
    seen: set[str] = set()
    for name, _ in wanted:
        if name in seen:
            raise UsageError(f"two secrets are set to inject as {name}")
        seen.add(name)
    for name, ref in wanted:
        s = v.secret.fetch(resolve_ref(v, ref))
        if s.value is None:
            raise NotFoundError(f"secret {s.id} has no value to inject as {name}")
        if "\x00" in s.value:
            # An environment block is NUL-terminated strings: execve cannot carry the value.
            raise UsageError(f"secret {s.id} cannot be injected as {name}: its value contains a NUL byte")
        env[name] = s.value
    return env


def _without_valueless(
    ctx: Context, wanted: list[tuple[str, str]], valueless: dict[str, str], *, strict: bool
) -> list[tuple[str, str]]:
    """Drop meta.env secrets that hold no value (every secret a sync pulled, until one is set), with a warning.

    With --strict the first one is an error instead. Either way the message says how to set one.
    """
    kept: list[tuple[str, str]] = []
    for name, sid in wanted:
        if sid not in valueless:
            kept.append((name, sid))
            continue
        label = f"{sid} ({valueless[sid]})" if valueless[sid] else sid
        how = f"set one with: cbk-vault update {sid} --value-prompt"
        if strict:
            raise NotFoundError(f"secret {label} has no value to inject as {name}; {how}")
        ctx.note(f"cbk-vault: warning: {name} is not set: secret {label} has no value ({how}; --strict fails instead)")
    return kept


def _env_file_values(ctx: Context, files: list[str], resolve: Callable[[str], str]) -> dict[str, str]:
    """The variables of the --env-file files, later files winning, with every cbk:// value resolved.

    A dotenv file is the owner's own choice, named on the command line like --env, so its names
    are not held to the denylist (docs/CLI.md says why); they must still be variable names.
    """
    merged: dict[str, str] = {}
    where: dict[str, str] = {}
    for file in files:
        if not os.path.isfile(file):
            raise UsageError(f"--env-file {file!r} does not exist")
        try:
            values = dotenv_file_values(file, override=True)
        except UnicodeDecodeError:
            raise UsageError(f"--env-file {file!r} is not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"cannot read --env-file {file!r}: {exc.strerror}") from None
        for name, value in values.items():
            if value is None:
                continue  # a bare NAME line sets nothing, as in load_dotenv
            if not _formats.ENV_NAME.fullmatch(name):
                raise UsageError(f"--env-file {file!r}: {name[:64]!r} is not a valid environment variable name")
            merged[name] = value
            where[name] = file
    out: dict[str, str] = {}
    for name, value in merged.items():
        if is_ref(value):
            try:
                value = resolve(value)
            except VaultError as exc:
                exc.message = f"--env-file {where[name]!r}, {name}: {exc.message}"
                exc.args = (exc.message,)
                raise
        if "\x00" in value:
            raise UsageError(f"{name} from --env-file {where[name]!r} cannot be injected: its value holds a NUL byte")
        out[name] = value
    return out


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault run``: replace this process with COMMAND, secrets in its environment."""
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command given: cbk-vault run [--env NAME=REF ...] -- COMMAND [ARGS...]")
    injected: dict[str, str] = {}
    if args.env_file:
        # The vault is opened only if a file holds a reference (or --env needs it below).
        injected.update(_env_file_values(ctx, args.env_file, _LazyResolver(ctx.open_vault)))
    if args.env or not args.env_file:
        v = ctx.opened[0] if ctx.opened else ctx.open_vault()
        with v:
            injected.update(_injections(ctx, v, args))  # --env wins over the files
    ctx.close_all()  # the data key leaves memory before the command runs
    # exec keeps every inheritable descriptor open: the command could rewind --passphrase-fd and
    # read the passphrase again. 0-2 are the command's own stdio and stay.
    fd = getattr(args, "passphrase_fd", None)
    if fd is not None and fd > 2:
        with contextlib.suppress(OSError):
            os.close(fd)
    env = dict(os.environ)  # CBK_VAULT_PASSPHRASE was removed at start-up: the child never sees it
    env.pop(ENV_PASSPHRASE, None)
    env.pop(ENV_NEW_PASSPHRASE, None)
    env.update(injected)
    sys.stdout.flush()
    sys.stderr.flush()
    restore_core_limit()
    # exec, not a child process: the command gets our pid, terminal, signals, and its exit status is ours.
    # The values travel in the environment block only; argv is the command's own.
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - no shell: argv goes through untouched
    except FileNotFoundError:
        ctx.note(f"cbk-vault: error: command not found: {command[0][:200]}")
        return 127
    except OSError as exc:
        ctx.note(f"cbk-vault: error: cannot run {command[0][:200]}: {exc.strerror}")
        return 126
    return 0  # pragma: no cover - execvpe does not return


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault export``: every secret in plaintext JSON or dotenv, to a new 0600 file or stdout."""
    if args.output is None and ctx.out.isatty() and not args.force:
        raise UsageError("refusing to print plaintext secrets on a terminal; use --output FILE (or --force)")
    if args.output is not None and os.path.lexists(args.output):
        # Before the passphrase is asked for: open_private_output would refuse it anyway, but only after.
        raise UsageError(f"output file {args.output!r} already exists; choose a new name")
    with ctx.open_vault() as v:
        secrets = [v.secret.fetch(s.id) for s in all_secrets(v)]
    skipped = 0
    if args.format == "json":
        text = _formats.render_json(secrets, int(time.time() * 1000))
        count = len(secrets)
    else:
        pairs: list[tuple[str, str]] = []
        owner: dict[str, str] = {}
        allowed = _allowed_env(args)
        for s in secrets:
            name = _formats.env_name_for(s)
            if s.value is None or name is None:
                skipped += 1
                continue
            if name in owner:
                raise UsageError(f"{owner[name]} and {s.id} would both export as {name}; set meta env on one")
            owner[name] = s.id
            pairs.append((name, s.value))
        # meta.env, the alias and the name are all the secret's choice: sourcing the file
        # (`set -a; . ./.env`) or a dotenv loader would set whatever it chose.
        _check_chosen_names([(name, owner[name]) for name, _ in pairs], allowed, how="would export as", run=False)
        text = _formats.render_env(pairs)
        count = len(pairs)
    where = args.output if args.output is not None else "standard output"
    handle = open_private_output(args.output) if args.output is not None else None
    ctx.note(f"cbk-vault: warning: writing {count} secret(s) in PLAINTEXT to {where}; delete it when done")
    if skipped:
        ctx.note(f"cbk-vault: {skipped} secret(s) without a value or a usable variable name were left out")
    if handle is None:
        ctx.out.write(text)
        ctx.out.flush()
        return 0
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        remove_quietly(args.output)
        raise StorageError(f"cannot write {args.output!r}: {exc.strerror}", errno=exc.errno) from None
    except BaseException:
        remove_quietly(args.output)
        raise
    if ctx.json:
        ctx.emit({"exported": count, "format": args.format, "path": os.path.abspath(args.output)})
    else:
        ctx.say(f"Exported {count} secret(s) to {args.output} ({args.format}, mode 0600)")
    return 0


def _read_input(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else read_bytes(path, "file")


def _import_format(args: argparse.Namespace, data: bytes | None) -> str:
    """--format, else a guess from the file's name, else from its first bytes (a JSON file starts with { or [)."""
    if args.format is not None:
        return str(args.format)
    name = os.path.basename(args.file).lower()
    if name.endswith(".json"):
        return "json"
    if name.endswith(".kdbx"):
        return "kdbx"
    if name.endswith(".env") or name == ".env" or name.startswith(".env."):
        return "env"
    if data is None:
        return "json"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        return "json"
    if _formats.looks_like_env(data):
        return "env"
    raise UsageError(f"cannot tell the format of {args.file!r}: pass --format json, --format env or --format kdbx")


def _parse_import(ctx: Context, args: argparse.Namespace) -> list[_formats.Record]:
    if args.format is None and args.file != "-" and os.path.basename(args.file).lower().endswith(".kdbx"):
        args.format = "kdbx"
    if args.format == "kdbx":
        if args.file == "-":
            raise UsageError("a KeePass database must be a file, not standard input")
        if not os.path.isfile(args.file):
            raise UsageError(f"file {args.file!r} does not exist")
        if args.kdbx_keyfile is not None and not os.path.isfile(args.kdbx_keyfile):
            # Checked here: pykeepass's FileNotFoundError does not say which of the two files is missing.
            raise UsageError(f"key file {args.kdbx_keyfile!r} does not exist")
        _formats.require_pykeepass()  # before asking for a password that could not be used
        source = PassphraseSource(
            file=args.kdbx_password_file,
            fd=args.kdbx_password_fd,
            env=None,
            what="KeePass password",
            hint="--kdbx-password-file or --kdbx-password-fd",
            file_option="--kdbx-password-file",
            err=ctx.err,
        )
        password = None if args.kdbx_no_password else source.read("KeePass database password: ")
        return _formats.parse_kdbx(args.file, password, args.kdbx_keyfile)
    data = _read_input(args.file)
    args.format = _import_format(args, data)
    if args.format == "json":
        try:
            return _formats.parse_json(data)
        except UsageError as exc:
            if _formats.looks_like_env(data):
                raise UsageError(f"{exc} (this looks like a dotenv file: pass --format env)") from None
            raise
    return _formats.parse_env(data)


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault import``: read JSON, dotenv or KeePass and write every secret in one commit."""
    if args.file == "-" and getattr(args, "passphrase_fd", None) == 0:
        raise UsageError("import from standard input and --passphrase-fd 0 both want standard input")
    records = _parse_import(ctx, args)  # the whole file parses before the vault is touched
    ids: list[str] = []
    imported: list[tuple[_formats.Record, str]] = []
    outcome = {"skipped": 0, "replaced": 0}
    policy = getattr(args, "on_conflict", None)
    with ctx.open_vault() as v:
        progress = Progress(len(records), "importing", stream=ctx.err)
        try:
            with v.batch():
                existing = {s.id for s in all_secrets(v)} if any(r.id for r in records) else set()
                for n, rec in enumerate(records, 1):
                    try:
                        sid, what = _import_one(v, rec, existing, new_ids=args.new_ids, policy=policy)
                    except VaultError as exc:
                        exc.message = f"item {n} ({_short(for_terminal(rec.label), 40)}): {exc.message}"
                        raise
                    if what in outcome:
                        outcome[what] += 1
                    if sid is not None:
                        ids.append(sid)
                        imported.append((rec, sid))
                    progress.update(n)
        finally:
            progress.finish()
    with_value = sum(1 for r, _ in imported if r.fields.get("value") is not None)
    if ctx.json:
        ctx.emit({"imported": len(ids), "withValue": with_value, "ids": ids, **outcome})
    else:
        extra = "".join(f", {count} {what}" for what, count in outcome.items() if count)
        ctx.say(
            f"Imported {len(ids)} secret(s) from {args.file} ({with_value} with a value{extra}) "
            f"into {v.path}"
        )
    for rec, sid in imported:
        # Stored as data (an export must round-trip), but the owner hears now, not at the next `run`.
        env_name = (rec.fields.get("meta") or {}).get("env")
        if isinstance(env_name, str) and _formats.env_denial(env_name) is not None:
            ctx.note(
                f"cbk-vault: warning: secret {sid} sets meta.env to {env_name[:64]}, which a secret may not "
                f"choose ({_formats.env_denial(env_name)}); run and export --format env will refuse it "
                f"unless you pass --allow-env {env_name[:64]}"
            )
    return 0


#: Every field an imported item replaces when it takes over a secret (--on-conflict replace).
_REPLACED_FIELDS: Final = {
    "name": "",
    "description": "",
    "kind": "shared",
    "type": "plain",
    "visibility": "private",
    "alias": None,
    "meta": None,
    "config": None,
    "blueprint_id": None,
    "value": None,
}


def _import_one(
    v: Vault, rec: _formats.Record, existing: set[str], *, new_ids: bool, policy: str | None
) -> tuple[str | None, str]:
    """Import one record: (its id, "imported"), or on a clash with ``policy`` skip/replace,
    (None, "skipped") or (the replaced secret's id, "replaced"). One path and one write per record,
    whether the id is kept or new: the same field checks for both."""
    raw = raw_records(v)
    rid: str | None = rec.id if rec.id is not None and not new_ids else None  # None: a fresh id
    clash: str | None = None
    why = ""
    if rid is not None and rid in existing:
        clash = rid
        why = f"a secret with id {rid} is already in this vault"
    alias = rec.fields.get("alias")
    if clash is None and isinstance(alias, str) and alias:
        try:
            clash = raw.lookup("@" + alias).id
            why = f"alias {alias!r} is already in use by secret {clash}"
        except NotFoundError:
            clash = None
    if clash is not None:
        if policy == "skip":
            return None, "skipped"
        if policy != "replace":
            hint = "use --new-ids, or " if rid is not None and clash == rid else ""
            raise ConflictError(f"{why} ({hint}--on-conflict skip|replace)")
        # Replace: the secret keeps its id (and its sync link), and takes every field of the item.
        fields = {**_REPLACED_FIELDS, **rec.fields}
        replaced = raw.put(clash, fields, updated_at=int(time.time() * 1000)).id
        return replaced, "replaced"
    new_id = raw.put(rid, rec.fields, created_at=rec.created_at, updated_at=rec.updated_at).id
    existing.add(new_id)
    return new_id, "imported"


# --- references, clipboard, generate, find -----------------------------------------------------


def _clip(ctx: Context, value: str, what: str) -> None:
    """Copy ``value`` to the clipboard and say so (and when it clears); the value itself is never printed."""
    seconds = copy_value(value)
    if ctx.json:
        ctx.emit({"copied": True, "clearsAfter": seconds})
    else:
        ctx.note(f"Copied {what} to the clipboard; it is cleared in {seconds:g} s if it is still there.")


def _cli_ref(text: str) -> SecretRef:
    """The REF argument, parsed before the vault is opened. Never echoed: a value may have been pasted there."""
    if not is_ref(text):
        raise UsageError("REF must be a reference: cbk://SECRET[/FIELD], for example cbk://@openai or cbk://@db/password")
    return parse_ref(text)


def clip_fetched(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault fetch REF --clip``: the value to the clipboard, cleared later (``_fetch`` calls it)."""
    with ctx.open_vault() as v:
        s = v.secret.fetch(resolve_ref(v, args.ref))
    if s.value is None:
        raise NotFoundError(f"secret {s.id} has no value")
    _clip(ctx, s.value, f"the value of {s.id}" + (f" ({s.name})" if s.name else ""))
    return 0


def cmd_read(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault read REF``: print (or --clip) the one string a ``cbk://`` reference names."""
    ref = _cli_ref(args.reference)
    resolve = _LazyResolver(ctx.open_vault)
    value = resolve(str(ref))
    ctx.close_all()
    if args.clip:
        _clip(ctx, value, str(ref))
    elif ctx.json:
        ctx.emit({"reference": str(ref), "value": value})
    else:
        ctx.out.write(value + ("" if args.no_newline else "\n"))
    return 0


def _write_replacing(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a 0600 temporary file renamed over it (``--force``).

    The rename replaces a symlink itself rather than writing through it, and a reader sees the
    old file or the new one, never half of one.
    """
    if os.path.isdir(path):
        raise UsageError(f"output file {path!r} is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cbk-vault-", dir=folder)  # created 0600
    except OSError as exc:
        raise StorageError(f"cannot create a file next to {path!r}: {exc.strerror}", errno=exc.errno) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise StorageError(f"cannot write {path!r}: {exc.strerror}", errno=exc.errno) from None
    except BaseException:
        remove_quietly(tmp)
        raise


def _write_new(path: str, text: str) -> None:
    """Write ``text`` to a new 0600 file (never an existing one, never through a symlink)."""
    handle = open_private_output(path)
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        remove_quietly(path)
        raise StorageError(f"cannot write {path!r}: {exc.strerror}", errno=exc.errno) from None
    except BaseException:
        remove_quietly(path)
        raise


def cmd_inject(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault inject``: a template with its ``{{ cbk://... }}`` placeholders filled, to a file or stdout."""
    out = args.out_file
    # Refused before any passphrase is asked for, or any secret decrypted.
    if out is not None and not args.force and os.path.lexists(out):
        raise UsageError(f"output file {out!r} already exists; choose a new name, or pass --force to replace it")
    if args.in_file is None and getattr(args, "passphrase_fd", None) == 0:
        raise UsageError("a template on standard input and --passphrase-fd 0 both want standard input")
    if args.in_file is None or args.in_file == "-":
        data, source = sys.stdin.buffer.read(), "standard input"
    else:
        data, source = read_bytes(args.in_file, "template"), f"template {args.in_file!r}"
    try:
        template = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    resolve = _LazyResolver(ctx.open_vault)
    text = inject_refs(template, resolve)  # every placeholder resolves before a byte is written
    ctx.close_all()
    if out is None:
        ctx.out.write(text)
        ctx.out.flush()
        return 0
    if args.force:
        _write_replacing(out, text)
    else:
        _write_new(out, text)
    if ctx.json:
        ctx.emit({"path": os.path.abspath(out), "placeholders": resolve.count})
    else:
        ctx.note(f"Wrote {out} (mode 0600; {resolve.count} placeholder(s) filled)")
    return 0


def cmd_generate(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault generate``: a random password from the OS's random source, printed (or --clip)."""
    length = args.length or DEFAULT_LENGTH
    symbols = not args.no_symbols
    password = generate_password(length, symbols=symbols)
    if args.clip:
        _clip(ctx, password, f"a new {length}-character password")
    elif ctx.json:
        ctx.emit({"value": password, "length": length, "entropyBits": generated_bits(length, symbols=symbols)})
    else:
        ctx.out.write(password + ("" if args.no_newline else "\n"))
    return 0


def _meta_matches(meta: Any, needle: str, path: str = "meta") -> list[str]:
    """The meta paths whose key or (string form of a) value contains ``needle`` (case-folded)."""
    found: list[str] = []
    if isinstance(meta, dict):
        for key, value in meta.items():
            here = f"{path}.{key}"
            if needle in str(key).casefold():
                found.append(here)
            elif not isinstance(value, (dict, list)):
                if needle in (value if isinstance(value, str) else json.dumps(value)).casefold():
                    found.append(here)
            else:
                found += _meta_matches(value, needle, here)
    elif isinstance(meta, list):
        for i, value in enumerate(meta):
            found += _meta_matches(value, needle, f"{path}[{i}]")
    return found


def cmd_find(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault find TEXT``: secrets whose name, alias, description or meta holds TEXT (any case)."""
    needle = args.text.casefold()
    if not needle:
        raise UsageError("TEXT must not be empty (cbk-vault list shows every secret)")
    hits: list[tuple[Secret, list[str]]] = []
    with ctx.open_vault() as v:
        for s in all_secrets(v):
            where = [
                label
                for label, text in (("name", s.name), ("alias", s.alias or ""), ("description", s.description))
                if needle in text.casefold()
            ]
            where += _meta_matches(s.meta, needle)
            if where:
                hits.append((s, where))
    if ctx.json:
        ctx.emit({"items": [{**s.to_dict(), "matched": where} for s, where in hits]})
        return 0
    if not hits:
        ctx.say(f"No secret matches {args.text!r}.")
        return 0
    rows = [["ID", "NAME", "ALIAS", "MATCHED"]]
    for s, where in hits:
        matched = ", ".join(where)
        rows.append([s.id, _short(for_terminal(s.name), 40) or "-", "@" + s.alias if s.alias else "-",
                     _short(for_terminal(matched), 60)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        ctx.say("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


# --- versions, the trash and the access log --------------------------------------------------------


def _confirm(ctx: Context, args: argparse.Namespace, question: str) -> bool:
    if args.yes or not sys.stdin.isatty():
        return True
    ctx.err.write(question + " [y/N] ")
    ctx.err.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_delete_any(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault delete [--purge]``: to the trash (``cmd_delete``), or for good with --purge."""
    if not getattr(args, "purge", False):
        return cmd_delete(ctx, args)
    with ctx.open_vault() as v:
        ref = resolve_ref(v, args.ref)
        s = raw_records(v).lookup(ref)
        label = for_terminal(f"{s.id} ({s.name})" if s.name else s.id)
        if not _confirm(ctx, args, f"Delete secret {label} for good, with its past revisions?"):
            if ctx.json:
                ctx.emit({"id": s.id, "deleted": False})
            else:
                ctx.note("Not deleted.")
            return 0
        deleted = v.secret.delete(ref, purge=True)
    if ctx.json:
        ctx.emit(deleted.to_dict())
    else:
        ctx.say(f"Purged secret {deleted.id}" + (f" ({deleted.name})" if deleted.name else ""))
    return 0


def cmd_run_logged(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault run``: its reads are logged as ``run`` in the access log."""
    with access_context("run"):
        return cmd_run(ctx, args)


def cmd_export_logged(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault export``: its reads are logged as ``export`` in the access log."""
    with access_context("export"):
        return cmd_export(ctx, args)


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault history REF``: the revisions the vault keeps, newest first (never values)."""
    with ctx.open_vault() as v:
        revisions = v.secret.history(resolve_ref(v, args.ref))
    if ctx.json:
        ctx.emit({"items": [{**s.to_dict(), "revision": s.revision} for s in revisions]})
        return 0
    rows = [["REVISION", "UPDATED", "NAME", "TYPE", "ALIAS"]]
    for i, s in enumerate(revisions):
        current = " (current)" if i == 0 and s.deleted_at is None else (" (deleted)" if i == 0 else "")
        rows.append(
            [f"{s.revision}{current}", when(s.updated_at), _short(for_terminal(s.name), 40) or "-", s.type,
             "@" + s.alias if s.alias else "-"]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        ctx.say("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_restore(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault restore REF N``: revision N becomes current again, as a new revision."""
    with ctx.open_vault() as v:
        restored = v.secret.restore(resolve_ref(v, args.ref), args.revision)
    if ctx.json:
        ctx.emit({**restored.to_dict(), "revision": restored.revision})
    else:
        ctx.say(f"Restored secret {restored.id} to revision {args.revision} (now revision {restored.revision})")
    return 0


def cmd_trash(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault trash [list | restore ID | purge ID]``."""
    action = args.action or "list"
    if action != "list" and not args.id:
        raise UsageError(f"trash {action} needs the deleted secret's ID (see: cbk-vault trash list)")
    if action == "list" and args.id:
        raise UsageError("trash list takes no ID")
    with ctx.open_vault() as v:
        if action == "list":
            items: list[Secret] = []
            cursor: str | None = None
            while True:
                page = v.secret.list(order="desc", take=100, cursor=cursor, deleted=True)
                items.extend(page.items)
                if page.cursor is None or len(page.items) < 100:
                    break
                cursor = page.cursor
        elif action == "restore":
            back = v.secret.undelete(args.id)
        else:
            shown = for_terminal(args.id)
            if not _confirm(ctx, args, f"Purge deleted secret {shown} for good?"):
                if ctx.json:
                    ctx.emit({"id": args.id, "purged": False})
                else:
                    ctx.note("Not purged.")
                return 0
            if not _in_trash(v, args.id):
                raise NotFoundError(f"no secret {shown!r} in the trash")
            gone = v.secret.purge(args.id)
    if action == "list":
        if ctx.json:
            ctx.emit({"items": [{**s.to_dict(), "deletedAt": s.deleted_at} for s in items]})
        elif not items:
            ctx.say("The trash is empty.")
        else:
            rows = [["ID", "NAME", "TYPE", "DELETED"]]
            rows += [
                [s.id, _short(for_terminal(s.name), 40) or "-", s.type, when(s.deleted_at or 0)] for s in items
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for r in rows:
                ctx.say("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    elif action == "restore":
        if ctx.json:
            ctx.emit({**back.to_dict(), "revision": back.revision})
        else:
            ctx.say(f"Restored secret {back.id}" + (f" ({back.name})" if back.name else "") + " from the trash")
    elif ctx.json:
        ctx.emit(gone.to_dict())
    else:
        ctx.say(f"Purged secret {gone.id}" + (f" ({gone.name})" if gone.name else ""))
    return 0


def _in_trash(v: Vault, secret_id: str) -> bool:
    try:
        revisions = v.secret.history(secret_id)
    except NotFoundError:
        return False
    return bool(revisions) and revisions[0].deleted_at is not None


def _since(text: str | None) -> int | None:
    """``30m``/``2h``/``7d`` ago, an ISO date or date-time (local time), or epoch milliseconds."""
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    if len(text) >= 2 and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return int((time.time() - float(text[:-1]) * units[text[-1]]) * 1000)
    try:
        return int(_dt.datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise UsageError(f"--since {text[:64]!r}: give 30m, 2h, 7d, an ISO date/time or epoch milliseconds") from None


def cmd_log(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault log [REF] [--since WHEN]``: the access log, verified, oldest first."""
    since = _since(args.since)
    with ctx.open_vault() as v:
        records: list[AccessRecord] = v.access_log(args.ref, since)
    if ctx.json:
        ctx.emit({"items": [r.to_dict() for r in records]})
        return 0
    if not records:
        ctx.say("No reads recorded.")
        return 0
    rows = [["TIME", "SECRET", "REV", "OPERATION", "PID", "PROCESS", "PEER"]]
    for r in records:
        when = _dt.datetime.fromtimestamp(r.at / 1000).strftime("%Y-%m-%d %H:%M:%S")
        peer = "-" if r.peer_pid is None else f"{r.peer_pid} {os.path.basename(r.peer_exe or '?')}"
        rows.append(
            [when, r.secret_id or "-", "-" if r.revision is None else str(r.revision), r.operation, str(r.pid),
             for_terminal(os.path.basename(r.exe)), for_terminal(peer)]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        ctx.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0

