"""Any ``optax.GradientTransformation`` as an object-style optimizer, and the gradient
check every optimizer step starts with."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from bridge.state import Module, ModuleList, StateVar, TrainRef, TrainVar, VarCollection
from bridge.state._access import commit
from bridge.state._collection import as_collection

__all__ = ["Optax", "checked_gradients", "trainable"]


def trainable(vc: VarCollection) -> tuple[list[TrainVar], list[str]]:
    """The ``TrainVar``s of ``vc`` (each once, in ``vc.subset(TrainVar)`` order: the order
    ``GradValues(loss, vc)`` returns gradients in) and their names."""
    train = as_collection(vc, "optimizer: vc").subset(TrainVar)
    names = train.names()
    variables = list(train)
    return variables, [names[id(v)] for v in variables]


def checked_gradients(owner: str, names: Sequence[str], params: Sequence[jax.Array],
                      grads: Sequence[Any]) -> list[jax.Array]:
    """``grads`` as arrays in the parameters' dtypes, after checking all of them.

    An optimizer step calls this before it computes anything, so a bad gradient list
    changes no variable: the error lists every gradient at fault, by variable name.

    Raises:
      ValueError: the number of gradients differs from the number of variables, or some
        gradient's shape differs from its variable's, or is not numeric.
    """
    grads = list(grads)
    if len(grads) != len(params):
        raise ValueError(f"{owner}: got {len(grads)} gradients for {len(params)} trainable "
                         f"variables ({', '.join(names) or 'none'}); nothing was updated.")
    problems, out = [], []
    for name, p, g in zip(names, params, grads):
        g = jnp.asarray(g)
        if g.shape != p.shape:
            problems.append(f"  {name}: gradient of shape {g.shape} for a variable of shape "
                            f"{p.shape}")
        elif not jnp.issubdtype(g.dtype, jnp.number):
            problems.append(f"  {name}: gradient of dtype {g.dtype} is not numeric")
        else:
            # Gradients in the variable's dtype keep every optimizer state in its dtype.
            out.append(g.astype(p.dtype))
    if problems:
        raise ValueError(f"{owner}: nothing was updated because:\n" + "\n".join(problems))
    return out


class StateLayout(NamedTuple):
    """An optimizer's variables as optax sees them.

    Attributes:
      params: the parameters' variables (``TrainRef``s), in gradient order.
      state: the optimizer's state variables, in the order of the leaves of optax's state.
      transform: an ``optax.GradientTransformation`` whose ``init(params)`` has the state's
        structure (for ``optax.tree_map_params``).
      treedef: that structure: ``treedef.unflatten([v.value for v in state])`` is the state.
    """

    params: list
    state: list
    transform: optax.GradientTransformation
    treedef: Any


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
        variables, self._names = trainable(vc)
        self.refs = ModuleList(TrainRef(v) for v in variables)
        self.tx = tx
        leaves, self._treedef = jax.tree_util.tree_flatten(tx.init(self._params()))
        self.state = ModuleList(StateVar(leaf) for leaf in leaves)

    def _params(self) -> list[jax.Array]:
        return [ref.value for ref in self.refs]

    def state_layout(self) -> StateLayout:
        """The optimizer as optax sees it (see ``StateLayout``); for tools that must know
        which state stands for which parameter, such as ``bridge.sharding.follow``."""
        return StateLayout(list(self.refs), list(self.state), self.tx, self._treedef)

    def __call__(self, grads: Sequence[jax.Array], *extra: Any, **extra_args: Any) -> None:
        """Update the variables from ``grads`` (one per ``TrainVar``, in order).

        ``extra_args`` go to ``tx.update`` (for transformations that take them, such as
        ``optax.contrib`` line searches needing ``value``).

        Raises:
          ValueError: wrong number, shapes or dtypes of gradients (nothing is updated).
          TypeError: called Objax-style, ``opt(lr, grads)``.
        """
        if extra:
            raise TypeError(
                f"{type(self).__name__} is called as opt(grads): the learning rate is part of "
                "the optax transformation (optax.adam(1e-3)). To change it during training, "
                "build the transformation with optax.inject_hyperparams, or use an Objax-style "
                "optimizer (bridge.optimizer.Adam), which is called opt(lr, grads).")
        params = self._params()
        grads = checked_gradients(type(self).__name__, self._names, params, grads)
        state = self._treedef.unflatten([s.value for s in self.state])
        updates, new_state = self.tx.update(grads, state, params, **extra_args)
        # One commit: a new state that does not fit (or an undeclared variable under a
        # transformation) leaves both the parameters and the state as they were.
        commit(list(self.refs) + list(self.state),
               optax.apply_updates(params, updates) + jax.tree_util.tree_leaves(new_state),
               owner=type(self).__name__)

