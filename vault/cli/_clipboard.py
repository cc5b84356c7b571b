"""``--clip``: copy a value to the clipboard and clear it later, if it is still there (as ``pass -c`` does).

The copy goes through the platform's own tool: ``wl-copy`` on Wayland, ``xclip`` or ``xsel``
on X11, ``pbcopy`` on macOS. The clearing runs in a detached child (a new session, so closing
the terminal does not stop it) that sleeps ``$CBK_VAULT_CLIP_TIME`` seconds (default 45), reads
the clipboard, and clears it only when it still holds what was copied: something copied since
is left alone.

The child never holds the value. Its argv names only the delay and the tool, and on its
standard input it gets a random key and the keyed BLAKE2b digest of the value under that key;
it compares the clipboard's digest with it. So neither ``ps`` nor the child's memory shows the
value, and the digest is no use for testing guesses once the child is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._terminal import UsageError

__all__ = ["CLIP_TIME_ENV", "DEFAULT_CLIP_TIME", "ClipTool", "clearer_main", "clip_seconds", "copy_value", "find_tool"]

#: Seconds until the clipboard is cleared, as pass's PASSWORD_STORE_CLIP_TIME.
CLIP_TIME_ENV: Final = "CBK_VAULT_CLIP_TIME"
DEFAULT_CLIP_TIME: Final = 45
_TOOL_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class ClipTool:
    """One clipboard tool: the commands that set, read and empty the clipboard."""

    name: str
    copy: tuple[str, ...]
    paste: tuple[str, ...]
    #: None: clearing copies an empty string.
    clear: tuple[str, ...] | None = None


_WAYLAND: Final = ClipTool("wl-copy", ("wl-copy",), ("wl-paste", "--no-newline"), ("wl-copy", "--clear"))
_XCLIP: Final = ClipTool("xclip", ("xclip", "-selection", "clipboard"), ("xclip", "-selection", "clipboard", "-o"))
_XSEL: Final = ClipTool("xsel", ("xsel", "--clipboard", "--input"), ("xsel", "--clipboard", "--output"))
_MACOS: Final = ClipTool("pbcopy", ("pbcopy",), ("pbpaste",))
_TOOLS: Final = {tool.name: tool for tool in (_WAYLAND, _XCLIP, _XSEL, _MACOS)}


def _installed(tool: ClipTool, path: str | None) -> bool:
    return all(shutil.which(command[0], path=path) is not None for command in (tool.copy, tool.paste))


def find_tool(env: Mapping[str, str] | None = None, platform: str | None = None) -> ClipTool:
    """The clipboard tool of this session, or a UsageError that says what to install."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    path = env.get("PATH")
    candidates: list[ClipTool] = []
    if platform == "darwin":
        candidates.append(_MACOS)
    if env.get("WAYLAND_DISPLAY"):
        candidates.append(_WAYLAND)
    if env.get("DISPLAY"):
        candidates += [_XCLIP, _XSEL]
    for tool in candidates:
        if _installed(tool, path):
            return tool
    if not candidates:
        raise UsageError(
            "--clip needs a clipboard, and this session has none (neither WAYLAND_DISPLAY nor DISPLAY is set); "
            "use --reveal, or read --no-newline into a variable instead"
        )
    wanted = " or ".join(dict.fromkeys("wl-clipboard" if t is _WAYLAND else t.name for t in candidates))
    raise UsageError(f"--clip needs a clipboard tool, and none is installed: install {wanted}")


def clip_seconds(env: Mapping[str, str] | None = None) -> float:
    """``$CBK_VAULT_CLIP_TIME`` (seconds, more than 0 and at most a day), default 45."""
    raw = (os.environ if env is None else env).get(CLIP_TIME_ENV, "")
    if not raw.strip():
        return float(DEFAULT_CLIP_TIME)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise UsageError(f"{CLIP_TIME_ENV} must be a number of seconds from 1 to 86400 (got {raw[:20]!r})")
    return seconds


def _run(command: tuple[str, ...], data: bytes | None) -> None:
    # stdout and stderr to /dev/null: xclip and wl-copy fork a child that owns the selection and
    # keeps running; a pipe it inherited would never reach end-of-file.
    done = subprocess.run(  # a fixed argv, no shell
        command,
        input=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=_TOOL_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise UsageError(f"the clipboard tool {command[0]} failed (exit {done.returncode})")


def _digest(key: bytes, data: bytes) -> str:
    return hashlib.blake2b(data, key=key, digest_size=32, person=b"cbkv-clip").hexdigest()


def copy_value(value: str, *, env: Mapping[str, str] | None = None) -> float:
    """Copy ``value`` to the clipboard and start the detached clearer; returns the seconds until it clears."""
    seconds = clip_seconds(env)  # a bad variable fails before anything is copied
    tool = find_tool(env)
    data = value.encode("utf-8")
    try:
        _run(tool.copy, data)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"cannot run the clipboard tool {tool.copy[0]} ({type(exc).__name__})") from None
    key = secrets.token_bytes(32)
    child = subprocess.Popen(  # our own interpreter; argv holds no value
        [sys.executable, "-c", _CHILD, "clear-later", f"{seconds:g}", tool.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the terminal's process group: Ctrl-C and hang-up leave it running
        close_fds=True,
        env=dict(os.environ if env is None else env),
    )
    assert child.stdin is not None
    with child.stdin:
        child.stdin.write(f"{key.hex()} {_digest(key, data)}\n".encode("ascii"))
    # It forks once it has read its line, and the fork does the waiting: this returns at once.
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=_TOOL_TIMEOUT)
    return seconds


def _clear_later(seconds: float, tool: ClipTool, line: str) -> int:
    """The child: wait, then clear the clipboard if it still holds the value whose digest is ``line``."""
    key_hex, _, digest = line.strip().partition(" ")
    key = bytes.fromhex(key_hex)
    time.sleep(seconds)
    now = subprocess.run(  # a fixed argv, no shell
        tool.paste, capture_output=True, timeout=_TOOL_TIMEOUT, check=False, stdin=subprocess.DEVNULL
    )
    if now.returncode != 0 or not hmac.compare_digest(_digest(key, now.stdout), digest):
        return 0  # something else was copied since (or the clipboard is gone): leave it alone
    if tool.clear is not None:
        _run(tool.clear, None)
    else:
        _run(tool.copy, b"")
    return 0


def clearer_main(argv: list[str]) -> int:
    """The detached clearer's entry point: ``clear-later SECONDS TOOL``, the digest line on stdin."""
    if len(argv) != 3 or argv[0] != "clear-later" or argv[2] not in _TOOLS:
        return 2
    line = sys.stdin.readline()
    if os.fork() > 0:
        os._exit(0)  # the parent (which cbk-vault waits for) leaves; the fork, in the new session, waits
    try:
        status = _clear_later(float(argv[1]), _TOOLS[argv[2]], line)
    except Exception:  # nobody is left to tell, and stderr is closed
        status = 1
    os._exit(status)


#: What the clearer runs (``python -c``): argv holds the delay and the tool's name, never the value.
_CHILD: Final = "import sys; from vault.cli._clipboard import clearer_main; sys.exit(clearer_main(sys.argv[1:]))"
