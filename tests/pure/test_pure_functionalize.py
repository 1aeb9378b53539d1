"""bridge.pure.functionalize: object code as a pure function, usable with plain JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


class Net(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([[1.0], [-2.0]]))
        self.calls = bridge.StateVar(jnp.zeros(()))

    def __call__(self, x):
        self.calls.value += 1
        return x @ self.w.value


X = jnp.array([[1.0, 2.0], [3.0, 4.0]])


def test_values_follow_tensors_order_and_new_values_are_returned():
    m = Net()
    vc = m.vars()
    apply = bridge.pure.functionalize(m, vc)
    out, new = apply(vc.tensors(), X)
    np.testing.assert_allclose(out, X @ m.w.value)
    assert float(new[1]) == 1.0
    assert float(m.calls.value) == 0.0  # the module itself is untouched


def test_functionalized_module_works_under_jax_jit_and_grad():
    m = Net()
    vc = m.vars()
    apply = bridge.pure.functionalize(m, vc)

    def loss(values, x):
        out, _ = apply(values, x)
        return (out ** 2).mean()

    g = jax.jit(jax.grad(loss))(vc.tensors(), X)
    expected = jax.grad(lambda w: ((X @ w) ** 2).mean())(m.w.value)
    np.testing.assert_allclose(g[0], expected, rtol=1e-6)


def test_functionalize_under_vmap():
    m = Net()
    vc = m.vars()
    apply = bridge.pure.functionalize(m, vc)
    out, _ = jax.vmap(apply, in_axes=(None, 0))(vc.tensors(), X)
    np.testing.assert_allclose(out, X @ m.w.value)


def test_undeclared_read_under_jax_jit_is_an_error():
    m = Net()
    other = Net()
    apply = bridge.pure.functionalize(lambda x: m(x) + other(x), m.vars())
    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(Net\)"):
        jax.jit(apply)(m.vars().tensors(), X)


def test_wrong_number_of_values_is_an_error():
    m = Net()
    apply = bridge.pure.functionalize(m, m.vars())
    with pytest.raises(ValueError, match="expected 2 values"):
        apply([jnp.zeros((2, 1))], X)


def test_changed_entries_reports_replaced_positions():
    a, b, c = jnp.zeros(1), jnp.ones(1), jnp.ones(2)
    assert list(bridge.pure.changed_entries([a, b], [a, c])) == [1]
