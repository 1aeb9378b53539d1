"""Activation functions: JAX's own, under names that ``pickle`` can find again.

Most ``jax.nn`` activations are wrapped by ``jax.jit``/``jax.custom_jvp``, and ``pickle``
refuses them ("not the same object as jax._src.nn.functions.relu"), so a pickled
``Sequential([Linear(...), relu])`` would fail. Each one here is a plain function of this
module that forwards to JAX (same signature, same docstring, same derivatives).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["celu", "elu", "gelu", "leaky_relu", "log_sigmoid", "log_softmax", "logsumexp",
           "relu", "selu", "sigmoid", "silu", "softmax", "softplus", "swish", "tanh"]


def _forward(f: Callable, name: str) -> Callable:
    """``f`` as a function named ``name`` in this module (what ``pickle`` looks up)."""
    @functools.wraps(f)
    def forward(*args, **kwargs):
        return f(*args, **kwargs)

    forward.__module__ = __name__
    forward.__name__ = forward.__qualname__ = name
    return forward


celu = _forward(jax.nn.celu, "celu")
elu = _forward(jax.nn.elu, "elu")
leaky_relu = _forward(jax.nn.leaky_relu, "leaky_relu")
log_sigmoid = _forward(jax.nn.log_sigmoid, "log_sigmoid")
log_softmax = _forward(jax.nn.log_softmax, "log_softmax")
relu = _forward(jax.nn.relu, "relu")
selu = _forward(jax.nn.selu, "selu")
sigmoid = _forward(jax.nn.sigmoid, "sigmoid")
silu = _forward(jax.nn.silu, "silu")
softplus = _forward(jax.nn.softplus, "softplus")
swish = _forward(jax.nn.swish, "swish")
tanh = _forward(jnp.tanh, "tanh")

# These already pickle.
gelu = jax.nn.gelu
logsumexp = jax.nn.logsumexp
softmax = jax.nn.softmax
