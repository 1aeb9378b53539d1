"""Atomic file replacement: the file at ``path`` is the old one or the complete new one.

The new content goes to a temporary file beside ``path`` (named ``.<name>.tmp-<12 hex>``),
which is renamed onto ``path`` once complete. A process killed before the rename leaves
that temporary file behind; it never matches a checkpoint name (it starts with a dot and
ends with the random part), and the next ``atomic_write`` into the same directory
removes it. Telling a dead writer's file from a live one's (another thread or process
saving at the same time) relies on a lock: a writer holds an exclusive ``flock`` on its
temporary file from creation until after the rename, the kernel drops it when the process
dies, and a file is removed only by whoever takes that lock. Where ``flock`` does not exist
(Windows) or fails, nothing is removed.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from typing import IO, Callable, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "TEMP_MARKER", "is_temp_name"]

TEMP_MARKER = ".tmp-"
_TEMP_NAME = re.compile(r"\..+" + re.escape(TEMP_MARKER) + r"[0-9a-f]{12}", re.DOTALL)
# This process's files being written. Where flock is emulated with POSIX record locks
# (NFS), locks do not exclude each other inside one process, so a cleanup skips these.
_LIVE: set[str] = set()


def is_temp_name(name: str) -> bool:
    """Whether the file name ``name`` is that of an ``atomic_write`` temporary file."""
    return _TEMP_NAME.fullmatch(name) is not None


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _lock(fd: int, *, wait: bool) -> bool:
    """Take the exclusive ``flock`` on ``fd``; False if it is held elsewhere or unsupported."""
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:  # held by another open file, or a file system without flock
        return False
    return True


def _names_file(path: str, fd: int) -> bool:
    """Whether ``path`` is still a name of the file open as ``fd``."""
    try:
        st, fst = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _create_temp(directory: str, base: str) -> tuple[str, int]:
    """A new, locked file next to the target, created exclusively (mode 0o666 less umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{base}{TEMP_MARKER}{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        _lock(fd, wait=True)
        # Between the creation and the lock, a cleanup in another process could take the
        # lock and delete the file as stale: then start over with a new name.
        if _names_file(tmp, fd):
            _LIVE.add(tmp)
            return tmp, fd
        os.close(fd)  # pragma: no cover - needs that race


def _remove_stale_temps(directory: str) -> None:
    """Delete the temporary files of writers that died; never a live writer's file."""
    if fcntl is None:  # pragma: no cover - Windows: no way to tell a dead writer
        return
    try:
        names = os.listdir(directory)
    except OSError:  # pragma: no cover - the directory went away or is unreadable
        return
    for name in names:
        tmp = os.path.join(directory, name)
        if not is_temp_name(name) or tmp in _LIVE:
            continue
        try:
            if not stat.S_ISREG(os.lstat(tmp).st_mode):
                continue
            # Opened for writing: where flock is emulated with record locks (NFS), an
            # exclusive lock needs a writable descriptor.
            fd = os.open(tmp, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError:  # gone meanwhile, or not ours to open
            continue
        try:
            if _lock(fd, wait=False) and _names_file(tmp, fd):
                os.unlink(tmp)
        except OSError:  # pragma: no cover - removed meanwhile by another cleanup
            pass
        finally:
            os.close(fd)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it onto ``path``.

    The data is flushed and fsync'ed before ``os.replace``, and the directory is fsync'ed
    after it. If anything fails (including ``write``), the temporary file is removed and
    whatever was at ``path`` is left untouched. After a successful write, temporary files
    that killed writers left in the directory are removed (see the module doc).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save {path!r}: the directory {directory!r} does not "
                                "exist (create it first, e.g. os.makedirs(..., exist_ok=True)).")
    tmp, fd = _create_temp(directory, os.path.basename(path))
    open_fd: Optional[int] = fd
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
            f.flush()
            os.fsync(fd)
        if fcntl is None:  # pragma: no cover - Windows renames no open file (nor is locked)
            os.close(fd)
            open_fd = None
        # The lock stays held through the rename, so no cleanup can take the file meanwhile.
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        _LIVE.discard(tmp)
        if open_fd is not None:
            os.close(open_fd)
    _fsync_directory(directory)
    _remove_stale_temps(directory)
