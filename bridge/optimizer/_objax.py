"""Objax's optimizers (``opt(lr, grads)``) as thin layers over Optax transformations.

Each keeps Objax's update rule exactly:

* ``SGD``: ``p -= lr * g``;
* ``Momentum``: ``m = g + μ m``; ``p -= lr * m`` (Nesterov: ``p -= lr * (g + μ m)``), which is
  ``optax.trace``;
* ``Adam``: ``m += (1-β1)(g-m)``, ``v += (1-β2)(g²-v)``,
  ``p -= lr · sqrt(1-β2ᵗ)/(1-β1ᵗ) · m / sqrt(v + ε)`` (ε inside the square root, unlike
  ``optax.adam``), written as the Optax transformation ``scale_by_objax_adam``;
* ``ExponentialMovingAverage``: ``optax.ema`` over every variable, with Objax's debiasing.

Hyper-parameters that Objax lets you override per call (``momentum``, ``beta1``, ``beta2``)
are injected with ``optax.inject_hyperparams`` and live in the optimizer state.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from bridge.optimizer._optax import Optax
from bridge.state import (
    Module,
    ModuleList,
    RandomState,
    StateVar,
    TrainRef,
    TrainVar,
    VarCollection,
)

__all__ = ["SGD", "Momentum", "Adam", "ExponentialMovingAverage", "scale_by_objax_adam"]


class ObjaxAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def scale_by_objax_adam(b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8) -> optax.GradientTransformation:
    """Objax's Adam direction: ``sqrt(1-b2ᵗ)/(1-b1ᵗ) · m / sqrt(v + eps)``.

    Differs from ``optax.scale_by_adam`` only in where ``eps`` enters (inside the square
    root, before bias correction). Negate and scale by the learning rate to descend.
    """

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return ObjaxAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree_util.tree_map(lambda m, g: m + (1 - b1) * (g - m), state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: v + (1 - b2) * (g * g - v), state.nu, updates)
        t = count.astype(jnp.float32)
        scale = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        direction = jax.tree_util.tree_map(lambda m, v: scale * m * jax.lax.rsqrt(v + eps), mu, nu)
        return direction, ObjaxAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


class _LearningRateOptimizer(Optax):
    """An ``Optax`` optimizer called Objax's way: ``opt(lr, grads, **overrides)``."""

    def __call__(self, lr: float, grads: Sequence[jax.Array],  # type: ignore[override]
                 **overrides: Optional[float]) -> None:
        """Descend by ``lr`` times the transformation's direction for ``grads``.

        ``overrides`` (e.g. ``momentum=``, ``beta1=``) replace hyper-parameters for this
        call; ``None`` keeps the constructor's value.
        """
        self._step(grads, scale=-lr, hyperparams={k: v for k, v in overrides.items()
                                                  if v is not None})


class SGD(_LearningRateOptimizer):
    """Stochastic gradient descent: ``p -= lr * g``.

    Example::

        opt = bridge.optimizer.SGD(model.vars())
        opt(0.1, grads)
    """

    def __init__(self, vc: VarCollection):
        super().__init__(vc, optax.identity())

    def __repr__(self) -> str:
        return "SGD()"


class Momentum(_LearningRateOptimizer):
    """SGD with momentum ``μ``: ``m = g + μ m``, ``p -= lr * m`` (or Nesterov's variant).

    Example::

        opt = bridge.optimizer.Momentum(model.vars(), momentum=0.9, nesterov=True)
        opt(0.1, grads)                    # or opt(0.1, grads, momentum=0.5)
    """

    def __init__(self, vc: VarCollection, momentum: float = 0.9, nesterov: bool = False):
        self.momentum, self.nesterov = momentum, nesterov
        tx = optax.inject_hyperparams(optax.trace, static_args=("nesterov",))(
            decay=momentum, nesterov=nesterov)
        super().__init__(vc, tx, hyperparam_names={"momentum": "decay"})

    def __repr__(self) -> str:
        return f"Momentum(momentum={self.momentum}, nesterov={self.nesterov})"


class Adam(_LearningRateOptimizer):
    """Adam with Objax's update rule (see ``scale_by_objax_adam``).

    Example::

        opt = bridge.optimizer.Adam(model.vars())
        opt(1e-3, grads)                   # or opt(1e-3, grads, beta1=0.5)
    """

    def __init__(self, vc: VarCollection, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        tx = optax.inject_hyperparams(scale_by_objax_adam)(b1=beta1, b2=beta2, eps=eps)
        super().__init__(vc, tx, hyperparam_names={"beta1": "b1", "beta2": "b2"})

    def __repr__(self) -> str:
        return f"Adam(beta1={self.beta1}, beta2={self.beta2}, eps={self.eps})"


class ExponentialMovingAverage(Module):
    """Exponential moving averages of variables: ``avg += (1 - momentum) (value - avg)``.

    Every variable of ``vc`` except ``RandomState``s is averaged; averages start at zero
    and, with ``debias``, are divided by ``1 - (1 - eps) momentum^step`` when used.

    Example::

        ema = bridge.optimizer.ExponentialMovingAverage(model.vars(), debias=True)
        ema()                                  # after each training step
        eval_fn = ema.replace_vars(model)      # runs model with averaged variables
    """

    def __init__(self, vc: VarCollection, momentum: float = 0.999, debias: bool = False,
                 eps: float = 1e-6):
        self.momentum, self.debias, self.eps = momentum, debias, eps
        tracked = [v for v in vc if not isinstance(v, RandomState)]
        trainable = [v._storage() for v in tracked if isinstance(v._storage(), TrainVar)]
        others = [v for v in tracked if not isinstance(v._storage(), TrainVar)]
        self.refs = ModuleList(others + [TrainRef(v) for v in trainable])
        self._tx = optax.ema(momentum, debias=False)
        state = self._tx.init([r.value for r in self.refs])
        self.step = StateVar(state.count)
        self.m = ModuleList(StateVar(x) for x in state.ema)

    def __call__(self) -> None:
        """Fold the variables' current values into the averages."""
        state = optax.EmaState(count=self.step.value, ema=[m.value for m in self.m])
        _, state = self._tx.update([r.value for r in self.refs], state)
        self.step.value = state.count
        for m, avg in zip(self.m, state.ema):
            m.value = avg

    def refs_and_values(self) -> tuple[VarCollection, list[jax.Array]]:
        """The averaged variables and their (debiased if requested) averages."""
        values = [m.value for m in self.m]
        if self.debias:
            correction = 1 / (1 - (1 - self.eps) * self.momentum ** self.step.value)
            values = [v * correction.astype(v.dtype) for v in values]
        return self.refs.vars(), values

    def replace_vars(self, f: Callable) -> Callable:
        """``f`` run with the variables temporarily set to their averages."""

        def with_averages(*args: Any, **kwargs: Any) -> Any:
            refs, averages = self.refs_and_values()
            originals = refs.tensors()
            refs.assign(averages)
            try:
                return f(*args, **kwargs)
            finally:
                refs.assign(originals)

        return with_averages

    def __repr__(self) -> str:
        return (f"ExponentialMovingAverage(momentum={self.momentum}, debias={self.debias}, "
                f"eps={self.eps})")
