"""The filesystem edge: paths, permissions, the lock, appends, fsync and atomic replace.

Every system call that changes the disk goes through ``IO``, one object whose methods
mirror ``os``; tests swap it for one that fails or "dies" at the Nth call. OSErrors are
translated to :class:`~vault.errors.StorageError` here and nowhere else.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import platformdirs

from .errors import (
    InsecureFileError,
    LockTimeoutError,
    StorageError,
    VaultExistsError,
    VaultNotFoundError,
)

__all__ = ["IO", "AccessFile", "Store", "create_file", "default_path", "resolve_path"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def default_path() -> Path:
    """``$CBK_VAULT_PATH`` if set, else ``platformdirs.user_data_path("cbk-vault") / "vault.cbkv"``."""
    env = os.environ.get("CBK_VAULT_PATH")
    if env:
        return Path(env).expanduser()
    return platformdirs.user_data_path("cbk-vault") / "vault.cbkv"


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    return default_path() if path is None else Path(os.fspath(path)).expanduser()



def _flock(fd: int, exclusive: bool, timeout: float, *, held: str, action: str) -> None:
    """flock with a bound: non-blocking attempts with a backoff up to 20 ms, then LockTimeoutError.

    A blocking flock would wait forever on a holder that is stopped (Ctrl-Z, a debugger) or hostile.
    """
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, op)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeoutError(f"{held} is locked by another process (waited {timeout:g} s)") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        except OSError as exc:
            raise _storage_error(action, exc) from exc

class IO:
    """The system calls the store makes. Subclassed by the fault-injection tests."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags | _O_CLOEXEC, mode)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        # fdatasync also flushes the size change an append makes, which is all we need.
        getattr(os, "fdatasync", os.fsync)(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def link(self, src: str, dst: str) -> None:
        os.link(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def close(self, fd: int) -> None:
        os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o700)


def _storage_error(action: str, exc: OSError) -> StorageError:
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return StorageError(f"could not {action}: {reason}", errno=exc.errno)


def _write_all(io: IO, fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = io.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]
        offset += written


def _fsync_dir(io: IO, directory: Path) -> None:
    # Without this, a rename or a new link can be lost in a crash even though the data was synced.
    fd = io.open(str(directory), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        io.fsync(fd)
    finally:
        io.close(fd)


def _ensure_dir(io: IO, directory: Path) -> None:
    """Create missing parent directories 0700; leave existing ones alone."""
    missing: list[Path] = []
    d = directory
    while not d.exists():  # ends at the root at the latest, which always exists
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            io.mkdir(str(d))
        except FileExistsError:
            pass
        except OSError as exc:
            raise _storage_error("create the vault directory", exc) from exc


def _temp_prefix(target: Path) -> str:
    # Per-vault prefix: cleaning up after one vault must never touch another vault's temp.
    return f".{target.name}.tmp-"


def _write_temp(io: IO, target: Path, data: bytes) -> str:
    """A new 0600 file next to ``target``, written and fsynced; its path."""
    directory = target.parent
    for _ in range(16):
        tmp = str(directory / f"{_temp_prefix(target)}{secrets.token_hex(8)}")
        try:
            fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 16 collisions of 64 random bits
        raise StorageError("could not create a temporary file")
    try:
        try:
            # O_CREAT's mode is filtered by the umask; make the mode exact without ever widening it.
            os.fchmod(fd, 0o600)
            _write_all(io, fd, data, 0)
            io.fsync(fd)
        finally:
            io.close(fd)
    except BaseException:
        _unlink_quietly(io, tmp)
        raise
    return tmp


def _unlink_quietly(io: IO, path: str) -> None:
    with suppress(OSError):
        io.unlink(path)


def create_file(path: Path, data: bytes, io: IO) -> None:
    """Create ``path`` holding ``data``, durably, or fail without leaving anything behind.

    The content is written to a temp file and linked into place: link() refuses to
    overwrite, so an existing vault is never clobbered, and a crash leaves either no
    vault or a complete one (never a half-written file that ``init`` then refuses).
    """
    directory = path.parent
    if path.exists() or path.is_symlink():
        raise VaultExistsError(f"a file already exists at {path}")
    _ensure_dir(io, directory)
    try:
        tmp = _write_temp(io, path, data)
    except OSError as exc:
        raise _storage_error("write the new vault", exc) from exc
    try:
        try:
            io.link(tmp, str(path))
        except FileExistsError:
            raise VaultExistsError(f"a file already exists at {path}") from None
        finally:
            _unlink_quietly(io, tmp)
        try:
            _fsync_dir(io, directory)
        except OSError:
            # Not durable, so not created: take the name back so a retry can succeed.
            _unlink_quietly(io, str(path))
            raise
    except OSError as exc:
        raise _storage_error("write the new vault", exc) from exc


class Store:
    """An open vault file plus its sidecar lock file. Not thread-safe; the Vault serialises."""

    def __init__(self, path: Path, io: IO | None = None) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.io = io or IO()
        self.fd = -1
        self.lock_fd = -1
        self._ident: tuple[int, int] = (0, 0)
        self.poisoned = False
        self._lock_depth = 0
        self._lock_exclusive = False
        self._pid = os.getpid()
        self._open_data_fd()
        try:
            self._open_lock_fd()
        except BaseException:
            self.close()
            raise

    def _open_lock_fd(self) -> None:
        try:
            fd = self.io.open(str(self.lock_path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InsecureFileError(f"lock file {self.lock_path} is a symbolic link") from None
            raise _storage_error("open the lock file", exc) from exc
        # Checked like the vault itself: a lock file another user owns or may write lets them
        # hold the lock forever (a denial of service) or swap the inode under our flock.
        try:
            st = os.fstat(fd)
        except OSError as exc:
            with suppress(OSError):
                self.io.close(fd)
            raise _storage_error("open the lock file", exc) from exc
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid():
            problem = "is owned by another user"
        elif st.st_mode & 0o022:
            problem = "is writable by other users"
        if problem is not None:
            with suppress(OSError):
                self.io.close(fd)
            raise InsecureFileError(f"lock file {self.lock_path} {problem}; remove it if no cbk-vault is running")
        if self.lock_fd >= 0:
            self.io.close(self.lock_fd)
        self.lock_fd = fd

    def _after_fork(self) -> None:
        # A forked child shares its parent's open file descriptions, and flock belongs to the
        # description: parent and child would both "hold" the lock at once. Open our own.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock_depth = 0
            self._open_data_fd()
            self._open_lock_fd()

    def _open_data_fd(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise VaultNotFoundError(f"no vault at {self.path}") from None
        except OSError as exc:
            raise _storage_error("read the vault", exc) from exc
        if stat.S_ISLNK(st.st_mode):
            # A planted symlink could redirect our writes; we never follow one.
            raise InsecureFileError(f"vault path {self.path} is a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise InsecureFileError(f"vault path {self.path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise InsecureFileError(f"vault file {self.path} is owned by another user")
        if st.st_mode & 0o022:
            raise InsecureFileError(f"vault file {self.path} is writable by other users")
        try:
            fd = self.io.open(str(self.path), os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InsecureFileError(f"vault path {self.path} is a symbolic link") from None
            raise _storage_error("open the vault", exc) from exc
        fst = os.fstat(fd)
        old, self.fd = self.fd, fd
        self._ident = (fst.st_dev, fst.st_ino)
        if old >= 0:
            # Nothing was written through the old descriptor since its last sync; a failed
            # close cannot lose data, and must not leave us holding a dead descriptor.
            with suppress(OSError):
                self.io.close(old)

    # --- reading ---------------------------------------------------------------------

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, offset: int = 0, size: int | None = None) -> bytes:
        if size is None:
            size = max(0, self.size() - offset)
        chunks: list[bytes] = []
        try:
            while size > 0:
                chunk = os.pread(self.fd, size, offset)
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
                size -= len(chunk)
        except OSError as exc:
            raise _storage_error("read the vault", exc) from exc
        return b"".join(chunks)

    def replaced(self) -> bool:
        """Whether another process swapped in a new file (compaction) since we opened ours."""
        self._after_fork()
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) != self._ident

    def reopen(self) -> None:
        self._open_data_fd()

    # --- locking ---------------------------------------------------------------------

    @contextmanager
    def locked(self, *, exclusive: bool, timeout: float) -> Iterator[None]:
        """flock on the sidecar file: the data file's inode changes on replace, the lock file's never does."""
        self._after_fork()
        if self._lock_depth:
            # Already held by this handle (a catch-up inside a write): flock would convert
            # the lock, and the inner release would drop the outer writer's lock.
            if exclusive and not self._lock_exclusive:
                raise RuntimeError("cannot upgrade a shared vault lock")  # pragma: no cover - internal misuse
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        _flock(self.lock_fd, exclusive, timeout, held=f"vault {self.path}", action="lock the vault")
        self._lock_depth = 1
        self._lock_exclusive = exclusive
        try:
            yield
        finally:
            self._lock_depth = 0
            # The handle may have closed itself inside (a re-key elsewhere): closing dropped the lock.
            if self.lock_fd >= 0:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    # --- writing (caller holds the exclusive lock) -------------------------------------

    def append(self, data: bytes, at: int) -> None:
        """Write ``data`` at offset ``at`` (the committed end) and make it durable.

        Anything past ``at`` is a torn append from a crashed writer and is cut first.
        On failure the file is cut back to ``at``: the vault is as it was. The fsync
        is never retried: after a failed fsync the kernel may have dropped the pages
        and a retry would report success for lost data (PostgreSQL's fsyncgate).
        """
        if self.poisoned:
            raise StorageError("an earlier write failed and could not be rolled back; reopen the vault")
        try:
            if self.size() != at:
                self.io.ftruncate(self.fd, at)
            _write_all(self.io, self.fd, data, at)
            self.io.fdatasync(self.fd)
        except OSError as exc:
            self._rollback(at)
            raise _storage_error("write to the vault", exc) from exc
        except BaseException:
            # Interrupted (Ctrl-C) mid-write: the commit was not acknowledged, so it must not
            # surface later as committed when this or another handle reads the file.
            self._rollback(at)
            raise

    def _rollback(self, at: int) -> None:
        try:
            self.io.ftruncate(self.fd, at)
        except OSError:
            # The failed frame may still be on disk; only a fresh read can say what is committed.
            self.poisoned = True

    def write_slot(self, offset: int, data: bytes) -> None:
        """Overwrite a key slot in place and sync it; on failure put the old bytes back.

        Slots carry a checksum, so a torn write reads as a damaged (ignored) slot. A failed
        write must not leave a new slot behind: it would change the passphrase while the
        call reports failure.
        """
        if self.poisoned:
            raise StorageError("an earlier write failed and could not be rolled back; reopen the vault")
        previous = self.read(offset, len(data))
        try:
            _write_all(self.io, self.fd, data, offset)
            self.io.fdatasync(self.fd)
        except OSError as exc:
            try:
                _write_all(self.io, self.fd, previous, offset)
                self.io.fdatasync(self.fd)
            except OSError:
                self.poisoned = True
            raise _storage_error("write the key slot", exc) from exc

    def replace_with(self, data: bytes, *, on_replaced: Callable[[], None] | None = None) -> None:
        """Atomically replace the whole file (compaction, re-key): temp, fsync, rename, fsync(dir).

        The rename is the commit point: ``on_replaced`` runs right after it (no I/O of its own),
        so a caller learns that the new file is in place even when a later step fails.
        """
        directory = self.path.parent
        self.remove_stale_temps()
        try:
            tmp = _write_temp(self.io, self.path, data)
        except OSError as exc:
            raise _storage_error("write the compacted vault", exc) from exc
        try:
            self.io.replace(tmp, str(self.path))
        except OSError as exc:
            _unlink_quietly(self.io, tmp)
            raise _storage_error("replace the vault file", exc) from exc
        if on_replaced is not None:
            on_replaced()
        try:
            _fsync_dir(self.io, directory)
        except OSError as exc:
            raise _storage_error("sync the vault directory", exc) from exc
        finally:
            # The rename happened either way; follow the path to the new inode.
            self._open_data_fd()

    def remove_stale_temps(self) -> None:
        """Temps left by a writer that died mid-compaction (they hold only sealed data)."""
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for name in names:
            if name.startswith(_temp_prefix(self.path)):
                _unlink_quietly(self.io, str(self.path.parent / name))

    def close(self) -> None:
        for fd in (self.fd, self.lock_fd):
            if fd >= 0:
                with suppress(OSError):
                    self.io.close(fd)
        self.fd = self.lock_fd = -1


class AccessFile:
    """The access log's sidecar files: ``<vault>.access`` (appended in place) and ``<vault>.access.old``.

    Appends are one ``pwrite`` each, without fsync: a read of a value must stay a read. The
    current file's inode never changes (rotation copies it aside and truncates it), so every
    process appends to the same file under its ``flock``. Not thread-safe; the caller serialises.
    """

    def __init__(self, vault_path: Path) -> None:
        self.path = vault_path.with_name(vault_path.name + ".access")
        self.old_path = vault_path.with_name(vault_path.name + ".access.old")
        self.damaged_path = vault_path.with_name(vault_path.name + ".access.damaged")
        self.fd = -1
        self._pid = os.getpid()
        #: Whether our open created the current file (it did not exist: a new log, or one removed).
        self.created = False

    def open(self) -> None:
        """Open (creating 0600) the current file, checked like the lock file; again after a fork."""
        if self.fd >= 0 and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.fd = -1  # a forked child's copy of the parent's descriptor shares its flock: never use it
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | _O_CLOEXEC)
                self.created = False
            except FileNotFoundError:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _O_CLOEXEC, 0o600)
                self.created = True
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InsecureFileError(f"access log {self.path} is a symbolic link") from None
            raise _storage_error("open the access log", exc) from exc
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid():
            problem = "is owned by another user"
        elif st.st_mode & 0o022:
            problem = "is writable by other users"
        if problem is not None:
            os.close(fd)
            raise InsecureFileError(f"access log {self.path} {problem}")
        self.fd = fd

    @contextmanager
    def locked(self, *, exclusive: bool, timeout: float) -> Iterator[None]:
        self.lock(exclusive=exclusive, timeout=timeout)
        try:
            yield
        finally:
            self.unlock()

    def lock(self, *, exclusive: bool = True, timeout: float) -> None:
        """The file's flock, waited for at most ``timeout`` seconds (LockTimeoutError past it).

        Never a blocking flock: a process of the same user holding it (stopped with Ctrl-Z, in a
        debugger, or hostile) would hang close, the exit handler and reads with no bound. As the
        vault's lock: non-blocking attempts with a backoff up to 20 ms.
        """
        self.open()
        _flock(self.fd, exclusive, timeout, held=f"the access log {self.path}", action="lock the access log")

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def ends_with(self, end: int, tag: bytes) -> bool:
        """Whether the file ends at ``end`` with ``tag``: one pread says nobody appended or rotated since."""
        try:
            return os.pread(self.fd, len(tag) + 1, end - len(tag)) == tag
        except OSError:
            return False

    def forget_after_fork(self) -> None:
        """In a forked child: the inherited descriptor shares the parent's flock; open our own when needed."""
        with suppress(OSError):
            if self.fd >= 0:
                os.close(self.fd)
        self.fd = -1
        self._pid = os.getpid()

    def stat(self) -> tuple[int, int]:
        """(size, ctime in ns): a change of either means another process wrote or rotated the file."""
        st = os.fstat(self.fd)
        return st.st_size, st.st_ctime_ns

    def read(self, offset: int = 0) -> bytes:
        try:
            size = os.fstat(self.fd).st_size
            return os.pread(self.fd, max(0, size - offset), offset) if size > offset else b""
        except OSError as exc:
            raise _storage_error("read the access log", exc) from exc

    def read_old(self) -> bytes | None:
        """The previous segment, or None when there is none."""
        try:
            fd = os.open(self.old_path, os.O_RDONLY | os.O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error("read the access log", exc) from exc
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def append(self, data: bytes, at: int, *, cut: bool = False) -> None:
        """Write ``data`` at ``at`` (with ``cut``, cutting a torn tail first); on failure cut it back. No fsync."""
        try:
            if cut:
                os.ftruncate(self.fd, at)
            view = memoryview(data)
            offset = at
            while view:
                n = os.pwrite(self.fd, view, offset)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
                offset += n
        except OSError as exc:
            with suppress(OSError):
                os.ftruncate(self.fd, at)
            raise _storage_error("write to the access log", exc) from exc

    def rewrite(self, data: bytes) -> None:
        """Replace the current file's content in place (rotation: a new segment's header) and sync it."""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            os.fdatasync(self.fd)
        except OSError as exc:
            raise _storage_error("rotate the access log", exc) from exc

    def write_old(self, data: bytes) -> None:
        """Make ``data`` the previous segment: temp file, fsync, rename, directory fsync."""
        io = IO()
        try:
            tmp = _write_temp(io, self.old_path, data)
            try:
                os.replace(tmp, self.old_path)
            except OSError:
                _unlink_quietly(io, tmp)
                raise
            _fsync_dir(io, self.path.parent)
        except OSError as exc:
            raise _storage_error("rotate the access log", exc) from exc

    def set_aside(self) -> None:
        """Keep a damaged current file as ``.access.damaged`` (evidence) and start an empty one in its place."""
        try:
            data = self.read()
            tmp = _write_temp(IO(), self.damaged_path, data)
            os.replace(tmp, self.damaged_path)
            os.ftruncate(self.fd, 0)
        except OSError as exc:
            raise _storage_error("set the damaged access log aside", exc) from exc

    def sync(self) -> None:
        if self.fd >= 0 and self._pid == os.getpid():
            try:
                os.fdatasync(self.fd)
            except OSError as exc:
                raise _storage_error("sync the access log", exc) from exc

    def close(self) -> None:
        if self.fd >= 0 and self._pid == os.getpid():
            with suppress(OSError):
                os.close(self.fd)
        self.fd = -1
