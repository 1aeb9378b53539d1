"""Errors raised by ``bridge.checkpoint`` and the report a restore returns."""

from __future__ import annotations

import dataclasses
from typing import Optional

from bridge.state._load import LoadMismatchError, LoadReport

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
class RestoreReport(LoadReport):
    """What a restore did: the ``LoadReport`` of every load, with the file and its step.

    Attributes:
      loaded: names of the variables that were assigned (their name in the collection).
      missing: names of collection variables with no entry in the checkpoint.
      unexpected: names (as stored) of checkpoint entries that match no variable.
      mismatched: ``Mismatch(name, reason)`` pairs (plain ``(name, reason)`` tuples) for
        entries whose shape or dtype does not fit the variable, or that are a second entry
        for a variable already matched.
      sources: ``{variable name: entry name as stored}`` (they differ with ``renamer=``).
      path: the file read (``None`` for ``from_tree`` and open files).
      step: the step stored in the file (``None`` when none was given to ``save``).

    ``ok``, ``skipped`` and ``describe()`` are those of ``LoadReport``.
    """

    path: Optional[str] = None
    step: Optional[int] = None


class CheckpointMismatchError(CheckpointError, LoadMismatchError, AssertionError):
    """The checkpoint does not fit the collection; nothing was assigned.

    ``report`` is the full ``RestoreReport`` (every missing, unexpected and
    mismatched entry); the message is that of every load (``LoadMismatchError``). Also an
    ``AssertionError``, which is what Objax raised here, so Objax code that catches that
    keeps working.
    """
