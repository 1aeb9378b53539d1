"""Ready-made layers (Objax's ``objax.nn``) and weight initializers (``bridge.nn.init``)."""

from bridge.functional._padding import ConvPadding
from bridge.nn import init
from bridge.nn._layers import (
    BatchNorm,
    BatchNorm0D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    ExponentialMovingAverage,
    GroupNorm,
    GroupNorm0D,
    GroupNorm1D,
    GroupNorm2D,
    Linear,
    MovingAverage,
    Sequential,
)
from bridge.nn._synced_batchnorm import (
    SyncedBatchNorm,
    SyncedBatchNorm0D,
    SyncedBatchNorm1D,
    SyncedBatchNorm2D,
)

__all__ = [
    "BatchNorm",
    "BatchNorm0D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Conv2D",
    "ConvPadding",
    "ConvTranspose2D",
    "Dropout",
    "ExponentialMovingAverage",
    "GroupNorm",
    "GroupNorm0D",
    "GroupNorm1D",
    "GroupNorm2D",
    "Linear",
    "MovingAverage",
    "Sequential",
    "SyncedBatchNorm",
    "SyncedBatchNorm0D",
    "SyncedBatchNorm1D",
    "SyncedBatchNorm2D",
    "init",
]
