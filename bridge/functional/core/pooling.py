"""Pooling and block rearrangements of NCHW images (Objax's ``functional.core.pooling``)."""

from bridge.functional._pooling import (
    average_pool_2d,
    batch_to_space2d,
    channel_to_space2d,
    max_pool_2d,
    space_to_batch2d,
    space_to_channel2d,
)

__all__ = ["average_pool_2d", "batch_to_space2d", "channel_to_space2d", "max_pool_2d",
           "space_to_batch2d", "space_to_channel2d"]
