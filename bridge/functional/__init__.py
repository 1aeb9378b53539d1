"""Stateless functions for models: activations, operations, pooling, losses, divergences.

Activations are JAX's own (``jax.nn``); the image functions use the NCHW layout of
``bridge.nn.Conv2D``; ``bridge.functional.loss`` holds the per-example losses and
``bridge.functional.divergence`` the divergences. The same functions are reachable under
Objax's module paths ``bridge.functional.core.{activation, ops, pooling}``.

Example::

    import bridge.functional as F

    h = F.relu(conv(x))                            # x: (N, C, H, W)
    h = F.flatten(F.max_pool_2d(h, 2))             # (N, C * H/2 * W/2)
    loss = F.loss.cross_entropy_logits_sparse(head(h), labels).mean()
"""

from bridge.functional import core, divergence, loss, parallel
from bridge.functional._interpolate import Interpolate
from bridge.functional._padding import ConvPadding
from bridge.functional.core.activation import (
    celu,
    elu,
    gelu,
    leaky_relu,
    log_sigmoid,
    log_softmax,
    logsumexp,
    relu,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    swish,
    tanh,
)
from bridge.functional.core.ops import (
    dynamic_slice,
    flatten,
    interpolate,
    one_hot,
    pad,
    rsqrt,
    scan,
    stop_gradient,
    top_k,
    upsample_2d,
    upscale_nn,
)
from bridge.functional.core.pooling import (
    average_pool_2d,
    batch_to_space2d,
    channel_to_space2d,
    max_pool_2d,
    space_to_batch2d,
    space_to_channel2d,
)

__all__ = [
    "ConvPadding",
    "Interpolate",
    "average_pool_2d",
    "batch_to_space2d",
    "celu",
    "channel_to_space2d",
    "core",
    "divergence",
    "dynamic_slice",
    "elu",
    "flatten",
    "gelu",
    "interpolate",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "loss",
    "max_pool_2d",
    "one_hot",
    "pad",
    "parallel",
    "relu",
    "rsqrt",
    "scan",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "space_to_batch2d",
    "space_to_channel2d",
    "stop_gradient",
    "swish",
    "tanh",
    "top_k",
    "upsample_2d",
    "upscale_nn",
]
