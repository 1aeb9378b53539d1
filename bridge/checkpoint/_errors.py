"""Errors raised by ``bridge.checkpoint`` and the report a restore returns."""

from __future__ import annotations

import dataclasses
from typing import Optional

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "RestoreReport",
]


class CheckpointError(ValueError):
    """Base class: a checkpoint could not be written or restored.

    A ``ValueError``, so code that catches ``ValueError`` around a restore keeps working.
    """


class CorruptCheckpointError(CheckpointError):
    """The file is not a checkpoint this module can read, or it is truncated or damaged.

    Raised before any variable is touched.
    """


@dataclasses.dataclass(frozen=True)
class RestoreReport:
    """What a restore did.

    Attributes:
      path: the file read (``None`` for ``from_tree``).
      step: the step stored in the file (``None`` when none was given to ``save``).
      loaded: names (as stored) of the entries that were assigned.
      missing: names of collection variables with no entry in the checkpoint.
      unexpected: names of checkpoint entries that match no variable of the collection.
      mismatched: ``{name: reason}`` for entries whose shape or dtype does not fit the
        variable, or that are a second entry for a variable already matched.
    """

    path: Optional[str]
    step: Optional[int]
    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every variable was restored and every entry was used."""
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Every name that was not restored: missing, unexpected and mismatched."""
        return self.missing + self.unexpected + tuple(name for name, _ in self.mismatched)

    def describe(self) -> str:
        """A readable listing of every problem ('' when there is none)."""
        lines = []
        if self.missing:
            lines.append("  missing (in the collection, not in the checkpoint):")
            lines.extend(f"    {name}" for name in self.missing)
        if self.unexpected:
            lines.append("  unexpected (in the checkpoint, not in the collection):")
            lines.extend(f"    {name}" for name in self.unexpected)
        if self.mismatched:
            lines.append("  mismatched:")
            lines.extend(f"    {name}: {reason}" for name, reason in self.mismatched)
        if self.missing and self.unexpected:
            lines.append("  (if variables were renamed, pass `renamer=` to map the stored "
                         "names onto the collection's)")
        return "\n".join(lines)


class CheckpointMismatchError(CheckpointError, AssertionError):
    """The checkpoint does not fit the collection; nothing was assigned.

    ``report`` is the full :class:`RestoreReport` (every missing, unexpected and
    mismatched entry). Also an ``AssertionError``, which is what Objax raised here, so
    Objax code that catches that keeps working.
    """

    def __init__(self, report: RestoreReport):
        self.report = report
        source = f"Checkpoint {report.path!r}" if report.path else "The tree"
        super().__init__(f"{source} does not fit the collection; nothing was restored.\n"
                         + report.describe())
