"""Optimizers for object-style variables, with Optax as the engine.

``Optax(vc, tx)`` wraps any ``optax.GradientTransformation`` (``opt(grads)``). Objax's
optimizers keep Objax's call convention, ``opt(lr, grads, ...)``, and update rules:
``SGD``, ``Momentum``, ``Adam``, ``LARS``; ``ExponentialMovingAverage`` and
``ExponentialMovingAverageModule`` average variables; ``scheduler`` holds Objax's
learning-rate schedules. ``scale_by_objax_adam`` and ``scale_by_objax_trust_ratio`` are the
two Objax rules Optax lacks, as Optax transformations usable in any ``optax.chain``.
"""

from bridge.optimizer import scheduler
from bridge.optimizer._ema import ExponentialMovingAverage, ExponentialMovingAverageModule
from bridge.optimizer._objax import LARS, SGD, Adam, Momentum
from bridge.optimizer._optax import Optax, StateLayout
from bridge.optimizer._transforms import (
    ObjaxAdamState,
    scale_by_objax_adam,
    scale_by_objax_trust_ratio,
)

__all__ = [
    "StateLayout",
    "LARS",
    "SGD",
    "Adam",
    "ExponentialMovingAverage",
    "ExponentialMovingAverageModule",
    "Momentum",
    "ObjaxAdamState",
    "Optax",
    "scale_by_objax_adam",
    "scale_by_objax_trust_ratio",
    "scheduler",
]
