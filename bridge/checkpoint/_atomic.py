"""Atomic file replacement: the file at ``path`` is the old one or the complete new one."""

from __future__ import annotations

import os
import secrets
from typing import IO, Callable

__all__ = ["atomic_write", "TEMP_MARKER"]

TEMP_MARKER = ".tmp-"


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


def _create_temp(directory: str, base: str) -> tuple[str, int]:
    """A new file next to the target, created exclusively (mode 0o666 less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{base}{TEMP_MARKER}{secrets.token_hex(6)}")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it onto ``path``.

    The data is flushed and fsync'ed before ``os.replace``, and the directory is fsync'ed
    after it. If anything fails (including ``write``), the temporary file is removed and
    whatever was at ``path`` is left untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save {path!r}: the directory {directory!r} does not "
                                "exist (create it first, e.g. os.makedirs(..., exist_ok=True)).")
    tmp, fd = _create_temp(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
