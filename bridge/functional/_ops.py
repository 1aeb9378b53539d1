"""Array operations: JAX's own under Objax's names, flattening and resizing."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from bridge.functional._interpolate import Interpolate, to_interpolate
from bridge.functional._padding import to_tuple

__all__ = ["dynamic_slice", "flatten", "interpolate", "one_hot", "pad", "rsqrt", "scan",
           "stop_gradient", "top_k", "upsample_2d", "upscale_nn"]

dynamic_slice = lax.dynamic_slice
one_hot = jax.nn.one_hot
pad = jnp.pad
rsqrt = lax.rsqrt
scan = lax.scan
stop_gradient = lax.stop_gradient
top_k = lax.top_k

Scale = Union[int, float, Sequence[Union[int, float]]]


def flatten(x: jax.Array) -> jax.Array:
    """Keep the batch axis, merge all the others: shape ``(N, ...)`` → ``(N, prod(...))``.

    Example::

        flatten(jnp.zeros((8, 3, 4, 4))).shape   # (8, 48)
    """
    return jnp.reshape(x, (jnp.shape(x)[0], -1))


def _resized_shape(shape: tuple[int, ...], size: Optional[Union[int, Sequence[int]]],
                   scale_factor: Optional[Scale]) -> tuple[int, ...]:
    """The output shape of ``interpolate`` (see its docstring for the rules)."""
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor, got "
                         f"size={size!r} and scale_factor={scale_factor!r}.")
    if scale_factor is not None:
        if isinstance(scale_factor, (int, float)):
            lead, factors = shape[:1], (scale_factor,) * (len(shape) - 1)
        else:
            factors = tuple(scale_factor)
            lead = shape[:len(shape) - len(factors)]
        resized = tuple(math.floor(n * f) for n, f in zip(shape[len(lead):], factors))
    else:
        resized = (size,) if isinstance(size, int) else tuple(size)
        lead = shape[:len(shape) - len(resized)]
    if len(lead) + len(resized) != len(shape):
        raise ValueError(f"interpolate: {len(resized)} sizes or scale factors for an input "
                         f"of shape {shape} ({len(shape)} axes).")
    return (*lead, *resized)


def interpolate(input: jax.Array, size: Optional[Union[int, Sequence[int]]] = None,
                scale_factor: Optional[Scale] = None,
                mode: Union[Interpolate, str] = Interpolate.BILINEAR) -> jax.Array:
    """Resize the trailing axes of ``input`` with ``jax.image.resize``.

    Give exactly one of ``size`` and ``scale_factor``; the leading axes the rules below
    leave alone keep their size:

    * ``size=s`` (an int) sets the last axis to ``s``;
    * ``size=(s1, ..., sk)`` sets the last ``k`` axes;
    * ``scale_factor=f`` (a number) multiplies every axis but the first (channels too),
      as in Objax;
    * ``scale_factor=(f1, ..., fk)`` multiplies the last ``k`` axes.

    Scaled sizes are rounded down.

    Args:
      input: array of any rank.
      size: target size(s).
      scale_factor: multiplier(s) of the current size(s).
      mode: an ``Interpolate`` or its name (``'nearest'``, ``'bilinear'``, ...).

    Returns:
      The resized array, same dtype.

    Example::

        interpolate(jnp.ones((2, 3, 4, 5)), size=(8, 10)).shape        # (2, 3, 8, 10)
        interpolate(jnp.ones((2, 3, 4, 5)), scale_factor=(2, 2)).shape  # (2, 3, 8, 10)
    """
    shape = _resized_shape(jnp.shape(input), size, scale_factor)
    return jax.image.resize(input, shape, method=to_interpolate(mode))


def upsample_2d(x: jax.Array, scale: Union[int, Sequence[int]],
                method: Union[Interpolate, str] = Interpolate.BILINEAR) -> jax.Array:
    """Resize an NCHW tensor by integer factors with ``jax.image.resize``.

    Args:
      x: input, shape ``(N, C, H, W)``.
      scale: an int or a ``(sh, sw)`` pair.
      method: an ``Interpolate`` or its name (``'nearest'``, ``'bilinear'``, ...).

    Returns:
      Shape ``(N, C, H * sh, W * sw)``.

    Example::

        upsample_2d(jnp.ones((1, 3, 4, 4)), 2).shape   # (1, 3, 8, 8)
    """
    if jnp.ndim(x) != 4:
        raise ValueError(f"upsample_2d expects an NCHW tensor (4 dimensions), got shape "
                         f"{jnp.shape(x)}; use interpolate for other ranks.")
    sh, sw = to_tuple(scale, 2)
    n, c, h, w = x.shape
    return jax.image.resize(x, (n, c, h * sh, w * sw), method=to_interpolate(method))


def upscale_nn(x: jax.Array, scale: int = 2) -> jax.Array:
    """Nearest-neighbour upscaling of an NCHW tensor: each pixel becomes a block.

    Returns:
      Shape ``(N, C, H * scale, W * scale)``.

    Example::

        upscale_nn(jnp.array([[[[1., 2.]]]]))   # [[[[1., 1., 2., 2.], [1., 1., 2., 2.]]]]
    """
    return jnp.repeat(jnp.repeat(x, scale, axis=2), scale, axis=3)
