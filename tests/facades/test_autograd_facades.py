"""BrainPy-style facades (``bridge.grad``, ``vector_grad``, ``jacobian``, ``jacrev``,
``jacfwd``, ``hessian``): behaviour beyond the seed's examples, against plain JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

X = jnp.array([0.5, -1.0, 2.0])


def close(actual, expected, rtol=1e-5, atol=1e-6):
    jax.tree_util.tree_map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                                                atol=atol),
        actual, expected)


class Model(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([0.3, -0.2, 0.8]))
        self.b = bridge.TrainVar(jnp.array(0.1))
        self.calls = bridge.StateVar(jnp.array(0))

    def __call__(self, x):
        self.calls.value = self.calls.value + 1
        return jnp.sin(jnp.dot(self.w.value, x) + self.b.value) ** 2


def model_ref(w, b, x):
    return jnp.sin(jnp.dot(w, x) + b) ** 2


# ----- the layout of variable gradients ---------------------------------------------------

def test_grad_vars_plain_dict_gives_a_dict_with_the_same_keys():
    m = Model()
    grads = bridge.grad(m, grad_vars={"weight": m.w, "bias": m.b})(X)
    ref_w, ref_b = jax.grad(model_ref, argnums=(0, 1))(m.w.value, m.b.value, X)
    assert isinstance(grads, dict) and set(grads) == {"weight", "bias"}
    close(grads["weight"], ref_w)
    close(grads["bias"], ref_b)


def test_grad_vars_collection_with_a_shared_variable_gives_the_total_under_each_name():
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    vc = bridge.VarCollection({"first": w, "second": w})

    def f(x):
        return (w.value ** 2 * x).sum() + jnp.sin(w.value).sum()

    grads = bridge.grad(f, grad_vars=vc)(3.0)
    expected = jax.grad(lambda v: (v ** 2 * 3.0).sum() + jnp.sin(v).sum())(w.value)
    assert set(grads) == {"first", "second"}
    close(grads["first"], expected)
    close(grads["second"], expected)


def test_the_same_variable_twice_in_a_tuple_gets_the_total_gradient_twice():
    m = Model()
    gw1, gw2 = bridge.grad(m, grad_vars=(m.w, m.w))(X)
    expected = jax.grad(model_ref)(m.w.value, m.b.value, X)
    close(gw1, expected)
    close(gw2, expected)


def test_train_ref_in_grad_vars_differentiates_its_target():
    m = Model()
    (gw,) = bridge.grad(m, grad_vars=[bridge.TrainRef(m.w)])(X)
    close(gw, jax.grad(model_ref)(m.w.value, m.b.value, X))


def test_single_multi_element_variable_as_grad_vars_gives_one_array():
    m = Model()
    gw = bridge.grad(m, grad_vars=m.w)(X)
    close(gw, jax.grad(model_ref)(m.w.value, m.b.value, X))


def test_grad_vars_must_hold_variables():
    m = Model()
    with pytest.raises(TypeError):
        bridge.grad(m, grad_vars=[m.w, jnp.ones(3)])


def test_vector_grad_with_dict_grad_vars_gives_a_dict():
    w = bridge.TrainVar(jnp.array([1.0, -2.0, 0.5]))
    grads = bridge.vector_grad(lambda x: jnp.tanh(w.value * x), grad_vars={"w": w})(X)
    close(grads["w"], X / jnp.cosh(w.value * X) ** 2)


# ----- state written back -----------------------------------------------------------------

def test_module_state_assigned_inside_grad_is_written_back():
    m = Model()
    g = bridge.grad(m, grad_vars=[m.w])
    g(X)
    g(X)
    assert int(m.calls.value) == 2
    assert not isinstance(m.calls.value, jax.core.Tracer)


def test_state_assigned_inside_grad_is_written_back_inside_jit():
    m = Model()
    g = bridge.grad(m, grad_vars=[m.w, m.b], argnums=0, return_value=True)
    jitted = bridge.Jit(g)
    for _ in range(3):
        (var_grads, arg_grad), value = jitted(X)
    assert int(m.calls.value) == 3
    ref = jax.grad(model_ref, argnums=(0, 1, 2))(m.w.value, m.b.value, X)
    close(var_grads, ref[:2])
    close(arg_grad, ref[2])
    close(value, model_ref(m.w.value, m.b.value, X))


def test_jitted_transformation_sees_updated_variables():
    m = Model()
    jitted = bridge.Jit(bridge.grad(m, grad_vars=[m.w]), m.vars())
    jitted(X)
    m.w.assign(jnp.array([1.0, 1.0, -1.0]))  # TrainVars are overwritten with assign
    (gw,) = jitted(X)
    close(gw, jax.grad(model_ref)(m.w.value, m.b.value, X))


def test_dyn_vars_assignment_from_a_plain_function_is_written_back():
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    total = bridge.StateVar(jnp.zeros(2))

    def f(x):
        total.value = total.value + x * w.value
        return (w.value * x).sum()

    (gw,) = bridge.grad(f, grad_vars=[w], dyn_vars={"total": total})(jnp.array([3.0, 4.0]))
    close(gw, [3.0, 4.0])
    close(total.value, [3.0, 8.0])


def test_dyn_vars_given_as_one_variable_is_written_back():
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    total = bridge.StateVar(jnp.zeros(2))

    def f(x):
        total.value = total.value + x * w.value
        return (w.value * x).sum()

    (gw,) = bridge.grad(f, grad_vars=[w], dyn_vars=total)(jnp.array([3.0, 4.0]))
    close(gw, [3.0, 4.0])
    close(total.value, [3.0, 8.0])


def test_dyn_vars_list_and_grad_vars_list_are_both_kept():
    # Both sequences are positional ("[0]", ...): one must not hide the other.
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    total = bridge.StateVar(jnp.zeros(2))

    def f(x):
        total.value = total.value + x * w.value
        return (w.value * x).sum()

    (gw,) = bridge.grad(f, grad_vars=[w], dyn_vars=[total])(jnp.array([3.0, 4.0]))
    close(gw, [3.0, 4.0])
    close(total.value, [3.0, 8.0])


def test_transformed_module_vars_hold_grad_vars_dyn_vars_and_module_vars():
    m = Model()
    extra = bridge.StateVar(jnp.zeros(()))
    g = bridge.grad(m, grad_vars=[m.w], dyn_vars={"extra": extra})
    held = {id(v) for v in g.vars().values()}
    assert {id(m.w), id(m.b), id(m.calls), id(extra)} <= held


# ----- undeclared variables ---------------------------------------------------------------

def test_undeclared_variable_written_inside_grad_raises_and_is_left_unchanged():
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    hidden = bridge.StateVar(jnp.zeros(2))

    def f(x):
        hidden.value = hidden.value + x
        return (w.value * x).sum()

    with pytest.raises(bridge.UndeclaredVariableError):
        bridge.grad(f, grad_vars=[w])(jnp.array([3.0, 4.0]))
    np.testing.assert_array_equal(np.asarray(hidden.value), [0.0, 0.0])
    assert not isinstance(hidden.value, jax.core.Tracer)


def test_undeclared_variable_read_inside_grad_is_a_constant():
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    other = bridge.TrainVar(jnp.array([5.0, -1.0]))

    def f(x):
        return (w.value * other.value * x).sum()

    (gw,) = bridge.grad(f, grad_vars=[w])(2.0)
    close(gw, other.value * 2.0)


def test_undeclared_variable_read_inside_jitted_grad_raises():
    w = bridge.TrainVar(jnp.array([1.0, 2.0]))
    other = bridge.TrainVar(jnp.array([5.0, -1.0]))

    def f(x):
        return (w.value * other.value * x).sum()

    with pytest.raises(bridge.UndeclaredVariableError, match="read"):
        bridge.Jit(bridge.grad(f, grad_vars=[w]))(2.0)


def test_has_aux_requires_a_pair():
    m = Model()
    with pytest.raises(TypeError, match="pair"):
        bridge.grad(m, grad_vars=[m.w], has_aux=True)(X)


def test_non_scalar_output_raises_type_error_with_the_shape():
    w = bridge.TrainVar(jnp.ones((2, 3)))
    with pytest.raises(TypeError, match=r"\(2, 3\)"):
        bridge.grad(lambda: w.value * 2, grad_vars=[w])()


# ----- Jacobians and Hessians -------------------------------------------------------------

class Vector(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.7]]))

    def __call__(self, x):
        return jnp.tanh(self.w.value @ x) * x[:2]


def vector_ref(w, x):
    return jnp.tanh(w @ x) * x[:2]


def test_jacfwd_equals_jacrev_and_jax_jacrev_with_grad_vars_and_argnums():
    v = Vector()
    rev = bridge.jacrev(v, grad_vars=[v.w], argnums=0)(X)
    fwd = bridge.jacfwd(v, grad_vars=[v.w], argnums=0)(X)
    ref_w, ref_x = jax.jacrev(vector_ref, argnums=(0, 1))(v.w.value, X)
    close(fwd, rev)
    close(rev, ((ref_w,), ref_x))
    assert rev[0][0].shape == (2, 2, 3)


def test_jacobian_is_jacrev():
    v = Vector()
    close(bridge.jacobian(v, grad_vars={"w": v.w})(X), bridge.jacrev(v, grad_vars={"w": v.w})(X))


def hessian_ref(w, x):
    return jnp.sum(jnp.sin(w @ x) ** 2) + jnp.sum(w ** 3) * jnp.sum(x)


class Scalar(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.7]]))

    def __call__(self, x):
        return hessian_ref(self.w.value, x)


H_WW = jax.jit(jax.hessian(hessian_ref))


def test_hessian_with_grad_vars_tuple_matches_jax_hessian():
    s = Scalar()
    ((h,),) = bridge.hessian(s, grad_vars=(s.w,))(X)
    close(h, H_WW(s.w.value, X), rtol=1e-4)
    assert h.shape == (2, 3, 2, 3)


def test_hessian_with_grad_vars_dict_matches_jax_hessian():
    s = Scalar()
    h = bridge.hessian(s, grad_vars={"w": s.w})(X)
    assert set(h) == {"w"} and set(h["w"]) == {"w"}
    close(h["w"]["w"], H_WW(s.w.value, X), rtol=1e-4)


def test_hessian_with_a_single_variable_matches_jax_hessian():
    s = Scalar()
    close(bridge.hessian(s, grad_vars=s.w)(X), H_WW(s.w.value, X), rtol=1e-4)


def test_hessian_with_grad_vars_and_argnums_nests_like_jax_hessian():
    # Both axes are laid out like the gradients: (var_grads, arg_grads) of
    # (var_grads, arg_grads), i.e. jax.hessian of f((w,), x).
    s = Scalar()
    ours = bridge.hessian(s, grad_vars=(s.w,), argnums=0)(X)
    expected = jax.jit(jax.hessian(lambda d: hessian_ref(d[0][0], d[1])))(((s.w.value,), X))
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(expected)
    close(ours, expected, rtol=1e-4)


def test_hessian_inside_jit_matches_eager():
    s = Scalar()
    h = bridge.hessian(s, grad_vars=(s.w,), argnums=0, return_value=True)
    close(bridge.Jit(h)(X), h(X), rtol=1e-5)
