"""``Checkpoint``: numbered checkpoint files in a directory, keeping the last few."""

from __future__ import annotations

import operator
import os
import re
from typing import Any, Optional

from bridge.checkpoint._core import _FORMATS, restore, save
from bridge.checkpoint._errors import RestoreReport
from bridge.state._renamer import RenameRules

__all__ = ["Checkpoint"]

_FILE = re.compile(r"^ckpt-(\d+)\.(msgpack|npz)$")


class Checkpoint:
    """Numbered checkpoints ``ckpt-0000000100.msgpack`` in ``logdir``; keeps the latest few.

    Shaped after Objax's ``objax.io.Checkpoint(logdir, keep_ckpts)``: ``save(vc, idx)``
    writes checkpoint ``idx`` (an epoch or step number) and deletes the oldest, keeping
    ``keep_ckpts`` files: the one just written and the highest-numbered others;
    ``restore(vc)`` loads the highest-numbered one and
    returns ``(idx, path)``, or ``(0, '')`` when there is none yet, so a training script
    can resume or start fresh with the same line.

    Example::

        ckpt = bridge.checkpoint.Checkpoint("runs/exp1", keep_ckpts=3)
        start, _ = ckpt.restore(model.vars() + opt.vars())   # (0, '') on a fresh run
        for epoch in range(start, 100):
            ...
            ckpt.save(model.vars() + opt.vars(), epoch + 1)

    Args:
      logdir: the directory holding the files.
      keep_ckpts: how many checkpoints to keep (``None``: all of them).
      makedir: create ``logdir`` if it does not exist.
      format: ``"msgpack"`` (default) or ``"npz"`` for new files; both are read.
      verbose: print the file restored (Objax printed it by default; bridge does not).

    Unlike Objax, files sit directly in ``logdir`` (Objax used ``logdir/ckpt/%010d.npz``);
    an Objax checkpoint restores with ``bridge.checkpoint.restore(path, vc)``.
    """

    def __init__(self, logdir: str | os.PathLike, keep_ckpts: Optional[int] = 5,
                 makedir: bool = True, *, format: str = "msgpack", verbose: bool = False):
        if keep_ckpts is not None and (isinstance(keep_ckpts, bool) or
                                       operator.index(keep_ckpts) < 1):
            raise ValueError(f"keep_ckpts must be a positive integer or None, got {keep_ckpts!r}.")
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {_FORMATS}, got {format!r}.")
        self.logdir = os.fspath(logdir)
        self.keep_ckpts = keep_ckpts
        self.format = format
        self.verbose = verbose
        self.last_report: Optional[RestoreReport] = None
        if makedir:
            os.makedirs(self.logdir, exist_ok=True)

    def path(self, idx: int) -> str:
        """The file that ``save(vc, idx)`` writes."""
        return os.path.join(self.logdir, f"ckpt-{operator.index(idx):010d}.{self.format}")

    def _files(self) -> dict[int, list[str]]:
        try:
            names = os.listdir(self.logdir)
        except FileNotFoundError:
            return {}
        out: dict[int, list[str]] = {}
        for name in sorted(names):
            match = _FILE.match(name)
            if match:
                out.setdefault(int(match.group(1)), []).append(os.path.join(self.logdir, name))
        return out

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
        save(path, vc, step=idx, format=self.format)
        files = self._files()
        for other in files.pop(idx, []):  # the same number in the other format is stale now
            if other != path:
                _remove(other)
        if self.keep_ckpts is not None:
            for old in sorted(files)[:max(0, len(files) + 1 - self.keep_ckpts)]:
                for file in files[old]:
                    _remove(file)
        return path

    def restore(self, vc: Any, idx: Optional[int] = None, *, strict: bool = True,
                ignore_unexpected: bool = False,
                renamer: Optional[RenameRules] = None) -> tuple[int, str]:
        """Restore checkpoint ``idx`` (default: the latest) into ``vc``.

        Returns ``(idx, path)``, or ``(0, '')`` without touching ``vc`` when ``idx`` is
        ``None`` and there is no checkpoint. The :class:`RestoreReport` is kept in
        ``self.last_report``. Keyword arguments are those of
        :func:`bridge.checkpoint.restore`.

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
            raise FileNotFoundError(f"No checkpoint {idx} in {self.logdir!r} "
                                    f"(present: {sorted(files)}).")
        preferred = self.path(idx)
        path = preferred if preferred in files[idx] else files[idx][0]
        if self.verbose:
            print("Resuming from", path)
        self.last_report = restore(path, vc, strict=strict,
                                   ignore_unexpected=ignore_unexpected, renamer=renamer)
        return idx, path

    def __repr__(self) -> str:
        return (f"Checkpoint({self.logdir!r}, keep_ckpts={self.keep_ckpts}, "
                f"format={self.format!r})")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:  # removed meanwhile (another process pruning): fine
        pass
