"""``Checkpoint``: numbered checkpoint files in a directory, keeping the last few."""

from __future__ import annotations

import functools
import glob
import operator
import os
import re
from typing import Any, Callable, Optional

from bridge.checkpoint._core import (
    _FORMATS,
    load_var_collection,
    restore,
    save,
    save_var_collection,
)
from bridge.checkpoint._errors import RestoreReport
from bridge.state._repr import class_path

__all__ = ["Checkpoint"]

_NUMBERED = re.compile(r"^(\d+)\.")


class Checkpoint:
    """Numbered checkpoints in ``logdir/ckpt/``, keeping the latest few: Objax's layout.

    ``save(vc, idx)`` writes checkpoint ``idx`` (an epoch or step number) to
    ``logdir/ckpt/0000000100.npz`` and deletes the oldest, keeping ``keep_ckpts`` files:
    the one just written and the highest-numbered others. ``restore(vc)`` loads the
    highest-numbered one and returns ``(idx, path)``, or ``(0, '')`` when there is none
    yet, so a training script can resume or start fresh with the same line. The layout
    and file names are Objax's ``objax.io.Checkpoint``'s, so a run started with Objax
    resumes with bridge (and the reverse).

    Example::

        ckpt = bridge.io.Checkpoint("runs/exp1", keep_ckpts=3)
        start, _ = ckpt.restore(model.vars() + opt.vars())   # (0, '') on a fresh run
        for epoch in range(start, 100):
            ...
            ckpt.save(model.vars() + opt.vars(), epoch + 1)

    Args:
      logdir: the run directory; files go to its ``DIR_NAME`` sub-directory.
      keep_ckpts: how many checkpoints to keep (``None``: all of them).
      makedir: create the directory if it does not exist.
      verbose: print the file restored.
      format: ``"npz"`` (Objax's files; the default) or ``"msgpack"``.

    As in Objax, a subclass may change the class attributes below (for example
    ``FILE_FORMAT = "%010d.msgpack"``, ``FILE_MATCH = "*.msgpack"`` and a ``SAVE_FN``
    that writes msgpack); the ``format`` argument does exactly that for one instance.
    """

    DIR_NAME: str = "ckpt"
    """The sub-directory of ``logdir`` that holds the files."""
    FILE_MATCH: str = "*.npz"
    """The glob pattern of checkpoint files in that directory."""
    FILE_FORMAT: str = "%010d.npz"
    """The file name of checkpoint ``idx``: ``FILE_FORMAT % idx``."""
    LOAD_FN: Callable[..., Any] = staticmethod(load_var_collection)
    """``(path, vc) -> report``: what ``restore`` loads with."""
    SAVE_FN: Callable[..., Any] = staticmethod(save_var_collection)
    """``(path, vc) -> None``: what ``save`` writes with."""

    def __init__(self, logdir: str | os.PathLike, keep_ckpts: Optional[int] = 5,
                 makedir: bool = True, verbose: bool = False, *, format: str = "npz"):
        if keep_ckpts is not None and (isinstance(keep_ckpts, bool) or
                                       operator.index(keep_ckpts) < 1):
            raise ValueError(f"keep_ckpts must be a positive integer or None, got {keep_ckpts!r}.")
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {_FORMATS}, got {format!r}.")
        if format != "npz":
            self.FILE_MATCH = f"*.{format}"
            self.FILE_FORMAT = f"%010d.{format}"
            self.SAVE_FN = functools.partial(save, format=format)
        self.logdir = os.fspath(logdir)
        self.keep_ckpts = keep_ckpts
        self.format = format
        self.verbose = verbose
        self.last_report: Optional[RestoreReport] = None
        if makedir:
            os.makedirs(self.directory, exist_ok=True)

    @property
    def directory(self) -> str:
        """Where the files are: ``logdir/DIR_NAME``."""
        return os.path.join(self.logdir, self.DIR_NAME)

    @staticmethod
    def checkpoint_idx(filename: str | os.PathLike) -> int:
        """The checkpoint number in a checkpoint file's name (``0000000100.npz`` -> 100).

        Raises:
          ValueError: the name does not start with a number.
        """
        name = os.path.basename(os.fspath(filename))
        match = _NUMBERED.match(name)
        if match is None:
            raise ValueError(f"{filename!r} is not a checkpoint file name (expected "
                             "'<number>.npz', as Checkpoint.FILE_FORMAT writes).")
        return int(match.group(1))

    def path(self, idx: int) -> str:
        """The file that ``save(vc, idx)`` writes."""
        return os.path.join(self.directory, self.FILE_FORMAT % operator.index(idx))

    def _files(self) -> dict[int, str]:
        files = {}
        for path in glob.glob(os.path.join(glob.escape(self.directory), self.FILE_MATCH)):
            if _NUMBERED.match(os.path.basename(path)):
                files[self.checkpoint_idx(path)] = path
        return files

    def steps(self) -> list[int]:
        """The numbers of the checkpoints present, in increasing order."""
        return sorted(self._files())

    def latest_step(self) -> Optional[int]:
        """The highest checkpoint number present, or ``None``."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, vc: Any, idx: int) -> str:
        """Write checkpoint ``idx`` of ``vc`` (atomically), prune old ones; return its path."""
        idx = operator.index(idx)
        if idx < 0:
            raise ValueError(f"The checkpoint number must be >= 0, got {idx}.")
        path = self.path(idx)
        self.SAVE_FN(path, vc)
        if self.keep_ckpts is not None:
            files = self._files()
            others = sorted(i for i in files if i != idx)
            for old in others[:max(0, len(others) + 1 - self.keep_ckpts)]:
                _remove(files[old])
        return path

    def restore(self, vc: Any, idx: Optional[int] = None, **options: Any) -> tuple[int, str]:
        """Restore checkpoint ``idx`` (default: the latest) into ``vc``.

        Returns ``(idx, path)``, or ``(0, '')`` without touching ``vc`` when ``idx`` is
        ``None`` and there is no checkpoint. Entries of the file that ``vc`` does not use
        are allowed (as in Objax); a missing or mismatched variable raises and changes
        nothing. ``options`` (``strict``, ``ignore_unexpected``, ``renamer``) are those
        of ``bridge.checkpoint.restore``. The ``RestoreReport`` is kept in
        ``self.last_report``.

        Raises:
          FileNotFoundError: checkpoint ``idx`` does not exist.
        """
        files = self._files()
        if idx is None:
            if not files:
                return 0, ""
            idx = max(files)
        idx = operator.index(idx)
        if idx not in files:
            raise FileNotFoundError(f"No checkpoint {idx} in {self.directory!r} "
                                    f"(present: {sorted(files)}).")
        path = files[idx]
        if self.verbose:
            print("Resuming from", path)
        if options:
            self.last_report = restore(path, vc, **{"ignore_unexpected": True, **options})
        else:
            self.last_report = self.LOAD_FN(path, vc)
        return idx, path

    def __repr__(self) -> str:
        return (f"{class_path(self)}({self.logdir!r}, keep_ckpts={self.keep_ckpts}, "
                f"format={self.format!r})")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:  # removed meanwhile (another process pruning): fine
        pass
