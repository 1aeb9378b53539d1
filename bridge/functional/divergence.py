"""Divergences between probability distributions (Objax's ``functional.divergence``).

Example::

    from bridge.functional import divergence
    divergence.kl(jnp.array([0.5, 0.5]), jnp.array([0.9, 0.1]))   # ≈ 0.511
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["kl"]


def kl(p: jax.Array, q: jax.Array, eps: float = 2 ** -17) -> jax.Array:
    """Kullback-Leibler divergence ``KL(p || q) = sum(p * (log(p + eps) - log(q + eps)))``.

    ``eps`` keeps the logarithms finite where a probability is 0.

    Args:
      p: probabilities over the last axis, shape ``(..., K)``.
      q: probabilities of the same shape.
      eps: added to both distributions inside the logarithms.

    Returns:
      Shape ``(...)``: one divergence per distribution (a scalar for 1-D inputs).

    Example::

        kl(jnp.array([0.5, 0.5]), jnp.array([0.5, 0.5]))   # 0.
    """
    return jnp.sum(p * (jnp.log(p + eps) - jnp.log(q + eps)), axis=-1)
