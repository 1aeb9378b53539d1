"""bridge.pure.grad_values: GradValues semantics on any pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

PARAMS = {"dense": {"kernel": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "bias": jnp.array([0.5, -0.5])}}
X = jnp.array([[1.0, -1.0], [2.0, 0.5]])


def loss(params, x):
    y = x @ params["dense"]["kernel"] + params["dense"]["bias"]
    return (y ** 2).mean()


def test_grads_match_jax_grad_on_a_params_dict():
    grads, values = bridge.pure.grad_values(loss)(PARAMS, X)
    expected = jax.grad(loss)(PARAMS, X)
    jax.tree_util.tree_map(np.testing.assert_allclose, grads, expected)
    assert isinstance(values, list) and len(values) == 1
    np.testing.assert_allclose(values[0], loss(PARAMS, X))


def test_tuple_output_differentiates_first_and_returns_all():
    def two(params, x):
        return loss(params, x), params["dense"]["bias"].sum()

    grads, values = bridge.pure.grad_values(two)(PARAMS, X)
    jax.tree_util.tree_map(np.testing.assert_allclose, grads, jax.grad(loss)(PARAMS, X))
    assert len(values) == 2 and float(values[1]) == 0.0


def test_argnums_tuple_gives_tuple_of_grads():
    grads, _ = bridge.pure.grad_values(loss, argnums=(0, 1))(PARAMS, X)
    expected = jax.grad(loss, argnums=(0, 1))(PARAMS, X)
    assert isinstance(grads, tuple) and len(grads) == 2
    np.testing.assert_allclose(grads[1], expected[1])


def test_has_aux_passes_aux_through():
    def with_aux(params, x):
        return loss(params, x), {"n": x.shape[0]}

    grads, values, aux = bridge.pure.grad_values(with_aux, has_aux=True)(PARAMS, X)
    assert aux == {"n": 2} and len(values) == 1


def test_non_scalar_loss_is_a_type_error_naming_the_shape():
    with pytest.raises(TypeError, match=r"shape \(2, 2\)"):
        bridge.pure.grad_values(lambda p, x: x @ p["dense"]["kernel"])(PARAMS, X)


def test_works_under_jit():
    grads, _ = jax.jit(bridge.pure.grad_values(loss))(PARAMS, X)
    jax.tree_util.tree_map(np.testing.assert_allclose, grads, jax.grad(loss)(PARAMS, X))
