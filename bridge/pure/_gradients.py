"""Gradients on pytrees (no objects): ``grad``, ``grad_values``, ``vector_grad``,
``per_example_grad_values``.

Return conventions (shared by every transformation in ``bridge.pure`` and by the
BrainPy-style facades): the transformed function returns ``grads``; with
``return_value`` ``(grads, value)``; with ``has_aux`` ``(grads, aux)``; with both
``(grads, value, aux)``. ``grads`` is one pytree for an ``int`` ``argnums`` and a tuple for
a sequence.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

__all__ = ["grad", "grad_values", "vector_grad", "per_example_grad_values", "split_loss",
           "package"]

ArgNums = Union[int, Sequence[int]]


def package(grads: Any, value: Any, aux: Any, return_value: bool, has_aux: bool) -> Any:
    """Arrange results in the shared return format (see the module docstring)."""
    out = (grads,)
    if return_value:
        out += (value,)
    if has_aux:
        out += (aux,)
    return out if len(out) > 1 else grads


_HAS_AUX_ADVICE = ("Reduce it (`.mean()`, `.sum()`), return `(loss, aux)` with "
                   "`has_aux=True`, or use `vector_grad`/`jacobian` for non-scalar outputs.")
_OBJAX_ADVICE = ("Reduce it (`.mean()`, `.sum()`), or return a tuple whose first element is "
                 "the scalar loss (`return loss, extra`): the other elements are returned "
                 "as values, not differentiated. For non-scalar outputs use `Jacobian`.")


def _require_scalar(value: Any, advice: str = _HAS_AUX_ADVICE) -> None:
    shape = jnp.shape(value) if hasattr(value, "shape") or jnp.isscalar(value) else None
    if shape != ():
        what = f"shape {shape}" if shape is not None else f"a {type(value).__name__}"
        raise TypeError(f"Gradients need a scalar output, but the function returned {what}. "
                        + advice)


def _split_aux(output: Any, has_aux: bool) -> tuple[Any, Any]:
    if not has_aux:
        return output, None
    if not (isinstance(output, (tuple, list)) and len(output) == 2):
        raise TypeError("With has_aux=True the function must return a pair (output, aux).")
    return output[0], output[1]


def grad(f: Callable, argnums: ArgNums = 0, has_aux: bool = False,
         return_value: bool = False) -> Callable:
    """The gradient of a scalar function (``jax.grad``), with the shared return format.

    Args:
      f: ``f(*args, **kwargs)`` returns a scalar (or ``(scalar, aux)`` with ``has_aux``).
      argnums: the positional argument(s) to differentiate.
      has_aux: ``f`` returns ``(value, aux)``; ``aux`` is returned, not differentiated.
      return_value: also return ``f``'s value.

    Returns:
      ``g(*args, **kwargs)`` giving ``grads`` / ``(grads, value)`` / ``(grads, aux)`` /
      ``(grads, value, aux)``; ``grads`` mirrors the differentiated argument(s).

    Raises:
      TypeError: ``f``'s output is not a scalar (the message gives its shape).

    Example::

        f = lambda a, b: a * 2 + b
        bridge.pure.grad(f)(2., 1.)                       # 2.0
        bridge.pure.grad(f, argnums=(0, 1))(2., 1.)       # (2.0, 1.0)
    """

    def value_and_aux(*args: Any, **kwargs: Any):
        value, aux = _split_aux(f(*args, **kwargs), has_aux)
        _require_scalar(value)
        return value, (value, aux)

    gradient = jax.grad(value_and_aux, argnums=argnums, has_aux=True)

    def g(*args: Any, **kwargs: Any):
        grads, (value, aux) = gradient(*args, **kwargs)
        return package(grads, value, aux, return_value, has_aux)

    return g


def split_loss(output: Any) -> tuple[Any, list]:
    """Objax's reading of a loss function's output: ``(differentiated value, values)``.

    A tuple or list output differentiates its first element; anything else is the loss
    itself. ``values`` is always a list of everything returned.
    """
    values = list(output) if isinstance(output, (tuple, list)) else [output]
    if not values:
        raise TypeError("The loss function returned an empty sequence: nothing to differentiate.")
    _require_scalar(values[0], _OBJAX_ADVICE)
    return values[0], values


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

    def loss_with_values(*args: Any, **kwargs: Any):
        output, aux = _split_aux(f(*args, **kwargs), has_aux)
        loss, values = split_loss(output)
        return loss, (values, aux)

    gradient = grad(loss_with_values, argnums=argnums, has_aux=True)

    def g(*args: Any, **kwargs: Any):
        grads, (values, aux) = gradient(*args, **kwargs)
        return (grads, values, aux) if has_aux else (grads, values)

    return g


def _select(args: tuple, argnums: ArgNums) -> tuple[tuple[int, ...], tuple]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    return nums, tuple(args[i] for i in nums)


def _substitute(args: tuple, nums: Sequence[int], new: Sequence[Any]) -> list:
    args = list(args)
    for i, x in zip(nums, new):
        args[i] = x
    return args


def vector_grad(f: Callable, argnums: ArgNums = 0, has_aux: bool = False,
                return_value: bool = False) -> Callable:
    """The gradient of ``sum(f(x))``: the VJP of ``f`` with a cotangent of ones.

    For an elementwise ``f`` this is the elementwise derivative. ``f`` may return any
    pytree of arrays (or ``(output, aux)`` with ``has_aux``). Return format as ``grad``.

    Example::

        f = lambda a, b: jnp.sin(b) * a
        bridge.pure.vector_grad(f, argnums=1)(a, b)     # == a * jnp.cos(b)
    """

    def g(*args: Any, **kwargs: Any):
        nums, diff = _select(args, argnums)

        def on_diff(*new):
            return _split_aux(f(*_substitute(args, nums, new), **kwargs), has_aux)

        value, pullback, aux = jax.vjp(on_diff, *diff, has_aux=True)
        grads = pullback(jax.tree_util.tree_map(jnp.ones_like, value))
        return package(grads[0] if isinstance(argnums, int) else grads, value, aux,
                       return_value, has_aux)

    return g


def per_example_grad_values(f: Callable, batch_axis: Optional[Sequence[Optional[int]]] = None,
                            microbatch: Optional[int] = None, argnums: ArgNums = 0) -> Callable:
    """Per-example gradients and values of ``f``: ``vmap(grad_values(f))``.

    Args:
      f: ``f(params, *data)`` with ``grad_values`` conventions, written for ONE example
        (or for one microbatch when ``microbatch`` is given).
      batch_axis: ``in_axes`` for ``(params, *data)``; default: ``params`` shared, every
        other argument batched on axis 0, i.e. ``(None, 0, 0, ...)``.
      microbatch: group consecutive examples by this many (the batch size must be a
        multiple); ``f`` then sees a batch of ``microbatch`` examples and the leading axis
        of the results is ``batch // microbatch``.
      argnums: the argument(s) differentiated (default the params).

    Returns:
      ``g(params, *data) -> (grads, values)``, each with a leading batch axis.

    Example::

        grads, (losses,) = bridge.pure.per_example_grad_values(loss)(params, x, y)
        # grads['w'].shape == (batch,) + params['w'].shape
    """
    gv = grad_values(f, argnums=argnums)

    def g(*args: Any):
        axes = tuple(batch_axis) if batch_axis is not None else (None,) + (0,) * (len(args) - 1)
        if microbatch is not None:
            args = tuple(x if a is None else _group(x, a, microbatch) for x, a in zip(args, axes))
        return jax.vmap(gv, in_axes=axes)(*args)

    return g


def _group(x: Any, axis: int, size: int) -> Any:
    def reshape(leaf):
        n = leaf.shape[axis]
        if n % size:
            raise ValueError(f"The batch size {n} is not a multiple of microbatch={size}.")
        return jnp.reshape(leaf, leaf.shape[:axis] + (n // size, size) + leaf.shape[axis + 1:])

    return jax.tree_util.tree_map(reshape, x)
