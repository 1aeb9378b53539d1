"""Meta-learning losses: one inner gradient step, then the outer loss (MAML)."""

from __future__ import annotations

from typing import Any, Callable

import jax

from bridge.pure._gradients import grad, split_loss

__all__ = ["nested_loss", "pairwise_nested_loss", "sgd_step"]


def sgd_step(loss_fn: Callable, mu: float, first_order: bool = False) -> Callable:
    """``(params, x, y) -> params - mu * grad(loss_fn)(params, x, y)``.

    ``loss_fn(params, x, y)`` returns a scalar (or a tuple whose first entry is the loss).
    With ``first_order`` the inner gradient is a constant for outer differentiation
    (first-order MAML).
    """
    inner = grad(lambda p, x, y: split_loss(loss_fn(p, x, y))[0])

    def step(params: Any, x: Any, y: Any) -> Any:
        g = inner(params, x, y)
        if first_order:
            g = jax.lax.stop_gradient(g)
        return jax.tree_util.tree_map(lambda p, d: p - mu * d, params, g)

    return step


def nested_loss(loss_fn: Callable, mu: float, first_order: bool = False) -> Callable:
    """The nested (MAML) loss ``L(x1, y1; θ - μ ∇L(x2, y2; θ))``.

    Args:
      loss_fn: ``loss_fn(params, x, y)`` returns a scalar loss (or a tuple whose first
        entry is the loss).
      mu: the inner learning rate.
      first_order: drop second-order terms (the inner gradient is treated as constant).

    Returns:
      ``(params, x1, y1, x2, y2) -> loss``: one SGD step on ``(x2, y2)`` (support), then
      the loss on ``(x1, y1)`` (query) at the adapted parameters.

    Example::

        meta = bridge.pure.nested_loss(mse, mu=0.01)
        meta_grads = jax.grad(meta)(params, xq, yq, xs, ys)
    """
    step = sgd_step(loss_fn, mu, first_order)

    def loss(params: Any, x1: Any, y1: Any, x2: Any, y2: Any) -> jax.Array:
        return split_loss(loss_fn(step(params, x2, y2), x1, y1))[0]

    return loss


def pairwise_nested_loss(loss_fn: Callable, mu: float, first_order: bool = False) -> Callable:
    """The batched MAML loss: ``mean_i nested_loss(θ, X1[i], Y1[i], X2[i], Y2[i])``.

    ``X1, Y1, X2, Y2`` carry a leading task axis; each task adapts the shared parameters
    on its own support set ``(X2[i], Y2[i])`` and is scored on its query set.

    Returns:
      ``(params, X1, Y1, X2, Y2) -> scalar``.
    """
    per_task = jax.vmap(nested_loss(loss_fn, mu, first_order), in_axes=(None, 0, 0, 0, 0))

    def loss(params: Any, X1: Any, Y1: Any, X2: Any, Y2: Any) -> jax.Array:
        return per_task(params, X1, Y1, X2, Y2).mean()

    return loss
