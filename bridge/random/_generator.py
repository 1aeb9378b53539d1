"""Random numbers drawn from a key kept as state, Objax style."""

from __future__ import annotations

from typing import Optional, Sequence

import jax

from bridge.state import Module, RandomState, VarCollection
from bridge.state._access import outside_traces
from bridge.state._repr import class_path

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
        self.initial_seed = seed
        # Created on first use, so that importing bridge (which builds DEFAULT_GENERATOR)
        # does not start JAX's backend: XLA_FLAGS set after the import still apply.
        self._key: Optional[RandomState] = None

    @property
    def key(self) -> RandomState:
        """The ``RandomState`` holding the current key."""
        if self._key is None:
            # Made outside any trace, even on a first use inside one: the key is the
            # generator's state, not a value of the traced call, so a transformation that
            # does not declare it reports the read instead of baking a fixed key in.
            with outside_traces():
                self._key = RandomState(self.initial_seed)
        return self._key

    def seed(self, seed: int = 0) -> None:
        """Reset the generator."""
        self.initial_seed = seed
        if self._key is not None:
            self._key.seed(seed)

    def __call__(self) -> jax.Array:
        """A new key, shape ``(2,)``; advances the state."""
        return self.key.split(1)[0]

    def vars(self, scope: str = "") -> VarCollection:
        self.key  # noqa: B018 (creates the key, so that it is listed)
        return super().vars(scope)

    def __repr__(self) -> str:
        return f"{class_path(self)}(seed={self.initial_seed})"


DEFAULT_GENERATOR = Generator(0)


def normal(shape: Shape, *, mean: float = 0, stddev: float = 1,
           generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Samples of N(mean, stddev²), float32, of the given shape."""
    return mean + stddev * jax.random.normal(generator(), shape=tuple(shape))


def uniform(shape: Shape, generator: Generator = DEFAULT_GENERATOR, *, low: float = 0,
            high: float = 1) -> jax.Array:
    """Samples of U[low, high), float32, of the given shape."""
    return jax.random.uniform(generator(), shape=tuple(shape), minval=low, maxval=high)


def randint(shape: Shape, low: int, high: int,
            generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Integers uniform in ``[low, high)``, int32, of the given shape."""
    return jax.random.randint(generator(), shape=tuple(shape), minval=low, maxval=high)


def bernoulli(shape: Shape, p: float, generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """Booleans that are True with probability ``p``."""
    return jax.random.bernoulli(generator(), p=p, shape=tuple(shape))


def truncated_normal(shape: Shape, *, stddev: float = 1, lower: float = -2, upper: float = 2,
                     generator: Generator = DEFAULT_GENERATOR) -> jax.Array:
    """A standard normal truncated to ``[lower, upper]``, times ``stddev`` (as in Objax).

    The values lie in ``[lower * stddev, upper * stddev]``. Their standard deviation is
    ``stddev`` times that of the truncated unit normal (0.8796 for the default bounds); for
    an initializer whose standard deviation is exactly ``stddev``, use
    ``bridge.nn.init.truncated_normal``.

    Returns:
      A float32 array of ``shape``.

    Example::

        truncated_normal((3,), stddev=0.1)   # three values in [-0.2, 0.2]
    """
    return stddev * jax.random.truncated_normal(generator(), lower, upper, shape=tuple(shape))
