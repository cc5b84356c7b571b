"""Shell completion scripts for bash, zsh and fish, written from the CLI's own grammar (``_parser``).

The grammar is data the CLI defines, so nothing here reads argparse's internals, and no
dependency (argcomplete, shtab) or Python start-up on every <TAB> is needed. Secret ids
are not completed: that would need the passphrase.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._parser import COMMANDS, PROG, Arg, command_options, top_options

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["completion_command", "render"]


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    options: list[Arg]
    runs_command: bool


def _options(args: tuple[Arg, ...]) -> list[Arg]:
    return [arg for arg in args if not arg.positional]


def _model() -> tuple[list[Arg], list[_Command]]:
    commands = [
        _Command(c.name, c.help, _options(command_options(c)), any(a.runs_command for a in c.args)) for c in COMMANDS
    ]
    return _options(top_options()), commands


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("%(default)s", "")).strip()


def _bash(prog: str, top: list[Arg], commands: list[_Command]) -> str:
    func = "_" + re.sub(r"\W", "_", prog)
    skip_value = sorted({f for o in top if o.takes_value for f in o.names})
    lines = [
        f"# bash completion for {prog}; load with: source <({prog} completion bash)",
        f"{func}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
    ]
    if skip_value:
        lines.append(f"            {'|'.join(skip_value)}) ((i++)) ;;")
    lines += [
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$cmd" in',
    ]
    for cmd in commands:
        if cmd.runs_command:
            lines.append(f"        {cmd.name})")
            lines.append("            for ((i = 1; i < COMP_CWORD; i++)); do")
            lines.append('                if [[ "${COMP_WORDS[i]}" == "--" ]]; then')
            lines.append('                    COMPREPLY=($(compgen -c -- "$cur")); return')
            lines.append("                fi")
            lines.append("            done ;;")
    lines.append("    esac")
    lines.append('    case "$cmd:$prev" in')
    for owner, options in [("", top), *[(c.name, c.options + top) for c in commands]]:
        seen: set[str] = set()
        for opt in options:
            if not opt.takes_value:
                continue
            for flag in opt.names:
                if flag in seen:
                    continue
                seen.add(flag)
                if opt.choices:
                    reply = f'COMPREPLY=($(compgen -W "{" ".join(opt.choices)}" -- "$cur"))'
                elif opt.files:
                    reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
                else:
                    reply = "COMPREPLY=()"
                lines.append(f"        {owner}:{flag}) {reply}; return ;;")
    lines.append("    esac")
    lines.append('    case "$cmd" in')
    top_words = " ".join([c.name for c in commands] + [f for o in top for f in o.names])
    lines.append(f'        "") COMPREPLY=($(compgen -W "{top_words}" -- "$cur")) ;;')
    for cmd in commands:
        words = " ".join(f for o in cmd.options + top for f in o.names)
        lines.append(f'        {cmd.name}) COMPREPLY=($(compgen -W "{words}" -- "$cur")) ;;')
    lines += ["    esac", "}", f"complete -o default -F {func} {prog}", ""]
    return "\n".join(lines)


def _zsh_text(text: str) -> str:
    # _arguments specs treat [ ] : specially, and the spec sits inside single quotes.
    return _one_line(text).replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", " -")


def _zsh_spec(opt: Arg) -> list[str]:
    specs = []
    for flag in opt.names:
        spec = f"{flag}[{_zsh_text(opt.help)}]"
        if opt.takes_value:
            if opt.choices:
                spec += f": :({' '.join(opt.choices)})"
            elif opt.files:
                spec += ": :_files"
            else:
                spec += ": : "
        specs.append(f"'{spec}'")
    return specs


def _zsh(prog: str, top: list[Arg], commands: list[_Command]) -> str:
    func = "_" + re.sub(r"\W", "_", prog)
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}; load with: source <({prog} completion zsh)",
        f"{func}() {{",
        '    local curcontext="$curcontext" state line',
        "    local -a commands",
        "    commands=(",
    ]
    for cmd in commands:
        lines.append(f"        '{cmd.name}:{_zsh_text(cmd.help)}'")
    lines.append("    )")
    top_specs = [s for o in top for s in _zsh_spec(o)]
    lines.append("    _arguments -C \\")
    for spec in top_specs:
        lines.append(f"        {spec} \\")
    lines += [
        "        '1: :->command' \\",
        "        '*:: :->args'",
        "    case $state in",
        "        command) _describe -t commands 'command' commands ;;",
        "        args)",
        "            case $line[1] in",
    ]
    for cmd in commands:
        specs = [s for o in cmd.options + top for s in _zsh_spec(o)]
        if cmd.runs_command:
            specs.append("'*:: :_normal'")
        body = " ".join(specs) if specs else "'*: :_files'"
        lines.append(f"                {cmd.name}) _arguments {body} ;;")
    lines += [
        "            esac ;;",
        "    esac",
        "}",
        f'if [[ "${{funcstack[1]}}" == "{func}" ]]; then',
        f'    {func} "$@"',
        "else",
        f"    compdef {func} {prog}",
        "fi",
        "",
    ]
    return "\n".join(lines)


def _fish_text(text: str) -> str:
    return "'" + _one_line(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(prog: str, condition: str, opt: Arg) -> str:
    parts = [f"complete -c {prog}"]
    if condition:
        parts.append(f"-n {condition}")
    for flag in opt.names:
        if flag.startswith("--"):
            parts.append(f"-l {flag[2:]}")
        else:
            parts.append(f"-s {flag[1:]}")
    if opt.takes_value:
        if opt.choices:
            parts.append(f"-x -a {_fish_text(' '.join(opt.choices))}")
        elif opt.files:
            parts.append("-r -F")
        else:
            parts.append("-x")
    parts.append(f"-d {_fish_text(opt.help)}")
    return " ".join(parts)


def _fish(prog: str, top: list[Arg], commands: list[_Command]) -> str:
    names = " ".join(c.name for c in commands)
    lines = [f"# fish completion for {prog}; load with: {prog} completion fish | source", f"complete -c {prog} -f"]
    for cmd in commands:
        lines.append(
            f"complete -c {prog} -n 'not __fish_seen_subcommand_from {names}' -a {cmd.name} -d {_fish_text(cmd.help)}"
        )
    for opt in top:
        lines.append(_fish_option(prog, "", opt))
    for cmd in commands:
        cond = f"'__fish_seen_subcommand_from {cmd.name}'"
        for opt in cmd.options:
            lines.append(_fish_option(prog, cond, opt))
        if cmd.runs_command:
            lines.append(f"complete -c {prog} -n {cond} -a '(__fish_complete_subcommand -- run)'")
    lines.append("")
    return "\n".join(lines)


_RENDERERS: Final[dict[str, Callable[[str, list[Arg], list[_Command]], str]]] = {
    "bash": _bash,
    "zsh": _zsh,
    "fish": _fish,
}


def render(shell: str) -> str:
    """The completion script for ``shell`` (one of ``_parser.SHELLS``)."""
    if shell not in _RENDERERS:
        raise ValueError(f"unknown shell {shell!r}")
    top, commands = _model()
    return _RENDERERS[shell](PROG, top, commands)


def completion_command(ctx: Context, args: argparse.Namespace) -> int:
    """``cbk-vault completion SHELL``: print the script."""
    ctx.out.write(render(args.shell))
    return 0
