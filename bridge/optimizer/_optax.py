"""Any ``optax.GradientTransformation`` as an object-style optimizer."""

from __future__ import annotations

from typing import Any, Sequence

import jax
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

    def __init__(self, vc: VarCollection, tx: optax.GradientTransformation):
        self.refs = ModuleList(TrainRef(v) for v in vc.subset(TrainVar))
        self.tx = tx
        leaves, self._treedef = jax.tree_util.tree_flatten(tx.init(self._params()))
        self.state = ModuleList(StateVar(leaf) for leaf in leaves)

    def _params(self) -> list[jax.Array]:
        return [ref.value for ref in self.refs]

    def __call__(self, grads: Sequence[jax.Array], **extra_args: Any) -> None:
        """Update the variables from ``grads`` (one per ``TrainVar``, in order).

        ``extra_args`` go to ``tx.update`` (for transformations that take them, such as
        ``optax.contrib`` line searches needing ``value``).
        """
        if len(grads) != len(self.refs):
            raise ValueError(f"Optax: got {len(grads)} gradients for {len(self.refs)} "
                             "trainable variables.")
        params = self._params()
        state = self._treedef.unflatten([s.value for s in self.state])
        updates, state = self.tx.update(list(grads), state, params, **extra_args)
        for ref, new in zip(self.refs, optax.apply_updates(params, updates)):
            ref.value = new
        for var, leaf in zip(self.state, jax.tree_util.tree_leaves(state)):
            var.value = leaf
