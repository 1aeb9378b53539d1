"""A plain convolutional classifier, Objax's ``objax.zoo.convnet.ConvNet``."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

from bridge import functional
from bridge.nn import Conv2D
from bridge.zoo._common import ZooSequential, mean_hw

__all__ = ["ConvNet"]


class ConvNet(ZooSequential):
    """3x3 convolutions with leaky ReLUs, pooled by 2 at each scale, then a global mean.

    Args:
      nin: channels of the input images.
      nclass: number of classes (channels of the last convolution, then logits).
      scales: number of poolings; each halves the height and width.
      filters: channels of the first convolution; doubled at every scale ...
      filters_max: ... but never above this.
      pooling: a pooling function called as ``pooling(x, size=2, strides=2)``
        (``bridge.functional.max_pool_2d`` or ``average_pool_2d``).
      **kwargs: accepted and ignored (as in Objax, so that configuration dictionaries with
        extra entries can be passed as they are).

    Layers, with ``nf(s) = min(filters_max, filters * 2**s)``: ``Conv2D(nin, nf(0), 3)``;
    then per scale ``s`` two convolutions ``nf(s) → nf(s)`` and ``nf(s) → nf(s + 1)`` and the
    pooling; then ``Conv2D(nf(scales), nclass, 3)`` and the mean over height and width. Every
    convolution but the last is followed by ``leaky_relu``; all use SAME padding.
    Input ``(N, nin, H, W)``, output ``(N, nclass)``.

    Example::

        model = ConvNet(nin=3, nclass=10, scales=3, filters=32, filters_max=256)
        model(jnp.zeros((8, 3, 32, 32))).shape    # (8, 10)
    """

    def __init__(self, nin: int, nclass: int, scales: int, filters: int, filters_max: int,
                 pooling: Callable[..., jax.Array] = functional.max_pool_2d, **kwargs: Any):
        del kwargs

        def nf(scale: int) -> int:
            return min(filters_max, filters << scale)

        layers: list = [Conv2D(nin, nf(0), 3), functional.leaky_relu]
        for scale in range(scales):
            layers += [Conv2D(nf(scale), nf(scale), 3), functional.leaky_relu,
                       Conv2D(nf(scale), nf(scale + 1), 3), functional.leaky_relu,
                       functools.partial(pooling, size=2, strides=2)]
        layers += [Conv2D(nf(scales), nclass, 3), self._mean_reduce]
        super().__init__(layers)

    @staticmethod
    def _mean_reduce(x: jax.Array) -> jax.Array:
        """The mean over height and width: ``(N, C, H, W)`` → ``(N, C)``."""
        return mean_hw(x)
