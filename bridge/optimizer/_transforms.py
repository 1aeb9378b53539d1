"""The two Objax update rules that no Optax transformation computes, as Optax transformations.

``scale_by_objax_adam``: Adam with ``eps`` inside the square root, before the bias
correction (``optax.scale_by_adam`` adds it outside). ``scale_by_objax_trust_ratio``: LARS's
layer-wise trust ratio as Objax defines it, from the norms of the gradient and the weights
taken separately (``optax.scale_by_trust_ratio`` uses the norm of the decayed update and
falls back to 1 differently). Both are ordinary ``optax.GradientTransformation``s: they
compose with ``optax.chain`` and work on any pytree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["ObjaxAdamState", "scale_by_objax_adam", "scale_by_objax_trust_ratio"]


class ObjaxAdamState(NamedTuple):
    """State of ``scale_by_objax_adam``: the step count (``uint32``, as Objax's ``step``)
    and the first and second moments, shaped like the parameters."""

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_objax_adam(b1: Any = 0.9, b2: Any = 0.999,
                        eps: Any = 1e-8) -> optax.GradientTransformation:
    """Objax's Adam direction.

    With ``t`` the step number (1 on the first update)::

        m ← m + (1 - b1) (g - m)
        v ← v + (1 - b2) (g² - v)
        direction = sqrt(1 - b2ᵗ) / (1 - b1ᵗ) · m / sqrt(v + eps)

    Args:
      b1: the first moment's decay rate; a Python number or a (traced) array.
      b2: the second moment's decay rate, likewise.
      eps: added to ``v`` inside the square root.

    Returns:
      An ``optax.GradientTransformation`` whose state is ``ObjaxAdamState`` and whose
      updates are the ascent direction (chain ``optax.scale_by_learning_rate(lr)`` to
      descend).

    Example::

        tx = optax.chain(scale_by_objax_adam(), optax.scale_by_learning_rate(1e-3))
    """

    def init(params: Any) -> ObjaxAdamState:
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return ObjaxAdamState(jnp.zeros([], jnp.uint32), zeros, zeros)

    def update(updates: Any, state: ObjaxAdamState, params: Any = None):
        del params
        count = state.count + 1
        mu = jax.tree_util.tree_map(lambda m, g: m + (1 - b1) * (g - m), state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: v + (1 - b2) * (g * g - v), state.nu, updates)
        t = count.astype(jnp.float32)
        bias_correction = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        direction = jax.tree_util.tree_map(
            lambda m, v: (bias_correction * m * jax.lax.rsqrt(v + eps)).astype(m.dtype), mu, nu)
        return direction, ObjaxAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def scale_by_objax_trust_ratio(weight_decay: Any = 1e-4, trust_coefficient: Any = 1e-3,
                               eps: Any = 1e-5) -> optax.GradientTransformation:
    """LARS's weight-decayed gradient, scaled per leaf by Objax's trust ratio.

    For each leaf ``p`` with gradient ``g``::

        ratio = trust_coefficient · ‖p‖ / (‖g‖ + weight_decay · ‖p‖ + eps)
        factor = max(1, ratio) if ‖p‖ = 0 or ‖g‖ = 0 else ratio
        update = factor · (g + weight_decay · p)

    (LARS, You et al. 2017, with Objax's handling of zero norms.) Needs ``params``.

    Returns:
      A stateless ``optax.GradientTransformation``. Objax's ``LARS`` is
      ``chain(scale_by_objax_trust_ratio(...), optax.scale(lr), optax.trace(momentum))``
      followed by ``p ← p - update``.

    Example::

        tx = optax.chain(scale_by_objax_trust_ratio(), optax.scale(0.1),
                         optax.trace(0.9), optax.scale(-1.0))
    """

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None):
        if params is None:
            raise ValueError("scale_by_objax_trust_ratio needs the parameters: "
                             "call update(grads, state, params).")

        def scaled(g: jax.Array, p: jax.Array) -> jax.Array:
            p_norm, g_norm = jnp.linalg.norm(p), jnp.linalg.norm(g)
            ratio = trust_coefficient * p_norm / (g_norm + weight_decay * p_norm + eps)
            # A zero norm makes the ratio meaningless: the step is then at least lr.
            factor = jnp.maximum(jnp.logical_or(p_norm == 0, g_norm == 0), ratio)
            return (factor * (g + weight_decay * p)).astype(g.dtype)

        return jax.tree_util.tree_map(scaled, updates, params), state

    return optax.GradientTransformation(init, update)
