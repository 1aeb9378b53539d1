"""Weight initializers, Objax style: ``init(shape, gain=...)`` returns a float32 array.

Keys come from ``bridge.random.DEFAULT_GENERATOR`` unless a ``generator=`` is given, so a
model built after ``bridge.random.DEFAULT_GENERATOR.seed(s)`` is reproducible. The
sampling itself is done by ``jax.nn.initializers``.

Fans follow Objax's convention for every kernel shape, including convolution kernels in
HWIO layout: ``fan_in = prod(shape[:-1])`` and ``fan_out = shape[-1]``.

Example::

    from bridge.nn import init
    w = init.xavier_normal((256, 10))                     # std sqrt(2 / (256 + 10))
    k = init.kaiming_normal((3, 3, 16, 32), gain=2 ** 0.5) # std sqrt(2 / (3 * 3 * 16))
    layer = bridge.nn.Linear(256, 10, w_init=functools.partial(init.orthogonal, gain=2))
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.nn import initializers

from bridge import random
from bridge.random import DEFAULT_GENERATOR, Generator

__all__ = [
    "gain_leaky_relu",
    "identity",
    "kaiming_normal",
    "kaiming_normal_gain",
    "kaiming_truncated_normal",
    "kaiming_uniform",
    "orthogonal",
    "truncated_normal",
    "xavier_normal",
    "xavier_normal_gain",
    "xavier_truncated_normal",
    "xavier_uniform",
]

Shape = Sequence[int]


def _fans(shape: Shape) -> tuple[int, int]:
    shape = tuple(shape)
    if not shape:
        raise ValueError("Initializers need a shape with at least one dimension.")
    return math.prod(shape[:-1]), shape[-1]


def _variance_scaling(shape: Shape, scale: float, mode: str, distribution: str,
                      generator: Generator) -> jax.Array:
    """``jax.nn.initializers.variance_scaling`` with Objax's fans (see the module docstring)."""
    shape = tuple(shape)
    _fans(shape)  # validates the rank
    init = initializers.variance_scaling(scale, mode, distribution,
                                         in_axis=tuple(range(len(shape) - 1)), out_axis=-1)
    return init(generator(), shape, jnp.float32)


def xavier_normal_gain(shape: Shape) -> float:
    """The Glorot/Xavier standard deviation ``sqrt(2 / (fan_in + fan_out))`` for ``shape``.

    Example: ``xavier_normal_gain((3, 5)) == sqrt(2 / 8) == 0.5``.
    """
    fan_in, fan_out = _fans(shape)
    return math.sqrt(2 / (fan_in + fan_out))


def kaiming_normal_gain(shape: Shape) -> float:
    """The Kaiming He base standard deviation ``sqrt(1 / fan_in)`` for ``shape``.

    Multiply by ``sqrt(2)`` (``gain=2 ** 0.5``) for the ReLU variant of He et al.

    Example: ``kaiming_normal_gain((3, 3, 4, 8)) == sqrt(1 / 36)``.
    """
    fan_in, _ = _fans(shape)
    return math.sqrt(1 / fan_in)


def gain_leaky_relu(relu_slope: float = 0.1) -> float:
    """The gain that keeps the activation variance for a leaky ReLU: ``sqrt(2 / (1 + a²))``.

    Example: ``kaiming_normal(shape, gain=gain_leaky_relu(0.2))``.
    """
    return math.sqrt(2 / (1 + relu_slope ** 2))


def xavier_normal(shape: Shape, gain: float = 1, *,
                  generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Normal samples with std ``gain * sqrt(2 / (fan_in + fan_out))`` (Glorot & Bengio).

    Args:
      shape: output shape, e.g. ``(nin, nout)`` or an HWIO kernel.
      gain: multiplies the standard deviation.
      generator: where the key comes from.

    Returns:
      A float32 array of ``shape``.

    Example::

        xavier_normal((784, 10)).std()   # ≈ sqrt(2 / 794)
    """
    return _variance_scaling(shape, gain ** 2, "fan_avg", "normal", generator)


def xavier_uniform(shape: Shape, gain: float = 1, *,
                   generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Uniform samples on ``±gain * sqrt(6 / (fan_in + fan_out))`` (same std as ``xavier_normal``).

    Returns:
      A float32 array of ``shape``.

    Example::

        xavier_uniform((784, 10)).max()   # < sqrt(6 / 794)
    """
    return _variance_scaling(shape, gain ** 2, "fan_avg", "uniform", generator)


def kaiming_normal(shape: Shape, gain: float = 1, *,
                   generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Normal samples with std ``gain * sqrt(1 / fan_in)`` (He et al., Objax's scaling).

    As in Objax the default ``gain`` is 1; pass ``gain=2 ** 0.5`` for the ReLU-corrected
    variant (``jax.nn.initializers.he_normal`` untruncated).

    Args:
      shape: output shape; for an HWIO kernel ``fan_in = kh * kw * nin``.
      gain: multiplies the standard deviation.
      generator: where the key comes from.

    Returns:
      A float32 array of ``shape``.

    Example::

        kaiming_normal((3, 3, 64, 128)).std()   # ≈ 1 / sqrt(576)
    """
    return _variance_scaling(shape, gain ** 2, "fan_in", "normal", generator)


def kaiming_uniform(shape: Shape, gain: float = 1, *,
                    generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Uniform samples on ``±gain * sqrt(3 / fan_in)`` (same std as ``kaiming_normal``).

    Returns:
      A float32 array of ``shape``.

    Example::

        kaiming_uniform((300, 10)).max()   # < 0.1
    """
    return _variance_scaling(shape, gain ** 2, "fan_in", "uniform", generator)


def _truncated_unit_std(lower: float, upper: float) -> float:
    """Standard deviation of a unit normal truncated to ``[lower, upper]``."""
    def pdf(x: float) -> float:
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    mass = cdf(upper) - cdf(lower)
    mean = (pdf(lower) - pdf(upper)) / mass
    second_moment = 1 + (lower * pdf(lower) - upper * pdf(upper)) / mass
    return math.sqrt(second_moment - mean * mean)


def truncated_normal(shape: Shape, lower: float = -2, upper: float = 2, stddev: float = 1, *,
                     generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """A normal truncated to ``[lower, upper]`` (in its own std units), rescaled to ``stddev``.

    The returned values lie in ``[lower, upper] * stddev / s`` where ``s`` is the standard
    deviation of a unit normal truncated to ``[lower, upper]``, so that their standard
    deviation is ``stddev``. (``bridge.random.truncated_normal`` does not rescale.)

    Returns:
      A float32 array of ``shape``.

    Example::

        truncated_normal((1000,), stddev=0.02).std()   # ≈ 0.02
    """
    return random.truncated_normal(shape, stddev=stddev / _truncated_unit_std(lower, upper),
                                   lower=lower, upper=upper, generator=generator)


def xavier_truncated_normal(shape: Shape, lower: float = -2, upper: float = 2,
                            gain: float = 1, *,
                            generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """``truncated_normal`` with std ``gain * xavier_normal_gain(shape)``.

    Example::

        xavier_truncated_normal((256, 256)).std()   # ≈ sqrt(2 / 512)
    """
    return truncated_normal(shape, lower, upper, gain * xavier_normal_gain(shape),
                            generator=generator)


def kaiming_truncated_normal(shape: Shape, lower: float = -2, upper: float = 2,
                             gain: float = 1, *,
                             generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """``truncated_normal`` with std ``gain * kaiming_normal_gain(shape)``.

    Example::

        kaiming_truncated_normal((3, 3, 16, 16)).std()   # ≈ 1 / 12
    """
    return truncated_normal(shape, lower, upper, gain * kaiming_normal_gain(shape),
                            generator=generator)


def orthogonal(shape: Shape, gain: float = 1, axis: int = -1, *,
               generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """A (semi-)orthogonal tensor times ``gain`` (``jax.nn.initializers.orthogonal``).

    The slices along ``axis`` are orthonormal vectors when ``shape[axis]`` is at most the
    product of the other dimensions; otherwise the other slices are.

    Returns:
      A float32 array of ``shape``.

    Example::

        w = orthogonal((64, 32))      # w.T @ w ≈ identity(32)
    """
    init = initializers.orthogonal(scale=gain, column_axis=axis)
    return init(generator(), tuple(shape), jnp.float32)


def identity(shape: Shape, gain: float = 1) -> jax.Array:
    """``gain`` times the (rectangular) identity matrix; ``shape`` must be 2-D.

    Example::

        identity((2, 3), gain=2.)   # [[2, 0, 0], [0, 2, 0]]
    """
    if len(shape) != 2:
        raise ValueError(f"identity needs a 2-D shape, got {tuple(shape)}.")
    return gain * jnp.eye(*shape, dtype=jnp.float32)

