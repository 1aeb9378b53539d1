"""Batch normalization whose batch statistics are averaged over the devices of ``Parallel``."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp

from bridge.functional import parallel
from bridge.nn._layers import BatchNorm, BatchNorm0D, BatchNorm1D, BatchNorm2D
from bridge.state._access import commit
from bridge.state._repr import class_path

__all__ = ["SyncedBatchNorm", "SyncedBatchNorm0D", "SyncedBatchNorm1D", "SyncedBatchNorm2D"]


class SyncedBatchNorm(BatchNorm):
    """``BatchNorm`` that, in training, normalizes with the statistics of the whole batch.

    Inside ``bridge.Parallel`` each device sees only its slice of the batch. A plain
    ``BatchNorm`` would normalize each slice with its own mean and variance; this layer
    averages them over the devices first (``pmean`` over ``axis_name``), so the output and
    the running statistics are those of ``BatchNorm`` applied to the whole batch on one
    device (the slices have equal sizes, so the mean of the per-device means is the batch
    mean). In evaluation it is ``BatchNorm``.

    Args:
      dims: shape of the statistics and of ``beta``/``gamma`` (1 on reduced axes).
      redux: axes averaged over to get the batch statistics.
      momentum: running stats move by ``(1 - momentum) * (batch - running)`` per call.
      eps: added to the variance before the square root.
      axis_name: the ``axis_name`` of the ``Parallel`` that runs the layer.

    Variables are those of ``BatchNorm``: ``running_mean``, ``running_var``, ``beta``,
    ``gamma``, all of shape ``dims``.

    Example::

        bn = bridge.nn.SyncedBatchNorm0D(4)
        train = bridge.Parallel(lambda x: bn(x, training=True), bn.vars())
        with bn.vars().replicate():
            y = train(x)       # x: (64, 4); y equals BatchNorm0D(4)(x, training=True)
    """

    def __init__(self, dims: Iterable[int], redux: Iterable[int], momentum: float = 0.999,
                 eps: float = 1e-6, axis_name: str = "device"):
        dims = tuple(dims)
        super().__init__(dims, redux, momentum, eps)
        self.dims = dims
        self.axis_name = axis_name

    def __call__(self, x: jax.Array, training: bool,
                 batch_norm_update: bool = True) -> jax.Array:
        """Normalize ``x`` (same shape out).

        ``training=True`` uses the mean and (biased) variance over ``redux`` and over all
        devices, and, if ``batch_norm_update``, moves the running statistics towards them;
        ``training=False`` uses the running statistics.

        Raises:
          NameError: in training, outside a ``Parallel`` whose ``axis_name`` is this
            layer's.
        """
        if not training:
            return super().__call__(x, training=False)
        mean = self._across_devices(jnp.mean(x, axis=self.redux, keepdims=True))
        var = self._across_devices(
            jnp.mean(jnp.square(x - mean), axis=self.redux, keepdims=True))
        if batch_norm_update:
            rate = 1 - self.momentum
            # Both statistics or neither (see bridge.state._access.commit).
            commit([self.running_mean, self.running_var],
                   [self.running_mean.value + rate * (mean - self.running_mean.value),
                    self.running_var.value + rate * (var - self.running_var.value)],
                   owner=type(self).__name__)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.gamma.value + self.beta.value

    def _across_devices(self, statistic: jax.Array) -> jax.Array:
        try:
            return parallel.pmean(statistic, self.axis_name)
        except NameError as error:
            raise NameError(
                f"{type(self).__name__} in training averages its batch statistics over the "
                f"devices of a bridge.Parallel with axis_name={self.axis_name!r}, but it was "
                "called outside one. Run it inside Parallel, or use the plain BatchNorm layer "
                "on a single device.") from error

    def _axis_repr(self) -> str:
        return "" if self.axis_name == "device" else f", axis_name={self.axis_name!r}"

    def __repr__(self) -> str:
        return (f"{class_path(self)}(dims={self.dims}, redux={self.redux}, momentum="
                f"{self.momentum}, eps={self.eps}{self._axis_repr()})")


class _SyncedForInputRank(SyncedBatchNorm):
    """Shared constructor and repr of the rank-specific layers below."""

    _plain: type[BatchNorm]

    def __init__(self, nin: int, momentum: float = 0.999, eps: float = 1e-6,
                 axis_name: str = "device"):
        # The plain layer's constructor knows the statistics' shape and reduced axes.
        self._plain.__init__(self, nin, momentum, eps)
        self.dims = tuple(self.beta.value.shape)
        self.nin = nin
        self.axis_name = axis_name

    def __repr__(self) -> str:
        return (f"{class_path(self)}(nin={self.nin}, momentum={self.momentum}, eps={self.eps}"
                f"{self._axis_repr()})")


class SyncedBatchNorm0D(_SyncedForInputRank, BatchNorm0D):
    """``SyncedBatchNorm`` for ``(N, nin)`` inputs: statistics per feature, shape ``(1, nin)``.

    An instance of ``BatchNorm0D`` too, with the same variables.

    Example::

        bn = bridge.nn.SyncedBatchNorm0D(8)
        step = bridge.Parallel(lambda x: bn(x, training=True), bn.vars())
        with bn.vars().replicate():
            step(x).shape      # x: (64, 8) -> (64, 8)
    """

    _plain = BatchNorm0D


class SyncedBatchNorm1D(_SyncedForInputRank, BatchNorm1D):
    """``SyncedBatchNorm`` for ``(N, nin, L)`` inputs: per channel, shape ``(1, nin, 1)``.

    An instance of ``BatchNorm1D`` too, with the same variables.

    Example::

        bn = bridge.nn.SyncedBatchNorm1D(4)
        step = bridge.Parallel(lambda x: bn(x, training=True), bn.vars())
        with bn.vars().replicate():
            step(x).shape      # x: (64, 4, 16) -> (64, 4, 16)
    """

    _plain = BatchNorm1D


class SyncedBatchNorm2D(_SyncedForInputRank, BatchNorm2D):
    """``SyncedBatchNorm`` for NCHW inputs: per channel, statistics of shape ``(1, nin, 1, 1)``.

    An instance of ``BatchNorm2D`` too, with the same variables.

    Example::

        bn = bridge.nn.SyncedBatchNorm2D(3)
        step = bridge.Parallel(lambda x: bn(x, training=True), bn.vars())
        with bn.vars().replicate():
            step(x).shape      # x: (64, 3, 16, 16) -> (64, 3, 16, 16)
    """

    _plain = BatchNorm2D
