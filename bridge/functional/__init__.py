"""Stateless functions for models: activations, pooling, reshaping and losses.

Activations are JAX's own (``jax.nn``); the image functions use the NCHW layout of
``bridge.nn.Conv2D``; ``bridge.functional.loss`` holds the per-example losses.

Example::

    import bridge.functional as F

    h = F.relu(conv(x))                            # x: (N, C, H, W)
    h = F.flatten(F.max_pool_2d(h, 2))             # (N, C * H/2 * W/2)
    loss = F.loss.cross_entropy_logits_sparse(head(h), labels).mean()
"""

import jax
import jax.numpy as jnp

from bridge.functional import loss
from bridge.functional._ops import average_pool_2d, flatten, max_pool_2d, upsample_2d, upscale_nn
from bridge.functional._padding import ConvPadding

# Activations and friends, straight from JAX.
celu = jax.nn.celu
elu = jax.nn.elu
gelu = jax.nn.gelu
leaky_relu = jax.nn.leaky_relu
log_sigmoid = jax.nn.log_sigmoid
log_softmax = jax.nn.log_softmax
logsumexp = jax.nn.logsumexp
one_hot = jax.nn.one_hot
relu = jax.nn.relu
selu = jax.nn.selu
sigmoid = jax.nn.sigmoid
silu = jax.nn.silu
softmax = jax.nn.softmax
softplus = jax.nn.softplus
swish = jax.nn.swish
tanh = jnp.tanh

# Small array helpers Objax exposes here.
dynamic_slice = jax.lax.dynamic_slice
rsqrt = jax.lax.rsqrt
stop_gradient = jax.lax.stop_gradient
top_k = jax.lax.top_k

__all__ = [
    "ConvPadding",
    "average_pool_2d",
    "celu",
    "dynamic_slice",
    "elu",
    "flatten",
    "gelu",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "loss",
    "max_pool_2d",
    "one_hot",
    "relu",
    "rsqrt",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "stop_gradient",
    "swish",
    "tanh",
    "top_k",
    "upsample_2d",
    "upscale_nn",
]
