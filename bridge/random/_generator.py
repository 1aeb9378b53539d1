"""Random numbers drawn from a key kept as state, Objax style."""

from __future__ import annotations

import math
from typing import Sequence

import jax

from bridge.state import Module, RandomState

__all__ = ["Generator", "DEFAULT_GENERATOR", "normal", "uniform", "randint", "truncated_normal",
           "bernoulli"]

Shape = Sequence[int]


class Generator(Module):
    """A source of fresh PRNG keys; its state is one ``RandomState`` named ``key``.

    Inside ``Jit``/``Vectorize`` the generator's variables must be declared, which they are
    when it is an attribute of the module being transformed (as in ``nn.Dropout``).

    Example::

        gen = bridge.random.Generator(seed=1)
        key = gen()            # a new key each call
        gen.vars()             # {'(Generator)._key': RandomState}
    """

    def __init__(self, seed: int = 0):
        self._key = RandomState(seed)

    @property
    def key(self) -> RandomState:
        """The ``RandomState`` holding the current key."""
        return self._key

    def seed(self, seed: int = 0) -> None:
        """Reset the generator."""
        self._key.seed(seed)

    def __call__(self) -> jax.Array:
        """A new key, shape ``(2,)``; advances the state."""
        return self._key.split(1)[0]


DEFAULT_GENERATOR = Generator(0)


def normal(shape: Shape, *, mean: float = 0, stddev: float = 1,
           generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Samples of N(mean, stddev²), float32, of the given shape."""
    return mean + stddev * jax.random.normal(generator(), shape=tuple(shape))


def uniform(shape: Shape, *, low: float = 0, high: float = 1,
            generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Samples of U[low, high), float32, of the given shape."""
    return jax.random.uniform(generator(), shape=tuple(shape), minval=low, maxval=high)


def randint(shape: Shape, low: int, high: int,
            generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Integers uniform in ``[low, high)``, int32, of the given shape."""
    return jax.random.randint(generator(), shape=tuple(shape), minval=low, maxval=high)


def bernoulli(shape: Shape, p: float, generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Booleans that are True with probability ``p``."""
    return jax.random.bernoulli(generator(), p=p, shape=tuple(shape))


def _truncated_std(lower: float, upper: float) -> float:
    """Standard deviation of a standard normal truncated to ``[lower, upper]``."""
    def pdf(x: float) -> float:
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    z = cdf(upper) - cdf(lower)
    mean = (pdf(lower) - pdf(upper)) / z
    second = 1 + (lower * pdf(lower) - upper * pdf(upper)) / z
    return math.sqrt(second - mean * mean)


def truncated_normal(shape: Shape, *, stddev: float = 1, lower: float = -2, upper: float = 2,
                     generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Samples of a normal truncated to ``[lower, upper]`` standard deviations.

    The result is rescaled so that its standard deviation is ``stddev`` (as in Objax).
    """
    scale = stddev / _truncated_std(lower, upper)
    return scale * jax.random.truncated_normal(generator(), lower, upper, shape=tuple(shape))
