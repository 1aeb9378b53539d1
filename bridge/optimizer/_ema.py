"""Exponential moving averages of variables (Objax's ``ExponentialMovingAverage`` and
``ExponentialMovingAverageModule``), computed with ``optax.ema``."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from bridge.state import (
    Module,
    ModuleList,
    RandomState,
    StateVar,
    TrainRef,
    TrainVar,
    VarCollection,
)
from bridge.state._access import commit, storage_of
from bridge.state._collection import as_collection
from bridge.state._repr import arguments_repr, class_path

__all__ = ["ExponentialMovingAverage", "ExponentialMovingAverageModule"]


def _first(stacked: jax.Array) -> jax.Array:
    """Reduction of the step counter under ``Vectorize``: every example saw the same step."""
    return stacked[0]


class ExponentialMovingAverage(Module):
    """Exponential moving averages of variables: ``avg ← avg + (1 - momentum)(value - avg)``.

    Every variable of ``vc`` except ``RandomState``s is averaged (a ``TrainRef`` counts as
    its target, and each variable once). Averages start at zero; with ``debias``, they
    are divided by ``1 - (1 - eps)·momentumᵗ`` when used, ``t`` being the number of
    updates.

    Args:
      vc: the variables to average.
      momentum: the decay of the average.
      debias: correct the bias towards the initial zeros.
      eps: keeps the debiasing factor finite before the first update.

    State: ``step`` (``uint32``), ``refs`` (the averaged variables: non-trainable ones first,
    then ``TrainRef``s to the trainable ones) and ``m`` (their averages), as in Objax.

    Example::

        ema = bridge.optimizer.ExponentialMovingAverage(model.vars(), debias=True)
        ema()                                  # after each training step
        eval_fn = ema.replace_vars(model)      # runs model with averaged variables
    """

    def __init__(self, vc: VarCollection, momentum: float = 0.999, debias: bool = False,
                 eps: float = 1e-6):
        self.momentum, self.debias, self.eps = momentum, debias, eps
        self.step = StateVar(jnp.zeros([], jnp.uint32), reduce=_first)
        tracked = [v for v in as_collection(vc, "ExponentialMovingAverage: vc")
                   if not isinstance(v, RandomState)]
        trainable = [storage_of(v) for v in tracked if isinstance(storage_of(v), TrainVar)]
        others = [v for v in tracked if not isinstance(storage_of(v), TrainVar)]
        self.refs = ModuleList(others + [TrainRef(v) for v in trainable])
        self.m = ModuleList(StateVar(jnp.zeros_like(r.value)) for r in self.refs)

    def __call__(self) -> None:
        """Fold the variables' current values into the averages."""
        state = optax.EmaState(count=self.step.value, ema=[m.value for m in self.m])
        _, state = optax.ema(self.momentum, debias=False).update(
            [r.value for r in self.refs], state)
        commit([self.step, *self.m],
               [state.count] + [a.astype(m.value.dtype) for m, a in zip(self.m, state.ema)],
               owner=type(self).__name__)

    def refs_and_values(self) -> tuple[VarCollection, list[jax.Array]]:
        """The averaged variables and their averages (debiased if requested).

        Returns:
          ``(refs, values)``: a ``VarCollection`` of the averaged variables and the list of
          their averages in the same order, ready for ``refs.assign(values)``.
        """
        values = [m.value for m in self.m]
        if self.debias:
            correction = 1 / (1 - (1 - self.eps) * self.momentum ** self.step.value)
            values = [(v * correction).astype(v.dtype) for v in values]
        return self.refs.vars(), values

    def replace_vars(self, f: Callable) -> Callable:
        """``f``, run with the variables temporarily set to their averages.

        Returns:
          A function taking ``f``'s arguments; the variables get their own values back
          when it returns or raises.
        """

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
        args = arguments_repr(momentum=self.momentum, debias=self.debias, eps=self.eps)
        return f"{class_path(self)}({args})"


class ExponentialMovingAverageModule(Module):
    """A module that runs another module with the moving averages of its variables.

    Args:
      module: the module to average; its ``vars()`` are averaged (see
        ``ExponentialMovingAverage``).
      momentum: as for ``ExponentialMovingAverage``.
      debias: as for ``ExponentialMovingAverage``.
      eps: as for ``ExponentialMovingAverage``.

    Calling it calls ``module`` with averaged variables; ``update_ema()`` folds the
    module's current values into the averages. Its ``vars()`` are the module's followed by
    the averages' state.

    Example::

        ema_model = bridge.optimizer.ExponentialMovingAverageModule(model, momentum=0.999)
        ...
        train_op(x, y)
        ema_model.update_ema()
        predictions = ema_model(x_test, training=False)
    """

    def __init__(self, module: Module, momentum: float = 0.999, debias: bool = False,
                 eps: float = 1e-6):
        self.__wrapped__ = module
        self.ema = ExponentialMovingAverage(module.vars(), momentum=momentum, debias=debias,
                                            eps=eps)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)`` with its variables set to their averages."""
        return self.ema.replace_vars(self.__wrapped__)(*args, **kwargs)

    def update_ema(self) -> None:
        """Fold the module's current variable values into the averages."""
        self.ema()

    def __repr__(self) -> str:
        args = arguments_repr(momentum=self.ema.momentum, debias=self.ema.debias,
                              eps=self.ema.eps)
        return f"{class_path(self)}({args})"
