"""What a library said about a variable beyond its value, kept next to the variable.

A library tree can carry more than arrays: a Linen leaf may sit in an ``nn.Partitioned``
box (sharding names), an NNX leaf has a variable type and a metadata dict. The bridge
variable that takes such a leaf holds only the array; the converters and wrappers note
the rest here, under a *scheme* name (``"linen"``, ``"nnx"``, ...), and read it back when
they build that library's tree again.

The notes are keyed by the variable's storage (``storage_of``: a ``TrainRef`` shares its
target's note) and held weakly: a note goes away with its variable and never keeps it,
or anything else, alive beyond what the note itself holds. Notes must hold no arrays
(a box with its value removed, a type, a dict of names) so that remembering a variable
never pins an old value in memory.

This module knows nothing of any library; what a note holds is up to its scheme's user.
Everything here runs when a converter or wrapper is built, never per call.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

from bridge.state import BaseVar
from bridge.state._access import storage_of

__all__ = ["LINEN_PATH", "forget", "recall", "remember"]

#: Scheme of the note holding a ``FlaxModule`` leaf's exact Linen path (its parts), kept
#: when a part holds '/', where the variable's text name cannot tell the parts apart.
LINEN_PATH = "linen_path"

# id(storage) -> (weak reference to the storage, {scheme: note}). Keyed by id rather
# than by the variable: variables compare by value (``==`` is array arithmetic), which a
# weak-keyed dict would call.
_NOTES: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def _drop(key: int, ref: weakref.ref) -> None:
    held = _NOTES.get(key)
    if held is not None and held[0] is ref:
        del _NOTES[key]


def remember(var: BaseVar, scheme: str, info: Any) -> None:
    """Note ``info`` about ``var`` under ``scheme``, replacing an earlier note of that scheme.

    ``info=None`` forgets the scheme's note instead.

    Example::

        remember(model.w, "linen", box.replace_boxed(None))
        recall(model.w, "linen")      # the empty box
    """
    storage = storage_of(var)
    key = id(storage)
    held = _NOTES.get(key)
    if held is None or held[0]() is not storage:
        if info is None:
            return
        ref = weakref.ref(storage, lambda r, k=key: _drop(k, r))
        held = (ref, {})
        _NOTES[key] = held
    if info is None:
        held[1].pop(scheme, None)
        if not held[1]:
            del _NOTES[key]
    else:
        held[1][scheme] = info


def recall(var: BaseVar, scheme: str) -> Optional[Any]:
    """The note kept about ``var`` under ``scheme``, or ``None`` when there is none.

    Example::

        recall(bridge.nn.Linear(2, 3).w, "linen")   # None: nothing was noted
    """
    storage = storage_of(var)
    held = _NOTES.get(id(storage))
    if held is None or held[0]() is not storage:
        return None
    return held[1].get(scheme)


def forget(var: BaseVar, scheme: Optional[str] = None) -> None:
    """Drop the note of ``scheme`` about ``var`` (every note when ``scheme`` is None)."""
    storage = storage_of(var)
    held = _NOTES.get(id(storage))
    if held is None or held[0]() is not storage:
        return
    if scheme is None:
        del _NOTES[id(storage)]
    else:
        remember(var, scheme, None)
