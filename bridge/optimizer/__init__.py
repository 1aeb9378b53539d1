"""Optimizers for object-style variables, with Optax as the engine."""

from bridge.optimizer._optax import Optax

__all__ = ["Optax"]
