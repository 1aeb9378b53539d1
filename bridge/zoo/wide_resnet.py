"""Wide residual networks (Zagoruyko & Komodakis, https://arxiv.org/abs/1605.07146), with
Objax's module path, names and variable layout (``objax.zoo.wide_resnet``)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax

from bridge import functional
from bridge.functional import ConvPadding
from bridge.nn import BatchNorm2D, Conv2D, Linear
from bridge.nn.init import xavier_truncated_normal
from bridge.state import Module
from bridge.zoo._common import ZooSequential, mean_hw, scaled_normal

__all__ = ["WRNBlock", "WideResNetGeneral", "WideResNet"]

BN_MOM = 0.9
"""Momentum of the default batch normalization (``BatchNorm2D(momentum=BN_MOM)``)."""
BN_EPS = 1e-5
"""Epsilon of the default batch normalization."""

_default_bn = functools.partial(BatchNorm2D, momentum=BN_MOM, eps=BN_EPS)


def conv_args(kernel_size: int, nout: int) -> dict[str, Any]:
    """The ``Conv2D`` keyword arguments every WideResNet convolution shares.

    Args:
      kernel_size: the (square) kernel size.
      nout: output channels.

    Returns:
      ``dict(w_init=..., use_bias=False, padding=ConvPadding.SAME)`` where ``w_init`` draws
      normal weights of standard deviation ``1 / sqrt(0.5 * kernel_size**2 * nout)``.
    """
    return dict(w_init=scaled_normal(kernel_size, nout), use_bias=False,
                padding=ConvPadding.SAME)


class WRNBlock(Module):
    """A pre-activation residual block: BN, ReLU, 3x3 conv, BN, ReLU, 3x3 conv, plus shortcut.

    Args:
      nin: input channels.
      nout: output channels.
      stride: stride of the first 3x3 convolution and of the projection.
      bn: called as ``bn(channels)`` to make each normalization layer; it must be called as
        ``layer(x, training)``.

    When ``nin != nout`` or ``stride > 1`` the shortcut is a 1x1 convolution
    (``proj_conv``) of the first activation; otherwise it is the input itself and
    ``proj_conv`` is ``None``. Variables, in order: ``proj_conv`` (if any), ``norm_1``,
    ``conv_1``, ``norm_2``, ``conv_2``. Input ``(N, nin, H, W)``, output
    ``(N, nout, ceil(H / stride), ceil(W / stride))``.

    Example::

        block = WRNBlock(16, 32, stride=2)
        block(jnp.zeros((4, 16, 8, 8)), training=True).shape    # (4, 32, 4, 4)
    """

    def __init__(self, nin: int, nout: int, stride: int = 1,
                 bn: Callable[[int], Module] = _default_bn):
        if nin != nout or stride > 1:
            self.proj_conv = Conv2D(nin, nout, 1, strides=stride, **conv_args(1, nout))
        else:
            self.proj_conv = None
        self.norm_1 = bn(nin)
        self.conv_1 = Conv2D(nin, nout, 3, strides=stride, **conv_args(3, nout))
        self.norm_2 = bn(nout)
        self.conv_2 = Conv2D(nout, nout, 3, strides=1, **conv_args(3, nout))

    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        """Apply the block; ``training`` selects batch (True) or running (False) statistics."""
        o1 = functional.relu(self.norm_1(x, training))
        y = self.conv_1(o1)
        o2 = functional.relu(self.norm_2(y, training))
        z = self.conv_2(o2)
        # The projection reads the normalized activation, not the raw input.
        shortcut = x if self.proj_conv is None else self.proj_conv(o1)
        return z + shortcut


class WideResNetGeneral(ZooSequential):
    """A WideResNet with any number of block groups.

    Args:
      nin: channels of the input images.
      nclass: number of classes.
      blocks_per_group: the number of ``WRNBlock`` in each group; group ``i`` has
        ``int(16 * 2**i * width)`` channels and, except the first, starts with stride 2.
      width: the widening factor.
      bn: called as ``bn(channels)`` to make each normalization layer.

    Layers: a 3x3 ``Conv2D(nin, 16)``, the blocks (flattened into this ``Sequential``, one
    entry per block), ``bn``, ReLU, the mean over height and width, and a ``Linear`` to
    ``nclass`` logits. Input ``(N, nin, H, W)``, output ``(N, nclass)``; call it as
    ``model(x, training=...)``.

    Example::

        model = WideResNetGeneral(3, 10, blocks_per_group=[2, 2], width=1)
        model(jnp.zeros((4, 3, 32, 32)), training=False).shape   # (4, 10)
        features = model[:-1]                                    # up to the pooled features
    """

    def __init__(self, nin: int, nclass: int, blocks_per_group: Sequence[int], width: float,
                 bn: Callable[[int], Module] = _default_bn):
        channels = [int(16 * 2 ** i * width) for i in range(len(blocks_per_group))]
        n = 16
        layers: list = [Conv2D(nin, n, 3, **conv_args(3, n))]
        for group, (num_blocks, nout) in enumerate(zip(blocks_per_group, channels)):
            layers.append(WRNBlock(n, nout, 2 if group > 0 else 1, bn))
            layers += [WRNBlock(nout, nout, 1, bn) for _ in range(1, num_blocks)]
            n = nout
        layers += [bn(n), functional.relu, self.mean_reduce,
                   Linear(n, nclass, w_init=xavier_truncated_normal)]
        super().__init__(layers)

    @staticmethod
    def mean_reduce(x: jax.Array) -> jax.Array:
        """The mean over height and width: ``(N, C, H, W)`` → ``(N, C)``."""
        return mean_hw(x)


class WideResNet(WideResNetGeneral):
    """WRN-``depth``-``width`` with three groups, as in the paper.

    Args:
      nin: channels of the input images.
      nclass: number of classes.
      depth: number of convolution layers; ``depth - 4`` must be a multiple of 6, and each
        group gets ``(depth - 4) // 6`` blocks.
      width: the widening factor (group channels ``16 * width``, ``32 * width``,
        ``64 * width``).
      bn: called as ``bn(channels)`` to make each normalization layer.

    Example::

        model = WideResNet(nin=3, nclass=10, depth=28, width=2)    # WRN-28-2
        logits = model(jnp.zeros((4, 3, 32, 32)), training=True)  # (4, 10)
    """

    def __init__(self, nin: int, nclass: int, depth: int = 28, width: float = 2,
                 bn: Callable[[int], Module] = _default_bn):
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet: depth must be 6n+4 (10, 16, 22, 28, ...), got {depth}.")
        super().__init__(nin, nclass, [(depth - 4) // 6] * 3, width, bn)
