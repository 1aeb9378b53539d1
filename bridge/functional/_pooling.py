"""Pooling and space/batch/channel rearrangements of NCHW images."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bridge.functional._padding import ConvPadding, ConvPaddingInt, to_padding, to_tuple

__all__ = ["average_pool_2d", "batch_to_space2d", "channel_to_space2d", "max_pool_2d",
           "space_to_batch2d", "space_to_channel2d"]

Size2D = Union[int, Sequence[int]]


def _check_nchw(x: jax.Array, name: str) -> None:
    if jnp.ndim(x) != 4:
        raise ValueError(f"{name} expects an NCHW tensor (4 dimensions), got shape "
                         f"{jnp.shape(x)}.")


def _reduce_windows(x: jax.Array, init: Union[int, float, bool], op: Callable, size: Size2D,
                    strides: Optional[Size2D], padding: ConvPaddingInt) -> jax.Array:
    """``op``-reduce every ``size`` window of the H and W axes.

    ``init`` must be a Python scalar: JAX picks its differentiable, monoid
    ``reduce_window`` (max or sum) only for a concrete initial value, and an array created
    inside ``jax.jit`` is a tracer, for which reverse-mode differentiation fails.
    """
    window = to_tuple(size, 2)
    step = window if strides is None else to_tuple(strides, 2)
    pads = to_padding(padding, 2)
    if not isinstance(pads, str):
        pads = ((0, 0), (0, 0)) + pads
    return lax.reduce_window(x, init, op, (1, 1) + window, (1, 1) + step, pads)


def _lowest(dtype: np.dtype) -> Union[int, float, bool]:
    """The identity of ``max`` for ``dtype``, as a Python scalar."""
    if jnp.issubdtype(dtype, jnp.inexact):
        return -float("inf")
    if jnp.issubdtype(dtype, jnp.bool_):
        return False
    return int(jnp.iinfo(dtype).min)


def _divide_exactly(sums: jax.Array, count: int) -> jax.Array:
    """``sums / count`` correctly rounded, as numpy computes a mean.

    XLA on CPU turns a division by a scalar into a multiplication by its rounded
    reciprocal, which is one ulp off for some values when ``1 / count`` is inexact
    (2979 / 25 gives 119.159996 instead of 119.16). Dividing by a full array that XLA
    cannot see as a scalar constant keeps the true division; a power of two needs no
    such care.
    """
    if count & (count - 1):
        dtype = jnp.result_type(sums, 1.0)
        count = lax.optimization_barrier(jnp.full(sums.shape, count, dtype))
    return sums / count


def max_pool_2d(x: jax.Array, size: Size2D = 2, strides: Optional[Size2D] = None,
                padding: ConvPaddingInt = ConvPadding.VALID) -> jax.Array:
    """The maximum of each ``size`` window of an NCHW tensor.

    Args:
      x: input, shape ``(N, C, H, W)``.
      size: window height and width (an int or a pair).
      strides: step between windows (an int or a pair); ``None`` means ``size``, i.e.
        non-overlapping windows.
      padding: ``ConvPadding.VALID``/``SAME`` (or their names), an int, one ``(lo, hi)``
        pair for both axes, or one pair per axis. Padded positions never win the maximum.

    Returns:
      Shape ``(N, C, H', W')``; with the defaults ``H' = H // size``, ``W' = W // size``.

    Example::

        max_pool_2d(jnp.arange(16.).reshape(1, 1, 4, 4))   # [[[[5., 7.], [13., 15.]]]]
    """
    _check_nchw(x, "max_pool_2d")
    return _reduce_windows(x, _lowest(jnp.result_type(x)), lax.max, size, strides, padding)


def average_pool_2d(x: jax.Array, size: Size2D = 2, strides: Optional[Size2D] = None,
                    padding: ConvPaddingInt = ConvPadding.VALID) -> jax.Array:
    """The mean of each ``size`` window of an NCHW tensor.

    Arguments as in ``max_pool_2d``. Each window sum is divided by the window area
    ``size[0] * size[1]``, so padded zeros count in the mean, and the quotient is
    correctly rounded (as ``numpy.mean`` of the zero-padded windows).

    Returns:
      Shape ``(N, C, H', W')``, floating point; with the defaults ``H' = H // size``,
      ``W' = W // size``.

    Example::

        average_pool_2d(jnp.arange(16.).reshape(1, 1, 4, 4))   # [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
    _check_nchw(x, "average_pool_2d")
    sums = _reduce_windows(x, 0, lax.add, size, strides, padding)
    kh, kw = to_tuple(size, 2)
    return _divide_exactly(sums, kh * kw)


def _check_divisible(x: jax.Array, axes: Sequence[int], size: tuple[int, int],
                     name: str) -> None:
    for axis, s in zip(axes, size):
        if x.shape[axis] % s:
            raise ValueError(f"{name}: axis {axis} of shape {x.shape} is not divisible by "
                             f"{s} (size={size}).")


def space_to_batch2d(x: jax.Array, size: Size2D = 2) -> jax.Array:
    """Move each ``size`` block of pixels into the batch axis.

    Output example ``(i * sh + a) * sw + b`` holds the pixels ``(a, b)`` of every block of
    input example ``i``; ``batch_to_space2d`` is the inverse.

    Args:
      x: input, shape ``(N, C, H, W)`` with ``H`` and ``W`` divisible by the block size.
      size: block height and width ``(sh, sw)`` (an int or a pair).

    Returns:
      Shape ``(N * sh * sw, C, H // sh, W // sw)``.

    Example::

        space_to_batch2d(jnp.zeros((2, 3, 10, 30)), size=5).shape   # (50, 3, 2, 6)
    """
    sh, sw = to_tuple(size, 2)
    _check_nchw(x, "space_to_batch2d")
    _check_divisible(x, (2, 3), (sh, sw), "space_to_batch2d")
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // sh, sh, w // sw, sw)           # n c h' a w' b
    return blocks.transpose(0, 3, 5, 1, 2, 4).reshape(n * sh * sw, c, h // sh, w // sw)


def batch_to_space2d(x: jax.Array, size: Size2D = 2) -> jax.Array:
    """The inverse of ``space_to_batch2d``: groups of ``sh * sw`` examples become blocks.

    Args:
      x: input, shape ``(N, C, H, W)`` with ``N`` divisible by ``sh * sw``.
      size: block height and width ``(sh, sw)`` (an int or a pair).

    Returns:
      Shape ``(N // (sh * sw), C, H * sh, W * sw)``.

    Example::

        batch_to_space2d(space_to_batch2d(x, 2), 2)   # x
    """
    sh, sw = to_tuple(size, 2)
    _check_nchw(x, "batch_to_space2d")
    n, c, h, w = x.shape
    if n % (sh * sw):
        raise ValueError(f"batch_to_space2d: batch size {n} is not divisible by "
                         f"{sh} * {sw} (size={(sh, sw)}).")
    blocks = x.reshape(n // (sh * sw), sh, sw, c, h, w)            # n' a b c h w
    return blocks.transpose(0, 3, 4, 1, 5, 2).reshape(n // (sh * sw), c, h * sh, w * sw)


def space_to_channel2d(x: jax.Array, size: Size2D = 2) -> jax.Array:
    """Move each ``size`` block of pixels into the channel axis.

    Output channel ``(k * sh + a) * sw + b`` holds the pixels ``(a, b)`` of every block of
    input channel ``k``; ``channel_to_space2d`` is the inverse.

    Args:
      x: input, shape ``(N, C, H, W)`` with ``H`` and ``W`` divisible by the block size.
      size: block height and width ``(sh, sw)`` (an int or a pair).

    Returns:
      Shape ``(N, C * sh * sw, H // sh, W // sw)``.

    Example::

        space_to_channel2d(jnp.zeros((2, 3, 10, 30)), size=5).shape   # (2, 75, 2, 6)
    """
    sh, sw = to_tuple(size, 2)
    _check_nchw(x, "space_to_channel2d")
    _check_divisible(x, (2, 3), (sh, sw), "space_to_channel2d")
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // sh, sh, w // sw, sw)           # n c h' a w' b
    return blocks.transpose(0, 1, 3, 5, 2, 4).reshape(n, c * sh * sw, h // sh, w // sw)


def channel_to_space2d(x: jax.Array, size: Size2D = 2) -> jax.Array:
    """The inverse of ``space_to_channel2d``: groups of ``sh * sw`` channels become blocks.

    Args:
      x: input, shape ``(N, C, H, W)`` with ``C`` divisible by ``sh * sw``.
      size: block height and width ``(sh, sw)`` (an int or a pair).

    Returns:
      Shape ``(N, C // (sh * sw), H * sh, W * sw)``.

    Example::

        channel_to_space2d(space_to_channel2d(x, 2), 2)   # x
    """
    sh, sw = to_tuple(size, 2)
    _check_nchw(x, "channel_to_space2d")
    n, c, h, w = x.shape
    if c % (sh * sw):
        raise ValueError(f"channel_to_space2d: {c} channels are not divisible by "
                         f"{sh} * {sw} (size={(sh, sw)}).")
    blocks = x.reshape(n, c // (sh * sw), sh, sw, h, w)            # n c' a b h w
    return blocks.transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (sh * sw), h * sh, w * sw)
