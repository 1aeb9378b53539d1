"""Any ``optax.GradientTransformation`` as an object-style optimizer."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from bridge.state import Module, ModuleList, StateVar, TrainRef, TrainVar, VarCollection

__all__ = ["Optax"]


class Optax(Module):
    """Apply an ``optax.GradientTransformation`` to the ``TrainVar``s of a collection.

    The optimizer state lives in ``StateVar``s (one per leaf of optax's state), so it is
    part of ``opt.vars()`` and can be jitted, checkpointed and restored like any variable.

    Args:
      vc: the variables to optimize; gradients are given in ``vc.subset(TrainVar)`` order,
        which is the order ``GradValues(loss, vc)`` returns them in.
      tx: the transformation, e.g. ``optax.adam(1e-3)`` or an ``optax.chain(...)``.

    Example::

        opt = bridge.optimizer.Optax(model.vars(), optax.adam(1e-3))
        g, v = gv(x, y)
        opt(g)                       # params and optimizer state updated in place
    """

    def __init__(self, vc: VarCollection, tx: optax.GradientTransformation,
                 hyperparam_names: Optional[dict[str, str]] = None):
        self.refs = ModuleList(TrainRef(v) for v in vc.subset(TrainVar))
        self.tx = tx
        self._hyperparam_names = hyperparam_names or {}
        leaves, self._treedef = jax.tree_util.tree_flatten(tx.init(self._params()))
        self.state = ModuleList(StateVar(leaf) for leaf in leaves)

    def _params(self) -> list[jax.Array]:
        return [ref.value for ref in self.refs]

    def _step(self, grads: Sequence[jax.Array], scale: Optional[float] = None,
              hyperparams: Optional[dict[str, float]] = None, **extra_args: Any) -> None:
        if len(grads) != len(self.refs):
            raise ValueError(f"{type(self).__name__}: got {len(grads)} gradients for "
                             f"{len(self.refs)} trainable variables.")
        params = self._params()
        state = self._treedef.unflatten([s.value for s in self.state])
        if hyperparams:  # per-call values for optax.inject_hyperparams
            injected = dict(state.hyperparams)
            for name, value in hyperparams.items():
                key = self._hyperparam_names.get(name, name)
                injected[key] = jnp.asarray(value, jnp.result_type(injected[key]))
            state = state._replace(hyperparams=injected)
        updates, new_state = self.tx.update(list(grads), state, params, **extra_args)
        if scale is not None:
            updates = jax.tree_util.tree_map(lambda u: scale * u, updates)
        for ref, new in zip(self.refs, optax.apply_updates(params, updates)):
            ref.value = new
        if hyperparams:  # an override lasts one call
            new_state = new_state._replace(hyperparams=self._treedef.unflatten(
                [s.value for s in self.state]).hyperparams)
        for var, leaf in zip(self.state, jax.tree_util.tree_leaves(new_state)):
            var.value = leaf

    def __call__(self, grads: Sequence[jax.Array], **extra_args: Any) -> None:
        """Update the variables from ``grads`` (one per ``TrainVar``, in order).

        ``extra_args`` go to ``tx.update`` (for transformations that take them, such as
        ``optax.contrib`` line searches needing ``value``).
        """
        self._step(grads, **extra_args)
