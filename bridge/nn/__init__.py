"""Ready-made layers and weight initializers (``bridge.nn.init``)."""

from bridge.functional._padding import ConvPadding
from bridge.nn import init
from bridge.nn._layers import (
    BatchNorm,
    BatchNorm0D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dropout,
    Linear,
    Sequential,
)

__all__ = [
    "BatchNorm",
    "BatchNorm0D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Conv2D",
    "ConvPadding",
    "Dropout",
    "Linear",
    "Sequential",
    "init",
]
