"""Gradient semantics on pytrees (no objects)."""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp

__all__ = ["grad_values", "split_loss"]

ArgNums = Union[int, Sequence[int]]


def split_loss(output: Any) -> tuple[jax.Array, list]:
    """Objax's reading of a loss function's output: ``(differentiated value, values)``.

    A tuple or list output differentiates its first element; anything else is the loss
    itself. ``values`` is always a list of everything returned.

    Raises:
      TypeError: the differentiated value is not a scalar (the message gives its shape).
    """
    values = list(output) if isinstance(output, (tuple, list)) else [output]
    if not values:
        raise TypeError("The loss function returned an empty sequence: nothing to differentiate.")
    loss = values[0]
    shape = jnp.shape(loss)
    if shape != ():
        raise TypeError(
            f"Gradients need a scalar loss, but the (first) value returned has shape {shape}. "
            "Reduce it (for example `.mean()` or `.sum()`) or use `vector_grad`/`jacobian`."
        )
    return loss, values


def grad_values(f: Callable, argnums: ArgNums = 0, has_aux: bool = False) -> Callable:
    """Gradients and values of ``f``, with Objax's ``GradValues`` conventions, on pytrees.

    Args:
      f: ``f(*args, **kwargs)`` returns a scalar loss, or a tuple/list whose first element
        is the scalar loss and whose other elements are extra values (any pytrees). With
        ``has_aux``, ``f`` returns ``(output, aux)`` and ``aux`` is passed through.
      argnums: which positional argument(s) to differentiate: an int gives one gradient
        pytree, a sequence gives a tuple of them.
      has_aux: see ``f``.

    Returns:
      ``g(*args, **kwargs) -> (grads, values)`` (or ``(grads, values, aux)``), where
      ``grads`` has the structure of the differentiated argument(s) and ``values`` is the
      list of everything ``f`` returned.

    Example::

        loss = lambda p, x: (((x @ p['w']) ** 2).mean(), p['w'].sum())
        grads, (l, s) = bridge.pure.grad_values(loss)({'w': w}, x)
        # grads == jax.grad(lambda p, x: loss(p, x)[0])({'w': w}, x)
    """

    def loss_and_rest(*args: Any, **kwargs: Any):
        output = f(*args, **kwargs)
        aux = None
        if has_aux:
            output, aux = output
        loss, values = split_loss(output)
        return loss, (values, aux)

    gradient = jax.grad(loss_and_rest, argnums=argnums, has_aux=True)

    def g(*args: Any, **kwargs: Any):
        grads, (values, aux) = gradient(*args, **kwargs)
        return (grads, values, aux) if has_aux else (grads, values)

    return g
