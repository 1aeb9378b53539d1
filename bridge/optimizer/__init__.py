"""Optimizers for object-style variables, with Optax as the engine.

``Optax(vc, tx)`` wraps any ``optax.GradientTransformation`` (``opt(grads)``); ``SGD``,
``Momentum``, ``Adam`` and ``ExponentialMovingAverage`` follow Objax (``opt(lr, grads)``).
"""

from bridge.optimizer._objax import (
    SGD,
    Adam,
    ExponentialMovingAverage,
    Momentum,
    scale_by_objax_adam,
)
from bridge.optimizer._optax import Optax

__all__ = ["SGD", "Adam", "ExponentialMovingAverage", "Momentum", "Optax",
           "scale_by_objax_adam"]
