"""Pieces shared by the zoo models."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Union

import jax

from bridge import random
from bridge.nn import Sequential

__all__ = ["ZooSequential", "mean_hw", "scaled_normal"]


class ZooSequential(Sequential):
    """``Sequential`` whose slices are plain ``Sequential`` objects.

    The zoo models subclass ``Sequential`` with constructors that take model settings, not
    a list of layers, so a slice such as ``model[:-1]`` (the feature extractor of a
    classifier) cannot be rebuilt with ``type(self)``; Objax returns a ``Sequential``.
    """

    def __getitem__(self, key: Union[int, slice]) -> Any:
        value = list.__getitem__(self, key)
        return Sequential(value) if isinstance(key, slice) else value


def mean_hw(x: jax.Array) -> jax.Array:
    """Global average pooling: the mean over height and width, ``(N, C, H, W)`` → ``(N, C)``."""
    return x.mean((2, 3))


def scaled_normal(kernel_size: int, nout: int) -> Callable[..., jax.Array]:
    """A normal initializer with standard deviation ``1 / sqrt(0.5 * k * k * nout)``.

    This is the fan-out He initialization the WideResNet and ResNet-v2 zoo models use for
    their convolutions (``k`` is the kernel size, ``nout`` the output channels).
    """
    stddev = 1 / math.sqrt(0.5 * kernel_size * kernel_size * nout)
    return functools.partial(random.normal, stddev=stddev)
