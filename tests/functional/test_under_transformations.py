"""Every bridge.functional op differentiates under ``jax.jit(jax.grad(...))`` and inside
``bridge.Jit(bridge.GradValues(...))``, with the gradients of plain ``jax.grad``, and those
gradients are the op's derivative (finite differences).

Eager calls alone hide bugs that only tracing shows: pooling once built its initial value as
an array, a tracer under ``jit``, and reverse-mode differentiation then failed.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
import bridge.functional as F
from bridge.functional import divergence, loss

X = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 6))      # NCHW
OTHER = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 6))
LABELS = jax.random.randint(jax.random.PRNGKey(2), (2, 4, 4), 0, 6)


def _scan(x):
    def cell(carry, row):
        return carry * jnp.tanh(row), carry + row

    return F.scan(cell, jnp.ones(x.shape[1:]), x)[1]


# Each op applied to the differentiated input x (other arguments fixed).
OPS = {
    # activations
    "celu": F.celu,
    "elu": F.elu,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
    "log_sigmoid": F.log_sigmoid,
    "log_softmax": F.log_softmax,
    "logsumexp": lambda x: F.logsumexp(x, axis=-1),
    "relu": F.relu,
    "selu": F.selu,
    "sigmoid": F.sigmoid,
    "silu": F.silu,
    "softmax": F.softmax,
    "softplus": F.softplus,
    "swish": F.swish,
    "tanh": F.tanh,
    # operations
    "dynamic_slice": lambda x: F.dynamic_slice(x, (0, 1, 1, 2), (2, 2, 2, 3)),
    "flatten": F.flatten,
    "interpolate": lambda x: F.interpolate(x, size=(5, 9)),
    "one_hot": lambda x: F.one_hot(LABELS, 6) * x,
    "pad": lambda x: F.pad(x, ((0, 0), (0, 0), (1, 2), (2, 1)), mode="reflect"),
    "rsqrt": lambda x: F.rsqrt(1 + x ** 2),
    "scan": _scan,
    "stop_gradient": lambda x: x * F.stop_gradient(x),
    "top_k": lambda x: F.top_k(x, 3)[0],
    "upsample_2d": lambda x: F.upsample_2d(x, (2, 3)),
    "upscale_nn": F.upscale_nn,
    # pooling and rearrangements
    "average_pool_2d": lambda x: F.average_pool_2d(x, 3, 1, "SAME"),
    "max_pool_2d": lambda x: F.max_pool_2d(x, 3, 2, 1),
    "batch_to_space2d": lambda x: F.batch_to_space2d(x, (1, 2)),
    "channel_to_space2d": lambda x: F.channel_to_space2d(x, 2),
    "space_to_batch2d": lambda x: F.space_to_batch2d(x, 2),
    "space_to_channel2d": lambda x: F.space_to_channel2d(x, (2, 3)),
    # losses and divergences
    "loss.cross_entropy_logits": lambda x: loss.cross_entropy_logits(x, F.softmax(OTHER)),
    "loss.cross_entropy_logits_sparse": lambda x: loss.cross_entropy_logits_sparse(x, LABELS),
    "loss.l2": loss.l2,
    "loss.mean_absolute_error": lambda x: loss.mean_absolute_error(x, OTHER),
    "loss.mean_squared_error": lambda x: loss.mean_squared_error(x, OTHER),
    "loss.mean_squared_log_error":
        lambda x: loss.mean_squared_log_error(jnp.abs(x), jnp.abs(OTHER)),
    "loss.sigmoid_cross_entropy_logits":
        lambda x: loss.sigmoid_cross_entropy_logits(x, F.sigmoid(OTHER)),
    "divergence.kl": lambda x: divergence.kl(F.softmax(x), F.softmax(OTHER)),
}

# Not functions of arrays: enums and sub-modules (parallel ops need a Parallel; their own
# tests run them under it).
NOT_OPS = {"ConvPadding", "Interpolate", "core", "divergence", "loss", "parallel"}


def _weights(op):
    """Fixed random weights of the op's output shape, so that every output counts."""
    shape = jax.eval_shape(op, X).shape
    return jax.random.normal(jax.random.PRNGKey(3), shape)


def _objective(name):
    op, weights = OPS[name], _weights(OPS[name])
    return lambda x: jnp.sum(op(x) * weights)


def test_every_public_op_has_a_case():
    public = {name for name in F.__all__ if name not in NOT_OPS}
    public |= {f"loss.{name}" for name in loss.__all__}
    public |= {f"divergence.{name}" for name in divergence.__all__}
    assert public == set(OPS)


@functools.cache
def _jit_grad(name):
    """The gradient at X under plain ``jax.jit(jax.grad(...))``."""
    return jax.jit(jax.grad(_objective(name)))(X)


@pytest.mark.parametrize("name", sorted(set(OPS) - {"stop_gradient"}))
def test_op_gradient_under_jax_jit_grad_is_its_derivative(name):
    # Central differences along random directions; stop_gradient is left out on purpose
    # (its gradient is not the derivative) and has its own test below.
    objective = jax.jit(_objective(name))
    grad, eps = _jit_grad(name), 1e-3
    for seed in range(3):
        v = jax.random.normal(jax.random.PRNGKey(10 + seed), X.shape)
        difference = (objective(X + eps * v) - objective(X - eps * v)) / (2 * eps)
        np.testing.assert_allclose(difference, jnp.vdot(grad, v), rtol=2e-2, atol=2e-2)


def test_stop_gradient_gradient_under_jax_jit_grad_treats_the_stopped_factor_as_constant():
    np.testing.assert_allclose(_jit_grad("stop_gradient"), X * _weights(OPS["stop_gradient"]),
                               rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_gradient_inside_bridge_jit_gradvalues_equals_plain_jax_jit_grad(name):
    objective = _objective(name)

    class Holder(bridge.Module):
        def __init__(self):
            self.x = bridge.TrainVar(X)

    holder = Holder()
    step = bridge.Jit(bridge.GradValues(lambda: objective(holder.x.value), holder.vars()))
    (grad,), (value,) = step()
    np.testing.assert_allclose(grad, _jit_grad(name), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(value, jax.jit(objective)(X), rtol=1e-5, atol=1e-6)
