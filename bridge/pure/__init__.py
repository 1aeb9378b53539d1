"""The pure core: every gradient semantic, once, as functions over pytrees.

Nothing here needs an object: a Flax or Haiku user can call these on their params. The
object facades (``bridge.GradValues``, ``bridge.grad``, ``bridge.Jit``, ...) gather variable
values, call a function from here, and write results back. ``functionalize`` is the bridge
between the two worlds: it turns object code into a pure function of its variables'
values.

Return format shared by ``grad``, ``vector_grad``, ``jacobian``, ``hessian``: ``grads``;
with ``return_value`` ``(grads, value)``; with ``has_aux`` ``(grads, aux)``; with both
``(grads, value, aux)``.
"""

from bridge.pure._estimators import straight_through
from bridge.pure._functionalize import changed_entries, functionalize
from bridge.pure._gradients import (
    grad,
    grad_values,
    package,
    per_example_grad_values,
    split_loss,
    vector_grad,
)
from bridge.pure._jacobians import hessian, hvp, jacobian
from bridge.pure._meta import nested_loss, pairwise_nested_loss, sgd_step
from bridge.pure._privacy import clipped_grad

__all__ = [
    "changed_entries",
    "clipped_grad",
    "functionalize",
    "grad",
    "grad_values",
    "hessian",
    "hvp",
    "jacobian",
    "nested_loss",
    "package",
    "pairwise_nested_loss",
    "per_example_grad_values",
    "sgd_step",
    "split_loss",
    "straight_through",
    "vector_grad",
]
