"""Terminal and file edges of the command line: hardening, passphrases, values, safe output files.

Nothing here ever puts a passphrase or a secret value into an exception message, a log line
or argv; errors name the source (a file, a descriptor, an environment variable), never the
contents.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from ..errors import InvalidRequestError, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ENV_NEW_PASSPHRASE",
    "ENV_PASSPHRASE",
    "PassphraseSource",
    "Progress",
    "UsageError",
    "dump_json",
    "harden_process",
    "load_json",
    "read_bytes",
    "open_private_output",
    "check_vault_path",
    "for_terminal",
    "prompt_new_passphrase",
    "read_value",
    "remove_quietly",
    "restore_core_limit",
]

#: Meant for CI and scripts, where no one can answer a prompt. Removed from the process
#: environment as soon as it is read, so ``cbk-vault run`` never hands it to a child.
ENV_PASSPHRASE: Final = "CBK_VAULT_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
#: The new passphrase for ``passwd`` when it runs without a terminal.
ENV_NEW_PASSPHRASE: Final = "CBK_VAULT_NEW_PASSPHRASE"  # noqa: S105 - a variable name

_PR_SET_DUMPABLE: Final = 4
_saved_core_limit: tuple[int, int] | None = None


class UsageError(Exception):
    """Bad input from the command line (exit 2). The message never holds a secret."""


def harden_process() -> None:
    """Best effort: keep the unlocked keys and decrypted values out of core files and debuggers.

    A crash (or ``kill -QUIT``) would otherwise write the whole address space, data key
    and any decrypted value included, to a core file that outlives the process and is often
    collected by crash reporters (systemd-coredump, apport). ``PR_SET_DUMPABLE 0`` also stops
    other processes of the same user from ``ptrace``-attaching or reading ``/proc/<pid>/mem``
    and ``environ``. Neither call is available everywhere; failure is not fatal.
    """
    global _saved_core_limit
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        # Only the soft limit is lowered, so `run` can give the child its old limit back.
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        _saved_core_limit = (soft, hard)
    except (ImportError, OSError, ValueError):
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            # The C library is already loaded into this process: its symbols are found without a
            # search (ctypes.util.find_library would run `ldconfig -p` in a child process).
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (ImportError, OSError, AttributeError):
            pass


def restore_core_limit() -> None:
    """Give a command started by ``run`` the core-file limit the user had (it is not ours to change)."""
    if _saved_core_limit is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, _saved_core_limit)
    except (ImportError, OSError, ValueError):
        pass


def _strip_newline(text: str) -> str:
    # `echo`, heredocs and most editors end a file with one newline that is not part of the secret.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None


def read_bytes(path: str, what: str) -> bytes:
    """The bytes of the file a user named; a missing or unreadable file is a usage error naming it."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UsageError(f"{what} {path!r} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc.strerror}") from None


def _read_file(path: str, what: str) -> str:
    return _decode(read_bytes(path, f"{what} file"), f"{what} file {path!r}")


# --- text for the terminal -------------------------------------------------------------------

#: Unicode categories that are never shown raw: controls (C0, DEL and C1: ESC and U+009B CSI start
#: escape sequences), format characters (bidi overrides and isolates, zero-width ones, tags),
#: surrogates, private use, unassigned code points (a newer terminal may know them as controls),
#: and the line and paragraph separators.
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Default-ignorable code points outside those categories: they draw nothing, so "Open\u3164AI"
#: would look like "OpenAI" (combining grapheme joiner, Hangul fillers, Khmer inherent vowels,
#: Mongolian and other variation selectors).
#: (Patterns, compiled on first use through re's cache: every command imports this module, few print.)
_INVISIBLE: Final = r"[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
#: Everything but printable ASCII: the only characters that need a closer look.
_NOT_ASCII_TEXT: Final = r"[^\x20-\x7e]"
_NOT_JSON_TEXT: Final = r"[^\n\x20-\x7e]"


def _hidden(ch: str) -> bool:
    import unicodedata  # here: most commands print no text that needs a look

    return unicodedata.category(ch) in _HIDDEN_CATEGORIES or re.match(_INVISIBLE, ch) is not None


_SHORT_ESCAPES: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _terminal_escape(match: re.Match[str]) -> str:
    ch = match.group()
    if not _hidden(ch):
        return ch
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def for_terminal(text: str) -> str:
    """``text`` made safe to print: every control, format or invisible character becomes a visible escape.

    The one rule for every human-readable line (names, descriptions, meta, config, ids, paths,
    error messages) that may hold bytes the owner did not write: a sync pull, an imported file
    or a client of the stand-in chooses them. ESC and the C1 controls (U+0080-U+009F; U+009B is
    a one-character CSI in terminals that read C1) would let such text move the cursor, clear
    the screen, set the window title or write a hyperlink; bidi overrides and isolates reorder
    what is shown (``"txt.exe"`` as ``"exe.txt"``), and zero-width characters make two different
    names look the same. Each is shown as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, so the owner
    sees that something is there. A backslash is shown as is (a literal ``\\x1b`` in a name
    reads the same as an escaped ESC; neither can act on the terminal). Tab and newline are
    escaped too: one field never spans two lines. Revealed values (``fetch --reveal``, ``run``,
    ``export``) never pass through here: they are the owner's explicit request and stay exact.
    """
    return re.sub(_NOT_ASCII_TEXT, _terminal_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    ch = match.group()
    if not _hidden(ch):
        return ch
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells a character outside the BMP as a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def dump_json(obj: Any, *, indent: int | None = None) -> str:
    """JSON for output: exact data, and safe to land on a terminal.

    ``ensure_ascii=False`` keeps names in other scripts readable, but it would also leave DEL,
    the C1 controls (U+009B CSI), bidi overrides and zero-width characters raw: ``list --json``
    on a terminal, or piped to ``jq`` and then to one, would hand them to it. They are written as
    ``\\uXXXX`` escapes instead, which every JSON reader decodes to the very same string, so the
    data stays exact (``json.dumps`` already escapes C0 controls itself). Raw characters outside
    strings are only the indent's newlines and spaces, so every character rewritten is inside a
    string. NaN or Infinity (only a vault written before the core rejected them could hold one)
    is a typed error, never the invalid JSON a reader downstream would choke on.
    """
    import json  # here, not at the top: --version and --help print no JSON

    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=indent)
    except ValueError:
        raise InvalidRequestError("a stored meta or config holds NaN or Infinity, which JSON cannot carry") from None
    return re.sub(_NOT_JSON_TEXT, _json_escape, text)


class _NotFinite(ValueError):
    pass


class _TooManyDigits(ValueError):
    pass


class _RepeatedKey(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    import math

    if not math.isfinite(value):  # 1e400 parses to inf, which no JSON writer can give back
        raise _NotFinite(text)
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows (a CPU-cost guard)
        raise _TooManyDigits from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # The last one would win silently: a reviewer reading the file sees the first, the vault stores
        # the last. I-JSON (RFC 7493) makes unique names a MUST.
        raise _RepeatedKey
    return obj


def load_json(data: bytes | str, what: str) -> Any:
    """Strict JSON from the user: UTF-8, finite numbers only, unique keys, any failure a :class:`UsageError`.

    NaN and Infinity are Python extensions; stored, they would make every later ``--json``
    output invalid JSON. The messages name a position at most, never the text, because the
    input may be a config that holds a clientSecret.
    """
    import json

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_whole_number,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        # The C decoder recurses once per '[': a long run of them would otherwise crash (exit 70).
        raise UsageError(f"{what} is not valid JSON: nested too deeply") from None
    except _TooManyDigits:
        raise UsageError(f"{what} holds a number with too many digits") from None
    except _RepeatedKey:
        raise UsageError(f"{what} is not valid JSON: an object repeats a key") from None
    except ValueError:
        raise UsageError(f"{what} is not valid JSON: NaN and Infinity are not allowed") from None


def _read_fd_line(fd: int, what: str) -> str:
    """One line from a descriptor, read a byte at a time so nothing after it is consumed (like gpg)."""
    chunks: list[bytes] = []
    try:
        while True:
            byte = os.read(fd, 1)
            if not byte or byte == b"\n":
                break
            chunks.append(byte)
    except OSError as exc:
        raise UsageError(f"cannot read {what} from descriptor {fd}: {exc.strerror}") from None
    return _strip_newline(_decode(b"".join(chunks), f"{what} from descriptor {fd}"))


def _warn_if_readable_by_others(path: str, option: str, err: TextIO) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) and mode & 0o077:
        print(f"cbk-vault: warning: {option} {path!r} is readable by other users (chmod 600 it)", file=err)


class PassphraseSource:
    """Where the passphrase comes from, in the documented order: file, descriptor, environment, prompt."""

    def __init__(
        self,
        file: str | None = None,
        fd: int | None = None,
        env: str | None = None,
        what: str = "passphrase",
        hint: str = f"--passphrase-file, --passphrase-fd or {ENV_PASSPHRASE} (for CI)",
        file_option: str = "--passphrase-file",
        err: TextIO = sys.stderr,
        getpass_fn: Callable[[str], str] | None = None,
    ) -> None:
        # A plain class rather than a dataclass: importing dataclasses costs more start-up time
        # than every other module a served `fetch` needs.
        self.file = file
        self.fd = fd
        self.env = env
        self.what = what
        self.hint = hint
        #: The option that named ``file``, for the permission warning.
        self.file_option = file_option
        self.err = err
        #: None: getpass.getpass (imported when a prompt is asked, not with this module).
        self.getpass_fn = getpass_fn

    def __repr__(self) -> str:
        # Which sources are named, never what the environment variable holds.
        env = None if self.env is None else "<set>"
        return f"PassphraseSource(file={self.file!r}, fd={self.fd!r}, env={env}, what={self.what!r})"

    @property
    def interactive(self) -> bool:
        """Whether the passphrase has to be asked for at a prompt."""
        return self.file is None and self.fd is None and self.env is None

    def read(self, prompt: str) -> str:
        """Return the passphrase (one read; a prompt is asked once)."""
        if self.file is not None:
            _warn_if_readable_by_others(self.file, self.file_option, self.err)
            return _strip_newline(_read_file(self.file, self.what))
        if self.fd is not None:
            return _read_fd_line(self.fd, self.what)
        if self.env is not None:
            return self.env
        return self.ask(prompt)

    def ask(self, prompt: str) -> str:
        """Ask at a hidden prompt on the terminal; a usage error when there is no terminal."""
        if not _have_terminal():
            raise UsageError(f"no {self.what}: no terminal to prompt on; use {self.hint}")
        if self.getpass_fn is None:
            import getpass

            return getpass.getpass(prompt)
        return self.getpass_fn(prompt)


def _have_terminal() -> bool:
    # getpass prompts on /dev/tty, so stdin may be a pipe (e.g. --value-stdin) and prompting still works.
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return sys.stdin.isatty()
    os.close(fd)
    return True


def prompt_new_passphrase(source: PassphraseSource, label: str = "New passphrase") -> str:
    """A new passphrase: from a non-interactive source as is, at a prompt typed twice."""
    if not source.interactive:
        phrase = source.read("")
        if not phrase:
            raise UsageError(f"the {source.what} must not be empty")
        return phrase
    for _ in range(3):
        first = source.ask(f"{label}: ")
        if not first:
            print("The passphrase must not be empty.", file=source.err)
            continue
        second = source.ask(f"Repeat {label[0].lower() + label[1:]}: ")
        if first == second:
            return first
        print("The two entries differ; try again.", file=source.err)
    raise UsageError("no passphrase set: the entries were empty or did not match three times")


def read_value(
    *, stdin: bool, file: str | None, prompt: str | None, getpass_fn: Callable[[str], str] | None = None
) -> str:
    """A secret value from stdin, a file or a hidden prompt; never from argv. One trailing newline is dropped."""
    if stdin:
        data = sys.stdin.buffer.read()
        return _strip_newline(_decode(data, "standard input"))
    if file is not None:
        return _strip_newline(_read_file(file, "value"))
    if prompt is None or not _have_terminal():
        raise UsageError("no value given: use --value-stdin, --value-file FILE or --no-value (or run on a terminal)")
    if getpass_fn is None:
        import getpass

        getpass_fn = getpass.getpass
    return getpass_fn(prompt)


def open_private_output(path: str) -> TextIO:
    """Create ``path`` for plaintext: mode 0600 from the first instant, never an existing file or a symlink.

    ``O_EXCL`` makes creation and the permission bits one atomic step, so there is no
    window in which another user could open the file, and no way to follow a planted
    symlink or truncate someone else's file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"output file {path!r} already exists; choose a new name") from None
    except OSError as exc:
        raise StorageError(f"cannot create output file {path!r}: {exc.strerror}", errno=exc.errno) from None
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)  # a umask can only clear bits, but be explicit about the result
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


def remove_quietly(path: str) -> None:
    """Delete ``path`` if it exists (a half-written output file); errors are ignored."""
    with contextlib.suppress(OSError):
        os.unlink(path)


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal and the work is large."""

    def __init__(self, total: int, label: str, *, stream: TextIO = sys.stderr, threshold: int = 50) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.enabled = total >= threshold and stream.isatty()
        self._last = -1

    def update(self, done: int) -> None:
        """Redraw the bar for ``done`` of ``total`` items (at most once per percent)."""
        if not self.enabled:
            return
        percent = done * 100 // max(1, self.total)
        if percent == self._last and done != self.total:
            return
        self._last = percent
        width = 30
        filled = width * done // max(1, self.total)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total}")
        self.stream.flush()

    def finish(self) -> None:
        """Erase the bar."""
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def check_vault_path(path: Path) -> None:
    """Refuse a directory where the vault file should be."""
    if path.exists() and path.is_dir():
        raise InvalidRequestError(f"{str(path)!r} is a directory, not a vault file")
