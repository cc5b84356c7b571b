"""``cbk-vault demo``: the seed walkthrough, end to end, on a local vault file."""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import _vault
from .._records import Secret
from ._terminal import PassphraseSource, UsageError, prompt_new_passphrase

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["demo_command", "run"]

_SEED = {
    "name": "PaymentAPIKey",
    "type": "bearer",
    "kind": "shared",
    "description": "API key for payment gateway",
    "value": "sk_live_12345",
}


def _masked(value: str | None) -> str:
    """A value as the demo shows it: its length, never its characters."""
    return "(none)" if value is None else f"******** ({len(value)} characters, hidden)"


def _row(secret: Secret) -> str:
    return (
        f"  id={secret.id}  name={secret.name!r}  type={secret.type}  kind={secret.kind}\n"
        f"  description={secret.description!r}  visibility={secret.visibility}  "
        f"createdAt={secret.created_at}  updatedAt={secret.updated_at}"
    )


def run(path: Path | None, passphrase: str | None, out: TextIO, kdf: str = "interactive") -> int:
    """Create, fetch, list, update and delete the seed secret, printing each step (never the value)."""
    with tempfile.TemporaryDirectory(prefix="cbk-vault-demo-") as tmp:
        target = path if path is not None else Path(tmp) / "demo.cbkv"
        # A throwaway vault needs a throwaway passphrase; it is never shown.
        phrase = passphrase if passphrase is not None else secrets.token_urlsafe(24)
        say: Callable[[str], None] = lambda text: print(text, file=out)  # noqa: E731

        started = time.perf_counter()
        with _vault.init(target, phrase, kdf=kdf) as v:
            say(f"1. init      new vault at {target} (Argon2id '{kdf}', {time.perf_counter() - started:.2f} s)")

            created = v.secret.create(_SEED)
            say(f"2. create    {created.name} -> id {created.id}")
            say(_row(created))

            fetched = v.secret.fetch(created.id)
            ok = "matches" if fetched.value == _SEED["value"] else "DOES NOT MATCH"
            say(f"3. fetch     {fetched.id}: value {_masked(fetched.value)}, {ok} what was stored")
            by_name = v.secret.fetch(f"({_SEED['name']})")
            say(f"             also found as '({_SEED['name']})' -> {by_name.id}")

            page = v.secret.list(order="asc", take=20)
            say(f"4. list      order='asc', take=20 -> {len(page.items)} item(s), cursor={page.cursor}")
            for item in page.items:
                say(f"  - {item.id}  {item.name}  ({item.type}, {item.kind})  value not decrypted: {item.value}")

            updated = v.secret.update(
                created.id, description="Rotated API key for payment gateway", value="sk_live_67890"
            )
            again = v.secret.fetch(updated.id)
            say(f"5. update    description -> {again.description!r}; value {_masked(again.value)}")

            deleted = v.secret.delete(created.id)
            remaining = v.secret.list(order="asc", take=20)
            say(f"6. delete    {deleted.id} deleted; {len(remaining.items)} secret(s) left")

        with _vault.open(target, phrase) as v:
            say(f"7. reopen    {len(v)} secret(s) after reopening the file: every step was durable")
        say(f"done in {time.perf_counter() - started:.2f} s; the secret value was never printed.")
        if path is None:
            say("(the demo vault lived in a temporary directory and has been removed)")
    return 0


def demo_command(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault demo``: :func:`run` on a throwaway vault, or at ``--path`` with a passphrase asked as init asks."""
    raw = getattr(args, "path", None)
    if raw == "":
        raise UsageError("--path must not be empty")
    if raw is None:
        return run(None, None, ctx.out)
    # The vault outlives the demo: its passphrase is asked for exactly as `init` asks.
    source = PassphraseSource(env=ctx.env_passphrase, err=ctx.err)
    return run(Path(raw), prompt_new_passphrase(source, "New vault passphrase"), ctx.out)
