"""Did-you-mean hints: for a mistyped command or option, and for a secret that is not found.

Suggestions come from :mod:`difflib` over names the user could have meant; they only name
commands, options, aliases and secret names (metadata), never a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["argparse_hint", "close_to", "secret_hint"]

_INVALID_CHOICE: Final = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")
_UNRECOGNIZED: Final = re.compile(r"unrecognized arguments: (.*)$")


def close_to(word: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The ``n`` choices closest to ``word`` (case-insensitively), best first."""
    import difflib  # only when something went wrong: the parser imports this module on every run
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    found = difflib.get_close_matches(word.casefold(), list(by_folded), n=n, cutoff=cutoff)
    return [by_folded[f] for f in found]


def argparse_hint(message: str, options: Iterable[str]) -> str:
    """argparse's error ``message`` with a did-you-mean for an invalid choice or an unknown option."""
    choice = _INVALID_CHOICE.search(message)
    if choice is not None:
        offered = re.findall(r"'([^']*)'", choice.group(2))
        best = close_to(choice.group(1), offered)
        if message.startswith("argument COMMAND:"):
            # The whole list of commands is --help's job; one line names the likely one.
            message = f"unknown command '{choice.group(1)}'"
        if best:
            return f"{message}; did you mean '{best[0]}'?"
        return message
    unknown = _UNRECOGNIZED.search(message)
    if unknown is not None:
        known = list(options)
        for token in unknown.group(1).split():
            if token.startswith("--"):
                best = close_to(token.partition("=")[0], known)
                if best:
                    return f"{message}; did you mean {best[0]}?"
    return message


def secret_hint(wanted: str, aliases: Iterable[str], names: Iterable[str], *, as_ref: bool = False) -> str:
    """`` (did you mean @openai?)`` for a secret reference that found nothing, or ``""``.

    ``wanted`` is the reference as typed (``openai``, ``@opnai``, ``(Open AI)``). An alias
    that equals the bare word (any case) wins; otherwise the closest alias or name. With
    ``as_ref``, suggestions are written as ``cbk://`` references.
    """
    from .._refs import SecretRef  # an error path: keep the parser's import light

    alias_ref = (lambda a: str(SecretRef("@" + a))) if as_ref else (lambda a: "@" + a)
    name_ref = (lambda n: str(SecretRef(n))) if as_ref else _name_ref
    bare = wanted
    if bare.startswith("@"):
        bare = bare[1:]
    elif len(bare) >= 2 and bare[0] == "(" and bare[-1] == ")":
        bare = bare[1:-1]
    alias_list = [a for a in aliases if a]
    name_list = [n for n in names if n]
    exact = [a for a in alias_list if a.casefold() == bare.casefold() and "@" + a != wanted]
    if exact:
        return f" (did you mean {alias_ref(exact[0])}?)"
    exact_names = [n for n in name_list if n.casefold() == bare.casefold() and n != wanted]
    if exact_names:
        return f" (did you mean {name_ref(exact_names[0])}?)"
    suggestions = [alias_ref(a) for a in close_to(bare, alias_list) if "@" + a != wanted]
    suggestions += [name_ref(n) for n in close_to(bare, name_list) if n != wanted]
    if not suggestions:
        return ""
    return " (did you mean " + " or ".join(dict.fromkeys(suggestions[:2])) + "?)"


_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,60}")


def _name_ref(name: str) -> str:
    """A name as it can be typed in a shell: bare when it is plain, else ``'(name)'``."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    shown = name if len(name) <= 60 else name[:57] + "..."
    return "'(" + shown.replace("'", "'\\''") + ")'"
