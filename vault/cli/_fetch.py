"""``cbk-vault fetch``: a secret's metadata, or only its value with ``--reveal``.

``export TOKEN="$(cbk-vault fetch @x --reveal)"`` is what scripts and agents run most, so the
value of a vault the unlock agent holds is fetched through the light client: this module and
its imports bring no engine, no PyNaCl and no msgpack into the process. Every other case
(a passphrase, ``--json``, the metadata view) opens the vault as every command does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, NotUnlockedError
from ._context import Context, resolve, resolve_ref, when
from ._terminal import UsageError, dump_json

if TYPE_CHECKING:
    import argparse

    from .._agent_client import AgentConnection
    from .._records import Secret

__all__ = ["cmd_fetch", "cmd_fetch_revision", "describe"]


def _served_ids_and_names(conn: AgentConnection) -> Iterator[tuple[str, str]]:
    """Every secret's (id, name), oldest first, page by page, as ``v.secret.list`` pages them."""
    cursor: str | None = None
    while True:
        page: dict[str, Any] = conn.call("secret", "list", None, order="asc", take=100, cursor=cursor, meta=None)
        items = page["items"]
        if not items:
            return
        for item in items:
            yield item["id"], item["name"]
        cursor = page.get("cursor")


def _reveal_served(ctx: Context, conn: AgentConnection, ref: str, *, newline: bool) -> int:
    ident = resolve(ref, lambda r: str(conn.call("raw", "lookup", r)["id"]), lambda: _served_ids_and_names(conn))
    found: dict[str, Any] = conn.call("secret", "fetch", ident)
    conn.close()
    value = found.get("value")
    if value is None:
        raise NotFoundError(f"secret {found['id']} has no value")
    ctx.out.write(value + ("\n" if newline else ""))
    return 0


def describe(ctx: Context, s: Secret, *, has_value: bool | None) -> None:
    """The metadata view of a secret, one ``key value`` line per field (never the value)."""
    d = s.to_dict()
    rows: list[tuple[str, str]] = [
        ("id", s.id),
        ("name", s.name),
        ("alias", "@" + s.alias if s.alias else "-"),
        ("type", s.type),
        ("kind", s.kind),
        ("visibility", s.visibility),
        ("description", s.description or "-"),
        ("blueprintId", s.blueprint_id or "-"),
        ("meta", dump_json(d["meta"]) if d["meta"] is not None else "-"),
        ("config", dump_json(d["config"]) if d["config"] is not None else "-"),
    ]
    if has_value is not None:
        rows.append(("value", "set (hidden; show it with --reveal)" if has_value else "none"))
    rows += [("created", when(s.created_at)), ("updated", when(s.updated_at))]
    for key, value in rows:
        ctx.say(f"{key:<12} {value}")  # say() escapes: every field may come from a pull or an import


def cmd_fetch(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault fetch``: show a secret's metadata, or only its value with --reveal."""
    if getattr(args, "revision", None) is not None:
        return cmd_fetch_revision(ctx, args)
    if getattr(args, "clip", False):
        if args.reveal:
            raise UsageError("give either --reveal (print the value) or --clip (copy it), not both")
        from ._commands import clip_fetched  # the clipboard path needs the full vault API anyway

        return clip_fetched(ctx, args)
    local = False
    if args.reveal and not ctx.json:
        conn = ctx.agent_connection()
        if conn is not None:
            try:
                return _reveal_served(ctx, conn, args.ref, newline=not args.no_newline)
            except NotUnlockedError:
                if conn.answered:
                    raise  # it held the vault, then locked it: as from any other call
            conn.close()
        local = True  # the agent was asked already: no agent, or it does not hold this vault
    with ctx.open_vault(local=local) as v:
        s = v.secret.fetch(resolve_ref(v, args.ref))
    return _show_fetched(ctx, args, s, revision=False)


def _show_fetched(ctx: Context, args: argparse.Namespace, s: Secret, *, revision: bool) -> int:
    """Print a fetched secret: its value with --reveal, else its fields (and, for a past revision, its number)."""
    if args.reveal:
        if s.value is None:
            raise NotFoundError(f"secret {s.id} has no value")
        if ctx.json:
            ctx.emit(s.to_dict(reveal=True))
        else:
            ctx.out.write(s.value + ("" if args.no_newline else "\n"))
        return 0
    if ctx.json:
        ctx.emit({**s.to_dict(), "revision": s.revision} if revision else s.to_dict())
    else:
        describe(ctx, s, has_value=s.value is not None)
        if revision:
            ctx.say(f"{'revision':<12} {s.revision}")
    return 0


def cmd_fetch_revision(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault fetch --revision N``: a past revision of a secret."""
    with ctx.open_vault() as v:
        s = v.secret.fetch(resolve_ref(v, args.ref), revision=args.revision)
    return _show_fetched(ctx, args, s, revision=True)
