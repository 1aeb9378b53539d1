"""GradValues and Grad: Objax's gradient conventions, checked against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


class Regression(bridge.Module):
    def __init__(self):
        self.b = bridge.TrainVar(jnp.array([0.1, -0.2, 0.3]))
        self.w = bridge.TrainVar(jnp.arange(6.0).reshape(2, 3) / 10)

    def __call__(self, x):
        return x @ self.w.value + self.b.value


X = jnp.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 1.0]])
Y = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])


def ref_loss(b, w, x, y):
    return (((x @ w + b) - y) ** 2).mean()


def test_gradients_and_value_match_jax_grad():
    m = Regression()

    @bridge.Function.with_vars(m.vars())
    def loss(x, y):
        return ((m(x) - y) ** 2).mean()

    g, v = bridge.GradValues(loss, m.vars())(X, Y)
    gb, gw = jax.grad(ref_loss, argnums=(0, 1))(m.b.value, m.w.value, X, Y)
    np.testing.assert_allclose(g[0], gb, rtol=1e-6)
    np.testing.assert_allclose(g[1], gw, rtol=1e-6)
    assert isinstance(v, list) and len(v) == 1
    np.testing.assert_allclose(v[0], ref_loss(m.b.value, m.w.value, X, Y), rtol=1e-6)


def test_grad_values_vars_are_the_given_variables():
    m = Regression()
    gv = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), m.vars())
    assert list(gv.vars().keys()) == ["(Regression).b", "(Regression).w"]
    assert gv.vars()["(Regression).w"] is m.w


def test_only_first_returned_value_is_differentiated():
    m = Regression()

    def losses(x, y):
        main = ((m(x) - y) ** 2).mean()
        return main, 100 * (m.w.value ** 2).sum()

    g, v = bridge.GradValues(losses, m.vars())(X, Y)
    np.testing.assert_allclose(g[1], jax.grad(ref_loss, 1)(m.b.value, m.w.value, X, Y), rtol=1e-6)
    assert len(v) == 2
    np.testing.assert_allclose(v[1], 100 * (m.w.value ** 2).sum(), rtol=1e-6)


def test_dict_values_are_returned_unchanged():
    m = Regression()

    def loss(x, y):
        main = ((m(x) - y) ** 2).mean()
        return main, {"loss/main": main, "loss/wd": (m.w.value ** 2).sum()}

    _, v = bridge.GradValues(loss, m.vars())(X, Y)
    assert set(v[1]) == {"loss/main", "loss/wd"}
    np.testing.assert_allclose(v[1]["loss/main"], v[0])


@pytest.mark.parametrize("argnums", [(0,), (1,), (0, 1), (1, 0)])
def test_input_gradients_come_first_in_input_argnums_order(argnums):
    m = Regression()
    gv = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), m.vars(),
                           input_argnums=argnums)
    g, _ = gv(X, Y)
    ref = jax.grad(ref_loss, argnums=tuple(a + 2 for a in argnums) + (0, 1))(
        m.b.value, m.w.value, X, Y)
    assert len(g) == len(argnums) + 2
    for ours, theirs in zip(g, ref):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_inputs_only_with_empty_collection():
    m = Regression()
    g, _ = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), bridge.VarCollection(),
                             input_argnums=(0,))(X, Y)
    assert len(g) == 1
    np.testing.assert_allclose(g[0], jax.grad(ref_loss, 2)(m.b.value, m.w.value, X, Y), rtol=1e-6)


def test_subset_of_variables_treats_the_rest_as_constants():
    m = Regression()
    only_w = bridge.VarCollection({"w": m.w})
    g, _ = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), only_w)(X, Y)
    assert len(g) == 1
    np.testing.assert_allclose(g[0], jax.grad(ref_loss, 1)(m.b.value, m.w.value, X, Y), rtol=1e-6)


def test_state_changes_inside_loss_are_written_back():
    m = Regression()
    calls = bridge.StateVar(jnp.zeros(()))
    vc = m.vars() + bridge.VarCollection({"calls": calls})

    def loss(x, y):
        calls.value += 1
        return ((m(x) - y) ** 2).mean()

    gv = bridge.GradValues(loss, vc)
    g, _ = gv(X, Y)
    gv(X, Y)
    assert float(calls.value) == 2.0 and len(g) == 2
    assert not isinstance(calls.value, jax.core.Tracer)


def test_non_scalar_loss_raises_type_error_with_the_shape():
    m = Regression()
    gv = bridge.GradValues(lambda x: m(x), m.vars())
    with pytest.raises(TypeError, match=r"shape \(4, 3\)"):
        gv(X)


def test_grad_returns_only_gradients():
    m = Regression()
    g = bridge.Grad(lambda x, y: ((m(x) - y) ** 2).mean(), m.vars())(X, Y)
    assert isinstance(g, list) and len(g) == 2
    np.testing.assert_allclose(g[0], jax.grad(ref_loss, 0)(m.b.value, m.w.value, X, Y), rtol=1e-6)


def test_grad_values_inside_jit_equals_eager():
    m = Regression()
    gv = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), m.vars())
    eager_g, eager_v = gv(X, Y)
    jit_g, jit_v = bridge.Jit(gv, m.vars())(X, Y)
    for a, b in zip(eager_g + eager_v, jit_g + jit_v):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_variables_read_but_undeclared_inside_jit_are_reported():
    m = Regression()
    gv = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), bridge.VarCollection({"w": m.w}))
    jitted = bridge.Jit(gv, bridge.VarCollection({"w": m.w}))
    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(Regression\).b"):
        jitted(X, Y)


def test_sgd_step_written_with_trainref_matches_plain_jax():
    m = Regression()

    class SGD(bridge.Module):
        def __init__(self, variables):
            self.refs = bridge.ModuleList(bridge.TrainRef(v)
                                          for v in variables.subset(bridge.TrainVar))

        def __call__(self, lr, gradients):
            for v, g in zip(self.refs, gradients):
                v.value -= lr * g

    opt = SGD(m.vars())
    gv = bridge.GradValues(lambda x, y: ((m(x) - y) ** 2).mean(), m.vars())

    @bridge.Function.with_vars(m.vars() + opt.vars())
    def train(x, y, lr):
        g, v = gv(x, y)
        opt(lr, g)
        return v

    step = bridge.Jit(train)
    b, w = m.b.value, m.w.value
    for _ in range(5):
        step(X, Y, 0.1)
        gb, gw = jax.grad(ref_loss, (0, 1))(b, w, X, Y)
        b, w = b - 0.1 * gb, w - 0.1 * gw
    np.testing.assert_allclose(m.b.value, b, rtol=1e-5)
    np.testing.assert_allclose(m.w.value, w, rtol=1e-5)


def test_variables_none_differentiates_inputs_only_like_jax_grad():
    m = Regression()
    loss = lambda x, y: ((m(x) - y) ** 2).mean()  # noqa: E731
    g = bridge.Grad(loss, None, input_argnums=(0,))(X, Y)
    expected = jax.grad(ref_loss, argnums=2)(m.b.value, m.w.value, X, Y)
    assert len(g) == 1
    np.testing.assert_allclose(g[0], expected, rtol=1e-6)


def test_vars_include_the_variables_of_a_module_being_differentiated():
    m = Regression()
    gv = bridge.GradValues(m, None, input_argnums=(0,))
    assert dict(gv.vars()) == dict(m.vars())
    jitted = bridge.Jit(bridge.Jacobian(m, None, input_argnums=(0,)))
    np.testing.assert_allclose(jitted(X[:1])[0][0, :, 0], m.w.value.T, rtol=1e-6)


def test_signature_shows_the_loss_arguments_and_what_the_facade_returns():
    import inspect
    from typing import List, Tuple

    def loss(x: jax.Array, y) -> Tuple[jax.Array, dict]:
        return (x + y).mean(), {}

    def as_grad_values(x: jax.Array, y) -> Tuple[List[jax.Array], Tuple[jax.Array, dict]]:
        pass

    def as_grad(x: jax.Array, y) -> List[jax.Array]:
        pass

    vc = bridge.VarCollection()
    assert inspect.signature(bridge.GradValues(loss, vc)) == inspect.signature(as_grad_values)
    assert inspect.signature(bridge.Grad(loss, vc)) == inspect.signature(as_grad)


def test_input_argnums_must_be_a_tuple():
    with pytest.raises(TypeError, match="input_argnums"):
        bridge.GradValues(lambda x: x.sum(), bridge.VarCollection(), input_argnums=0)


def test_repr_names_the_function_and_argnums():
    def myloss(x):
        return (x ** 2).mean()

    gv = bridge.GradValues(myloss, bridge.VarCollection(), input_argnums=(0,))
    assert repr(gv) == "bridge.GradValues(f=myloss, input_argnums=(0,))"
    assert repr(bridge.Grad(myloss, None)) == "bridge.Grad(f=myloss, input_argnums=None)"
    assert repr(bridge.Jit(gv)) == (
        "bridge.Jit(f=bridge.GradValues(f=myloss, input_argnums=(0,)), static_argnums=None)")
