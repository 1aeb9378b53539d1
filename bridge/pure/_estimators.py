"""Gradient estimators that replace a function's derivative."""

from __future__ import annotations

from typing import Any, Callable

import jax

__all__ = ["straight_through"]


def straight_through(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``f`` in the forward pass, the identity in the backward pass.

    ``straight_through(f)(x) = x + stop_gradient(f(x) - x)``: its value is ``f(x)`` and its
    derivative with respect to ``x`` is 1, which lets gradients flow through
    non-differentiable steps such as rounding or quantisation. ``f(x)`` must have ``x``'s
    shape.

    Example::

        jax.grad(lambda x: straight_through(jnp.round)(x))(0.3)   # 1.0 (jnp.round: 0.0)
    """

    def g(x: Any) -> Any:
        return jax.tree_util.tree_map(lambda a, b: a + jax.lax.stop_gradient(b - a), x, f(x))

    return g
