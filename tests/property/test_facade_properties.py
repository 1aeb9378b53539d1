"""``bridge.Jit``, ``bridge.Vectorize`` and ``bridge.GradValues`` agree with plain JAX.

Over generated small MLPs (1-3 ``Linear`` layers of widths 1-4, float32, tanh between
layers, sometimes a gain shared under two names) the facades are compared with
``jax.jit``, ``jax.vmap`` and ``jax.grad`` applied to the same network written out as a
pure function of a pytree of the same arrays (``strategies.reference_mlp``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings

import bridge

from .strategies import (
    MLP,
    at,
    mlp_data,
    mlp_params,
    mlp_variables,
    mlps,
    reference_loss,
    reference_mlp,
)

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# Every example compiles anew (a facade compiles per instance, and most examples bring new
# shapes), so these tests run two thirds of the profile's examples.
compiling = settings(max_examples=max(10, settings().max_examples * 2 // 3))

# Compiled once per shape, shared by every example (the facades compile per instance).
reference_jit = jax.jit(reference_mlp)
reference_vmap = jax.vmap(reference_mlp, in_axes=(None, 0))
reference_value_and_grad = jax.value_and_grad(reference_loss)
reference_per_example = jax.vmap(jax.value_and_grad(reference_loss), in_axes=(None, 0, 0))
reference_jit_value_and_grad = jax.jit(reference_value_and_grad)


def loss_of(model):
    def loss(x, y):
        return jnp.mean((model(x) - y) ** 2)
    return loss


def assert_gradients_match(model, gradients, reference):
    """``gradients`` (one per TrainVar, in the collection's order, a shared weight once)
    equal the reference pytree's gradients at the same variables."""
    trainable = list(model.vars().subset(bridge.TrainVar))
    assert len(gradients) == len(trainable)
    paths = mlp_variables(model)
    assert sorted(paths.values()) == sorted(paths[id(v)] for v in trainable)
    for var, g in zip(trainable, gradients):
        np.testing.assert_allclose(g, at(reference, paths[id(var)]), **TOLERANCE,
                                   err_msg=str(paths[id(var)]))


@compiling
@given(spec=mlps)
def test_jit_output_matches_jax_jit(spec):
    """bridge.Jit(model)(x) equals jax.jit of the same network as a pure function."""
    model = MLP(spec)
    x, _ = mlp_data(spec)
    expected = reference_jit(mlp_params(model), x)
    np.testing.assert_allclose(bridge.Jit(model)(x), expected, **TOLERANCE)


@compiling
@given(spec=mlps)
def test_vectorize_output_matches_jax_vmap(spec):
    """bridge.Vectorize(model) over the batch axis equals jax.vmap of the pure network
    over single examples."""
    model = MLP(spec)
    x, _ = mlp_data(spec)
    expected = reference_vmap(mlp_params(model), x)
    np.testing.assert_allclose(bridge.Vectorize(model, batch_axis=(0,))(x), expected,
                               **TOLERANCE)


@compiling
@given(spec=mlps)
def test_grad_values_match_jax_value_and_grad(spec):
    """bridge.GradValues(loss, model.vars()) gives jax.grad of the pure loss for each
    TrainVar (a shared weight once, with the sum of its uses) and the loss value."""
    model = MLP(spec)
    x, y = mlp_data(spec)
    gradients, values = bridge.GradValues(loss_of(model), model.vars())(x, y)
    value, reference = reference_value_and_grad(mlp_params(model), x, y)
    np.testing.assert_allclose(values[0], value, **TOLERANCE)
    assert_gradients_match(model, gradients, reference)


@compiling
@given(spec=mlps)
def test_vectorized_grad_values_match_vmap_of_grad(spec):
    """Vectorize(GradValues(...)) gives the per-example gradients and losses of
    jax.vmap(jax.value_and_grad(pure loss))."""
    model = MLP(spec)
    x, y = mlp_data(spec)
    per_example = bridge.Vectorize(bridge.GradValues(loss_of(model), model.vars()),
                                   batch_axis=(0, 0))
    gradients, values = per_example(x, y)
    value, reference = reference_per_example(mlp_params(model), x, y)
    np.testing.assert_allclose(values[0], value, **TOLERANCE)
    assert_gradients_match(model, gradients, reference)


@compiling
@given(spec=mlps)
def test_jit_of_grad_values_matches_jit_of_value_and_grad(spec):
    """Jit(GradValues(...)) gives what jax.jit(jax.value_and_grad(pure loss)) gives."""
    model = MLP(spec)
    x, y = mlp_data(spec)
    gradients, values = bridge.Jit(bridge.GradValues(loss_of(model), model.vars()))(x, y)
    value, reference = reference_jit_value_and_grad(mlp_params(model), x, y)
    np.testing.assert_allclose(values[0], value, **TOLERANCE)
    assert_gradients_match(model, gradients, reference)
