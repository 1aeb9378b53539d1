"""Loss functions, per example (no reduction over the batch), Objax style.

Example::

    from bridge.functional import loss
    xe = loss.cross_entropy_logits_sparse(model(x), y).mean()
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "cross_entropy_logits",
    "cross_entropy_logits_sparse",
    "l2",
    "mean_absolute_error",
    "mean_squared_error",
    "mean_squared_log_error",
    "sigmoid_cross_entropy_logits",
]

Axes = Optional[Sequence[int]]


def cross_entropy_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy against one-hot or soft labels.

    Args:
      logits: unnormalized scores, shape ``(..., K)``.
      labels: class probabilities, shape ``(..., K)`` (each row summing to 1).

    Returns:
      Shape ``(...)``: ``-sum(labels * log_softmax(logits), -1)``.

    Example::

        cross_entropy_logits(jnp.zeros((2, 4)), jax.nn.one_hot(jnp.array([0, 3]), 4))
        # [log 4, log 4]
    """
    return optax.softmax_cross_entropy(logits, labels)


def cross_entropy_logits_sparse(logits: jax.Array, labels: Union[jax.Array, int]) -> jax.Array:
    """Softmax cross-entropy against integer class labels.

    Args:
      logits: unnormalized scores, shape ``(..., K)``.
      labels: class indices in ``[0, K)``, shape ``(...)``, or one int for every row.

    Returns:
      Shape ``(...)``: ``logsumexp(logits, -1) - logits[..., labels]``.

    Example::

        cross_entropy_logits_sparse(jnp.zeros((2, 4)), jnp.array([0, 3]))   # [log 4, log 4]
    """
    labels = jnp.broadcast_to(jnp.asarray(labels), jnp.shape(logits)[:-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def sigmoid_cross_entropy_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy of independent sigmoid outputs, element-wise.

    Args:
      logits: unnormalized scores, any shape.
      labels: targets in ``[0, 1]``, same shape.

    Returns:
      Same shape: ``-labels * log σ(logits) - (1 - labels) * log(1 - σ(logits))``.

    Example::

        sigmoid_cross_entropy_logits(jnp.zeros(3), jnp.ones(3))   # [log 2, log 2, log 2]
    """
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def _mean_except(x: jax.Array, keep_axis: Axes) -> jax.Array:
    keep = {a % x.ndim for a in (keep_axis or ())}
    return jnp.mean(x, axis=tuple(a for a in range(x.ndim) if a not in keep))


def mean_squared_error(x: jax.Array, y: jax.Array, keep_axis: Axes = (0,)) -> jax.Array:
    """Mean of ``(x - y) ** 2`` over every axis not in ``keep_axis``.

    Args:
      x: an array.
      y: an array of the same (or a broadcastable) shape.
      keep_axis: axes not averaged (default: the batch axis); ``None`` gives a scalar.

    Returns:
      The shape of ``x - y`` restricted to ``keep_axis``: ``(N,)`` by default.

    Example::

        mean_squared_error(jnp.zeros((2, 3)), jnp.ones((2, 3)))   # [1., 1.]
    """
    return _mean_except(jnp.square(jnp.subtract(x, y)), keep_axis)


def mean_absolute_error(x: jax.Array, y: jax.Array, keep_axis: Axes = (0,)) -> jax.Array:
    """Mean of ``|x - y|`` over every axis not in ``keep_axis``.

    Arguments and result shape as in ``mean_squared_error``.

    Example::

        mean_absolute_error(jnp.zeros((2, 3)), -2 * jnp.ones((2, 3)))   # [2., 2.]
    """
    return _mean_except(jnp.abs(jnp.subtract(x, y)), keep_axis)


def mean_squared_log_error(y_true: jax.Array, y_pred: jax.Array,
                           keep_axis: Axes = (0,)) -> jax.Array:
    """Mean of ``(log1p(y_true) - log1p(y_pred)) ** 2`` over axes not in ``keep_axis``.

    Arguments and result shape as in ``mean_squared_error``; inputs must be ``> -1``.

    Example::

        mean_squared_log_error(jnp.zeros((1, 2)), (jnp.e - 1) * jnp.ones((1, 2)))   # [1.]
    """
    return mean_squared_error(jnp.log1p(y_true), jnp.log1p(y_pred), keep_axis)


def l2(x: jax.Array) -> jax.Array:
    """Half the squared L2 norm: ``0.5 * sum(x ** 2)``, a scalar (weight decay term).

    Example::

        l2(jnp.array([3., 4.]))   # 12.5
    """
    return 0.5 * jnp.sum(jnp.square(x))
