"""Random numbers from keys kept as state (``Generator``), Objax style."""

from bridge.random._generator import (
    DEFAULT_GENERATOR,
    Generator,
    bernoulli,
    normal,
    randint,
    truncated_normal,
    uniform,
)

__all__ = ["DEFAULT_GENERATOR", "Generator", "bernoulli", "normal", "randint",
           "truncated_normal", "uniform"]
