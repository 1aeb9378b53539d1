"""Activation functions (Objax's ``functional.core.activation``)."""

from bridge.functional._activation import (
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

__all__ = ["celu", "elu", "gelu", "leaky_relu", "log_sigmoid", "log_softmax", "logsumexp",
           "relu", "selu", "sigmoid", "silu", "softmax", "softplus", "swish", "tanh"]
