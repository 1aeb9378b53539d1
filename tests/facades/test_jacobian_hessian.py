"""Objax-style ``bridge.Jacobian`` and ``bridge.Hessian``: lists, inputs first (in
``input_argnums`` order) then the ``TrainVar``s of the collection, against jax.jacrev and
jax.hessian, outside and inside ``bridge.Jit``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


class Layer(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([[1.0, 2.0], [3.0, 4.0], [0.5, -1.0]]) / 4)
        self.b = bridge.TrainVar(jnp.array([0.1, -0.2]))
        self.scale = bridge.StateVar(jnp.array(2.0))  # not differentiated

    def __call__(self, x):
        return jnp.tanh(x @ self.w.value + self.b.value) * self.scale.value


def layer_ref(x, w, b, scale=2.0):
    return jnp.tanh(x @ w + b) * scale


X = jnp.array([0.3, -0.7, 1.1])
Z = jnp.array([2.0, -1.0])


def close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def check_list(actual, expected, **kw):
    assert isinstance(actual, list) and len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert np.shape(a) == np.shape(e)
        close(a, e, **kw)


def check_blocks(actual, expected, **kw):
    assert isinstance(actual, list) and len(actual) == len(expected)
    for row, ref_row in zip(actual, expected):
        check_list(row, list(ref_row), **kw)


# ----- Jacobian ---------------------------------------------------------------------------

def test_jacobian_lists_input_then_train_vars_like_jax_jacrev():
    m = Layer()
    jac = bridge.Jacobian(m, m.vars(), input_argnums=(0,))(X)
    expected = jax.jacrev(layer_ref, argnums=(0, 1, 2))(X, m.w.value, m.b.value)
    check_list(jac, list(expected))
    assert [j.shape for j in jac] == [(2, 3), (2, 3, 2), (2, 2)]


def test_jacobian_without_input_argnums_lists_only_train_vars():
    m = Layer()
    jac = bridge.Jacobian(m, m.vars())(X)
    expected = jax.jacrev(layer_ref, argnums=(1, 2))(X, m.w.value, m.b.value)
    check_list(jac, list(expected))


def test_jacobian_input_argnums_order_is_kept():
    m = Layer()

    def f(x, z):
        return m(x) * z

    def ref(x, z, w, b):
        return layer_ref(x, w, b) * z

    jac = bridge.Jacobian(f, m.vars(), input_argnums=(1, 0))(X, Z)
    dz, dx, dw, db = jax.jacrev(ref, argnums=(1, 0, 2, 3))(X, Z, m.w.value, m.b.value)
    check_list(jac, [dz, dx, dw, db])


def test_jacobian_of_function_with_collection_of_train_vars_only():
    m = Layer()
    vc = bridge.VarCollection({"w": m.w})
    jac = bridge.Jacobian(lambda x: m(x), vc, input_argnums=(0,))(X)
    expected = jax.jacrev(layer_ref, argnums=(0, 1))(X, m.w.value, m.b.value)
    check_list(jac, list(expected))


def test_jacobian_inside_jit_matches_outside():
    m = Layer()
    jac = bridge.Jacobian(m, m.vars(), input_argnums=(0,))
    check_list(bridge.Jit(jac)(X), jac(X))
    check_list(bridge.Jit(jac, m.vars())(X),
               list(jax.jacrev(layer_ref, argnums=(0, 1, 2))(X, m.w.value, m.b.value)))


def test_jacobian_inside_jit_follows_variable_updates():
    m = Layer()
    jitted = bridge.Jit(bridge.Jacobian(m, m.vars(), input_argnums=(0,)))
    jitted(X)
    m.w.assign(m.w.value * -2)  # a TrainVar is overwritten with assign (Objax semantics)
    expected = jax.jacrev(layer_ref, argnums=(0, 1, 2))(X, m.w.value, m.b.value)
    check_list(jitted(X), list(expected))


def test_jacobian_leaves_variables_unchanged():
    m = Layer()
    before = [np.asarray(v.value) for v in m.vars().values()]
    bridge.Jacobian(m, m.vars(), input_argnums=(0,))(X)
    for b, v in zip(before, m.vars().values()):
        np.testing.assert_array_equal(np.asarray(v.value), b)
        assert not isinstance(v.value, jax.core.Tracer)


def test_jacobian_vars_are_the_given_collection():
    m = Layer()
    jac = bridge.Jacobian(m, m.vars())
    assert list(jac.vars().keys()) == list(m.vars().keys())


# ----- Hessian ----------------------------------------------------------------------------

def scalar_loss_ref(x, w, b):
    return (layer_ref(x, w, b) ** 2).sum() + (x ** 3).sum()


def scalar_loss(m):
    return lambda x: (m(x) ** 2).sum() + (x ** 3).sum()


def test_hessian_blocks_input_first_like_jax_hessian():
    m = Layer()
    h = bridge.Hessian(scalar_loss(m), m.vars(), input_argnums=(0,))(X)
    expected = jax.jit(jax.hessian(scalar_loss_ref, argnums=(0, 1, 2)))(X, m.w.value, m.b.value)
    check_blocks(h, expected, rtol=1e-4)
    assert h[0][1].shape == (3, 3, 2) and h[1][0].shape == (3, 2, 3)


def test_hessian_without_inputs_covers_train_vars_only():
    m = Layer()
    h = bridge.Hessian(scalar_loss(m), m.vars())(X)
    expected = jax.jit(jax.hessian(scalar_loss_ref, argnums=(1, 2)))(X, m.w.value, m.b.value)
    check_blocks(h, expected, rtol=1e-4)


def test_hessian_of_quadratic_input_is_two_identity():
    h = bridge.Hessian(lambda x: (x ** 2).sum(), bridge.VarCollection(), input_argnums=(0,))(X)
    check_blocks(h, [[2 * jnp.eye(3)]])


def test_hessian_input_argnums_order_is_kept():
    def f(x, z):
        return jnp.sum(jnp.sin(x)) * jnp.sum(z ** 2)

    h = bridge.Hessian(f, bridge.VarCollection(), input_argnums=(1, 0))(X, Z)
    expected = jax.jit(jax.hessian(f, argnums=(1, 0)))(X, Z)
    check_blocks(h, expected)


def test_hessian_inside_jit_matches_jax_hessian():
    m = Layer()
    hess = bridge.Hessian(scalar_loss(m), m.vars(), input_argnums=(0,))
    expected = jax.jit(jax.hessian(scalar_loss_ref, argnums=(0, 1, 2)))(X, m.w.value, m.b.value)
    check_blocks(bridge.Jit(hess)(X), expected, rtol=1e-4)
    check_blocks(bridge.Jit(hess, m.vars())(X), expected, rtol=1e-4)


def test_hessian_of_non_scalar_output_raises_type_error_with_shape():
    m = Layer()
    with pytest.raises(TypeError, match=r"\(2,\)"):
        bridge.Hessian(m, m.vars(), input_argnums=(0,))(X)
