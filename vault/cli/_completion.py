"""Shell completion scripts for bash, zsh and fish, written out from the argparse parser itself.

Generating from the parser keeps completion in step with the options without a
dependency (argcomplete, shtab) or a Python start-up on every <TAB>. Secret ids are not
completed: that would need the passphrase.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

__all__ = ["SHELLS", "render"]

SHELLS = ("bash", "zsh", "fish")
_FILE_METAVARS = frozenset({"FILE", "PATH"})


@dataclass
class _Option:
    flags: list[str]
    takes_value: bool
    choices: list[str]
    is_file: bool
    help: str


@dataclass
class _Command:
    name: str
    help: str
    options: list[_Option] = field(default_factory=list)
    runs_command: bool = False


def _options(parser: argparse.ArgumentParser) -> list[_Option]:
    out: list[_Option] = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        takes_value = action.nargs != 0
        choices = [str(c) for c in action.choices] if action.choices else []
        metavar = action.metavar if isinstance(action.metavar, str) else ""
        out.append(
            _Option(list(action.option_strings), takes_value, choices, metavar in _FILE_METAVARS, action.help or "")
        )
    return out


def _model(parser: argparse.ArgumentParser) -> tuple[list[_Option], list[_Command]]:
    commands: list[_Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                runs = any(a.nargs == argparse.REMAINDER for a in sub._actions)
                commands.append(_Command(name, helps.get(name, ""), _options(sub), runs))
    return _options(parser), commands


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("%(default)s", "")).strip()


def _bash(prog: str, top: list[_Option], commands: list[_Command]) -> str:
    func = "_" + re.sub(r"\W", "_", prog)
    skip_value = sorted({f for o in top if o.takes_value for f in o.flags})
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
            for flag in opt.flags:
                if flag in seen:
                    continue
                seen.add(flag)
                if opt.choices:
                    reply = f'COMPREPLY=($(compgen -W "{" ".join(opt.choices)}" -- "$cur"))'
                elif opt.is_file:
                    reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
                else:
                    reply = "COMPREPLY=()"
                lines.append(f"        {owner}:{flag}) {reply}; return ;;")
    lines.append("    esac")
    lines.append('    case "$cmd" in')
    top_words = " ".join([c.name for c in commands] + [f for o in top for f in o.flags])
    lines.append(f'        "") COMPREPLY=($(compgen -W "{top_words}" -- "$cur")) ;;')
    for cmd in commands:
        words = " ".join(f for o in cmd.options + top for f in o.flags)
        lines.append(f'        {cmd.name}) COMPREPLY=($(compgen -W "{words}" -- "$cur")) ;;')
    lines += ["    esac", "}", f"complete -o default -F {func} {prog}", ""]
    return "\n".join(lines)


def _zsh_text(text: str) -> str:
    # _arguments specs treat [ ] : specially, and the spec sits inside single quotes.
    return _one_line(text).replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", " -")


def _zsh_spec(opt: _Option) -> list[str]:
    specs = []
    for flag in opt.flags:
        spec = f"{flag}[{_zsh_text(opt.help)}]"
        if opt.takes_value:
            if opt.choices:
                spec += f": :({' '.join(opt.choices)})"
            elif opt.is_file:
                spec += ": :_files"
            else:
                spec += ": : "
        specs.append(f"'{spec}'")
    return specs


def _zsh(prog: str, top: list[_Option], commands: list[_Command]) -> str:
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


def _fish_option(prog: str, condition: str, opt: _Option) -> str:
    parts = [f"complete -c {prog}"]
    if condition:
        parts.append(f"-n {condition}")
    for flag in opt.flags:
        if flag.startswith("--"):
            parts.append(f"-l {flag[2:]}")
        else:
            parts.append(f"-s {flag[1:]}")
    if opt.takes_value:
        if opt.choices:
            parts.append(f"-x -a {_fish_text(' '.join(opt.choices))}")
        elif opt.is_file:
            parts.append("-r -F")
        else:
            parts.append("-x")
    parts.append(f"-d {_fish_text(opt.help)}")
    return " ".join(parts)


def _fish(prog: str, top: list[_Option], commands: list[_Command]) -> str:
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


def render(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    top, commands = _model(parser)
    prog = parser.prog
    if shell == "bash":
        return _bash(prog, top, commands)
    if shell == "zsh":
        return _zsh(prog, top, commands)
    if shell == "fish":
        return _fish(prog, top, commands)
    raise ValueError(f"unknown shell {shell!r}")
