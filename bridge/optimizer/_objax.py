"""Objax's optimizers, called ``opt(lr, grads, ...)``, as thin layers over Optax.

Each optimizer is one Optax transformation built per call from the learning rate and the
hyper-parameters, so that Objax's per-call overrides (``Momentum``'s ``momentum``,
``Adam``'s ``beta1`` and ``beta2``) are ordinary arguments: traced under ``bridge.Jit`` when
given, and the constructor's constants (nothing extra in the compiled step) when not.

* ``SGD``: ``p ← p - lr·g`` (``optax.sgd``);
* ``Momentum``: ``m ← g + μ·m``; ``p ← p - lr·m``, or ``p ← p - lr·(g + μ·m)`` with
  Nesterov (``optax.sgd`` with momentum, i.e. ``optax.trace``);
* ``Adam``: Objax's Adam (``scale_by_objax_adam``: ``eps`` inside the square root);
* ``LARS``: ``m ← μ·m + lr·r·(g + wd·p)``; ``p ← p - m``, with Objax's layer-wise trust ratio
  ``r`` (``scale_by_objax_trust_ratio``, then ``optax.trace``).

The state variables carry Objax's names and dtypes (``train_vars``, ``m``, ``v``, ``step``
as ``uint32``), so an Objax checkpoint that includes optimizer state restores into them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from bridge.optimizer._optax import StateLayout, checked_gradients, trainable
from bridge.optimizer._transforms import scale_by_objax_adam, scale_by_objax_trust_ratio
from bridge.state import Module, ModuleList, StateVar, TrainRef, VarCollection
from bridge.state._access import commit
from bridge.state._repr import arguments_repr, class_path

__all__ = ["SGD", "Momentum", "Adam", "LARS"]


def _first(stacked: jax.Array) -> jax.Array:
    """Reduction of a step counter under ``Vectorize``: every example saw the same step."""
    return stacked[0]


class _ObjaxOptimizer(Module):
    """An optimizer of ``vc``'s ``TrainVar``s driven by ``self._transform(lr, **hyper)``.

    Subclasses create their state ``StateVar``s (``_state_vars()`` lists them in the
    order of the leaves of the transformation's state) and call ``_finish_init()``.
    """

    def __init__(self, vc: VarCollection):
        variables, self._names = trainable(vc)
        self.train_vars = ModuleList(TrainRef(v) for v in variables)

    def _zeros(self) -> ModuleList:
        return ModuleList(StateVar(jnp.zeros_like(r.value)) for r in self.train_vars)

    def _transform(self, lr: Any, **hyper: Any) -> optax.GradientTransformation:
        raise NotImplementedError

    def _state_vars(self) -> list[StateVar]:
        return []

    def state_layout(self) -> StateLayout:
        """The optimizer as optax sees it (see ``bridge.optimizer.StateLayout``); the
        transformation is built with a learning rate of 1 (its structure does not depend
        on it)."""
        return StateLayout(list(self.train_vars), self._state_vars(), self._transform(1.0),
                           self._treedef)

    def _finish_init(self) -> None:
        state = self._transform(1.0).init([r.value for r in self.train_vars])
        self._treedef = jax.tree_util.tree_structure(state)
        # The StateVars must hold exactly what the transformation's init gives.
        commit(self._state_vars(), jax.tree_util.tree_leaves(state), owner=type(self).__name__)

    def _step(self, lr: Any, grads: Sequence[Any], **hyper: Any) -> None:
        """One update; ``hyper`` entries that are ``None`` keep the constructor's value."""
        params = [r.value for r in self.train_vars]
        grads = checked_gradients(type(self).__name__, self._names, params, grads)
        state_vars = self._state_vars()
        tx = self._transform(lr, **{k: v for k, v in hyper.items() if v is not None})
        state = self._treedef.unflatten([v.value for v in state_vars])
        updates, new_state = tx.update(grads, state, params)
        commit(list(self.train_vars) + state_vars,
               optax.apply_updates(params, updates) + jax.tree_util.tree_leaves(new_state),
               owner=type(self).__name__)


class SGD(_ObjaxOptimizer):
    """Stochastic gradient descent: ``p ← p - lr·g``.

    Args:
      vc: the variables; its ``TrainVar``s are updated, in ``vc.subset(TrainVar)`` order.

    Example::

        opt = bridge.optimizer.SGD(model.vars())
        g, v = gv(x, y)
        opt(0.1, g)
    """

    def __init__(self, vc: VarCollection):
        super().__init__(vc)
        self._finish_init()

    def _transform(self, lr: Any) -> optax.GradientTransformation:
        return optax.sgd(lr)

    def __call__(self, lr: Any, grads: Sequence[Any]) -> None:
        """Descend: ``p ← p - lr·g`` for every trainable variable ``p``.

        Raises:
          ValueError: wrong number, shapes or dtypes of gradients (nothing is updated).
        """
        self._step(lr, grads)

    def __repr__(self) -> str:
        return f"{class_path(self)}()"


class Momentum(_ObjaxOptimizer):
    """SGD with momentum: ``m ← g + μ·m``, then ``p ← p - lr·m`` (Nesterov:
    ``p ← p - lr·(g + μ·m)``).

    Args:
      vc: the variables to optimize.
      momentum: ``μ``, the decay of the accumulated gradient.
      nesterov: use Nesterov's look-ahead step.

    State: ``m``, one accumulator per trainable variable.

    Example::

        opt = bridge.optimizer.Momentum(model.vars(), momentum=0.9, nesterov=True)
        opt(0.1, grads)
        opt(0.1, grads, momentum=0.5)      # this call only
    """

    def __init__(self, vc: VarCollection, momentum: float = 0.9, nesterov: bool = False):
        super().__init__(vc)
        self.momentum, self.nesterov = momentum, nesterov
        self.m = self._zeros()
        self._finish_init()

    def _transform(self, lr: Any, momentum: Any = None) -> optax.GradientTransformation:
        momentum = self.momentum if momentum is None else momentum
        return optax.sgd(lr, momentum=momentum, nesterov=self.nesterov)

    def _state_vars(self) -> list[StateVar]:
        return list(self.m)

    def __call__(self, lr: Any, grads: Sequence[Any], momentum: Optional[Any] = None) -> None:
        """One step with learning rate ``lr``.

        Args:
          lr: the learning rate (a number or a traced scalar).
          grads: one gradient per trainable variable, in order.
          momentum: replaces the constructor's ``momentum`` for this call only (a number
            or a traced scalar); ``None`` keeps it.

        Raises:
          ValueError: wrong number, shapes or dtypes of gradients (nothing is updated).
        """
        self._step(lr, grads, momentum=momentum)

    def __repr__(self) -> str:
        args = arguments_repr(momentum=self.momentum, nesterov=self.nesterov)
        return f"{class_path(self)}({args})"


class Adam(_ObjaxOptimizer):
    """Adam, with Objax's update rule (``eps`` inside the square root)::

        m ← m + (1 - β1)(g - m);  v ← v + (1 - β2)(g² - v)
        p ← p - lr · sqrt(1 - β2ᵗ) / (1 - β1ᵗ) · m / sqrt(v + eps)

    Args:
      vc: the variables to optimize.
      beta1: the first moment's decay rate ``β1``.
      beta2: the second moment's decay rate ``β2``.
      eps: added to ``v`` under the square root.

    State: ``step`` (``uint32``, the ``t`` above), ``m`` and ``v`` per trainable variable.

    Example::

        opt = bridge.optimizer.Adam(model.vars())
        opt(1e-3, grads)
        opt(1e-3, grads, 0.5, 0.9)         # beta1=0.5, beta2=0.9 for this call only
    """

    def __init__(self, vc: VarCollection, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.step = StateVar(jnp.zeros([], jnp.uint32), reduce=_first)  # first, as in Objax
        super().__init__(vc)
        self.m = self._zeros()
        self.v = self._zeros()
        self._finish_init()

    def _transform(self, lr: Any, beta1: Any = None,
                   beta2: Any = None) -> optax.GradientTransformation:
        return optax.chain(
            scale_by_objax_adam(b1=self.beta1 if beta1 is None else beta1,
                                b2=self.beta2 if beta2 is None else beta2, eps=self.eps),
            optax.scale_by_learning_rate(lr))

    def _state_vars(self) -> list[StateVar]:
        return [self.step, *self.m, *self.v]

    def __call__(self, lr: Any, grads: Sequence[Any], beta1: Optional[Any] = None,
                 beta2: Optional[Any] = None) -> None:
        """One step with learning rate ``lr``.

        Args:
          lr: the learning rate (a number or a traced scalar).
          grads: one gradient per trainable variable, in order.
          beta1: replaces the constructor's value for this call only (a number or a
            traced scalar); ``None`` keeps it.
          beta2: likewise.

        Raises:
          ValueError: wrong number, shapes or dtypes of gradients (nothing is updated).
        """
        self._step(lr, grads, beta1=beta1, beta2=beta2)

    def __repr__(self) -> str:
        args = arguments_repr(beta1=self.beta1, beta2=self.beta2, eps=self.eps)
        return f"{class_path(self)}({args})"


class LARS(_ObjaxOptimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017, https://arxiv.org/abs/1708.03888)
    with Objax's update rule. For each trainable variable ``p`` with gradient ``g``::

        r = tc · ‖p‖ / (‖g‖ + wd·‖p‖ + eps)      (max(1, r) if ‖p‖ or ‖g‖ is 0)
        m ← μ·m + lr·r·(g + wd·p)
        p ← p - m

    Args:
      vc: the variables to optimize.
      momentum: ``μ``.
      weight_decay: ``wd``, the L2 weight decay folded into the update.
      tc: the trust coefficient (below 1).
      eps: keeps the trust ratio finite.

    State: ``m``, one accumulator per trainable variable.

    Example::

        opt = bridge.optimizer.LARS(model.vars())
        opt(lr0 * (1 - epoch / epochs) ** 2, grads)   # the paper's polynomial decay
    """

    def __init__(self, vc: VarCollection, momentum: float = 0.9, weight_decay: float = 1e-4,
                 tc: float = 1e-3, eps: float = 1e-5):
        super().__init__(vc)
        self.momentum, self.weight_decay, self.tc, self.eps = momentum, weight_decay, tc, eps
        self.m = self._zeros()
        self._finish_init()

    def _transform(self, lr: Any) -> optax.GradientTransformation:
        return optax.chain(
            scale_by_objax_trust_ratio(self.weight_decay, self.tc, self.eps),
            optax.scale(lr),
            optax.trace(decay=self.momentum),
            optax.scale(-1.0))

    def _state_vars(self) -> list[StateVar]:
        return list(self.m)

    def __call__(self, lr: Any, grads: Sequence[Any]) -> None:
        """One step with learning rate ``lr`` (a number or a traced scalar).

        Raises:
          ValueError: wrong number, shapes or dtypes of gradients (nothing is updated).
        """
        self._step(lr, grads)

    def __repr__(self) -> str:
        args = arguments_repr(momentum=self.momentum, weight_decay=self.weight_decay,
                              tc=self.tc, eps=self.eps)
        return f"{class_path(self)}({args})"
