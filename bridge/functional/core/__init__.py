"""Objax's ``functional.core`` path: the activations, operations and pooling of
``bridge.functional``, by sub-module (``activation``, ``ops``, ``pooling``).

Objax code such as ``objax.functional.core.upsample_2d(...)`` or
``objax.functional.core.ops.interpolate(...)`` runs unchanged; the functions are the same
objects as ``bridge.functional``'s.
"""

from bridge.functional.core import activation, ops, pooling
from bridge.functional.core.activation import *  # noqa: F403
from bridge.functional.core.ops import *  # noqa: F403
from bridge.functional.core.pooling import *  # noqa: F403

__all__ = ["activation", "ops", "pooling", *activation.__all__, *ops.__all__,
           *pooling.__all__]
