"""Array functions for NCHW images: flattening, pooling and resizing."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

from bridge.functional._padding import ConvPadding, ConvPaddingInt, to_padding, to_tuple

__all__ = ["flatten", "max_pool_2d", "average_pool_2d", "upsample_2d", "upscale_nn"]

Size2D = Union[int, Sequence[int]]


def flatten(x: jax.Array) -> jax.Array:
    """Keep the batch axis, merge all the others: shape ``(N, ...)`` → ``(N, prod(...))``.

    Example::

        flatten(jnp.zeros((8, 3, 4, 4))).shape   # (8, 48)
    """
    return jnp.reshape(x, (x.shape[0], -1))


def _pool(x: jax.Array, init: jax.Array, op, size: Size2D, strides: Optional[Size2D],
          padding: ConvPaddingInt) -> tuple[jax.Array, tuple[int, int]]:
    if x.ndim != 4:
        raise ValueError(f"Pooling expects an NCHW tensor (4 dimensions), got shape {x.shape}.")
    window = to_tuple(size, 2)
    step = window if strides is None else to_tuple(strides, 2)
    pads = to_padding(padding, 2)
    if not isinstance(pads, str):
        pads = ((0, 0), (0, 0)) + pads
    out = jax.lax.reduce_window(x, init, op, (1, 1) + window, (1, 1) + step, pads)
    return out, window


def max_pool_2d(x: jax.Array, size: Size2D = 2, strides: Optional[Size2D] = None,
                padding: ConvPaddingInt = ConvPadding.VALID) -> jax.Array:
    """The maximum over each ``size`` window of an NCHW tensor.

    Args:
      x: input, shape ``(N, C, H, W)``.
      size: window height and width (an int or a pair).
      strides: step between windows; defaults to ``size`` (non-overlapping windows).
      padding: ``ConvPadding``/``'SAME'``/``'VALID'``, an int, a ``(lo, hi)`` pair or two
        pairs; padded positions never win the maximum.

    Returns:
      Shape ``(N, C, H', W')``; with the defaults ``H' = H // size``, ``W' = W // size``.

    Example::

        max_pool_2d(jnp.arange(16.).reshape(1, 1, 4, 4))   # [[[[5., 7.], [13., 15.]]]]
    """
    if jnp.issubdtype(x.dtype, jnp.inexact):
        init = jnp.array(-jnp.inf, x.dtype)
    else:
        init = jnp.array(jnp.iinfo(x.dtype).min, x.dtype)
    return _pool(x, init, jax.lax.max, size, strides, padding)[0]


def average_pool_2d(x: jax.Array, size: Size2D = 2, strides: Optional[Size2D] = None,
                    padding: ConvPaddingInt = ConvPadding.VALID) -> jax.Array:
    """The mean over each ``size`` window of an NCHW tensor.

    Arguments as in ``max_pool_2d``. Each window sum is divided by the full window area,
    so with padding the padded zeros count in the mean (as in Objax).

    Returns:
      Shape ``(N, C, H', W')``; with the defaults ``H' = H // size``, ``W' = W // size``.

    Example::

        average_pool_2d(jnp.ones((2, 3, 8, 8)), 4).shape   # (2, 3, 2, 2)
    """
    out, window = _pool(x, jnp.array(0, x.dtype), jax.lax.add, size, strides, padding)
    return out / math.prod(window)


def upsample_2d(x: jax.Array, scale: Size2D, method: str = "bilinear") -> jax.Array:
    """Resize an NCHW tensor by an integer ``scale`` with ``jax.image.resize``.

    Args:
      x: input, shape ``(N, C, H, W)``.
      scale: an int or a ``(sh, sw)`` pair.
      method: any ``jax.image.resize`` method (``'nearest'``, ``'bilinear'``, ...).

    Returns:
      Shape ``(N, C, H * sh, W * sw)``.

    Example::

        upsample_2d(jnp.ones((1, 3, 4, 4)), 2).shape   # (1, 3, 8, 8)
    """
    sh, sw = to_tuple(scale, 2)
    n, c, h, w = x.shape
    return jax.image.resize(x, (n, c, h * sh, w * sw), method=method)


def upscale_nn(x: jax.Array, scale: int = 2) -> jax.Array:
    """Nearest-neighbour upscaling of an NCHW tensor: each pixel becomes a block.

    Returns:
      Shape ``(N, C, H * scale, W * scale)``.

    Example::

        upscale_nn(jnp.array([[[[1., 2.]]]]))   # [[[[1., 1., 2., 2.], [1., 1., 2., 2.]]]]
    """
    return jnp.repeat(jnp.repeat(x, scale, axis=2), scale, axis=3)
